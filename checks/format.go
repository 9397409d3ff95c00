package checks

import (
	"fmt"
	"strings"
	"time"
)

// HumanDuration renders d as Barman's human_readable_timedelta does:
// "1 day, 2 hours, 3 minutes, 4 seconds", "less than one second", with
// " ago" for negative values.
func HumanDuration(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	secs := int64(d / time.Second)
	days := secs / 86400
	secs %= 86400
	hours := secs / 3600
	secs %= 3600
	minutes := secs / 60
	secs %= 60
	var parts []string
	add := func(n int64, unit string) {
		if n == 0 {
			return
		}
		s := ""
		if n > 1 {
			s = "s"
		}
		parts = append(parts, fmt.Sprintf("%d %s%s", n, unit, s))
	}
	add(days, "day")
	add(hours, "hour")
	add(minutes, "minute")
	add(secs, "second")
	out := "less than one second"
	if len(parts) > 0 {
		out = strings.Join(parts, ", ")
	}
	if neg {
		out += " ago"
	}
	return out
}

// PrettySize renders bytes with binary units as Barman's pretty_size:
// "512 B", "1.5 KiB", "16.0 MiB".
func PrettySize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	i := 0
	for (v >= 1024 || v <= -1024) && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
