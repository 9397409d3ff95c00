package catalog

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Barman writes backup times as Python str(datetime): "YYYY-MM-DD
// HH:MM:SS[.ffffff][+HH:MM]" and reads them with dateutil, which also takes
// the ISO "T" form. A value without an offset is naive and means local time.
// Regexps here are compiled on first use, not at package init: every
// cellar process (restore_command starts one per WAL segment) would
// pay for them.
var pyTimeRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*(Z|UTC|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?$`)
})

// ParsePyTime parses a backup.info time. Naive values are taken in loc
// (Barman uses the local zone); fractions beyond microseconds are truncated
// as Python's datetime does.
func ParsePyTime(s string, loc *time.Location) (time.Time, error) {
	m := pyTimeRE().FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, fmt.Errorf("invalid time %q", s)
	}
	num := func(x string) int {
		n, _ := strconv.Atoi(x)
		return n
	}
	year, month, day := num(m[1]), num(m[2]), num(m[3])
	hour, minute, sec := num(m[4]), num(m[5]), num(m[6])
	usec := 0
	if m[7] != "" {
		frac := (m[7] + "000000")[:6]
		usec = num(frac)
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, fmt.Errorf("invalid time %q: field out of range", s)
	}
	zone := loc
	if tz := m[8]; tz != "" && tz != "Z" && tz != "UTC" {
		sign := 1
		if tz[0] == '-' {
			sign = -1
		}
		digits := make([]byte, 0, 6)
		for i := 1; i < len(tz); i++ {
			if tz[i] != ':' {
				digits = append(digits, tz[i])
			}
		}
		h := num(string(digits[0:2]))
		mi, se := 0, 0
		if len(digits) >= 4 {
			mi = num(string(digits[2:4]))
		}
		if len(digits) >= 6 {
			se = num(string(digits[4:6]))
		}
		if h > 23 || mi > 59 || se > 59 {
			return time.Time{}, fmt.Errorf("invalid time %q: bad UTC offset", s)
		}
		zone = time.FixedZone("", sign*(h*3600+mi*60+se))
	} else if tz != "" {
		zone = time.FixedZone("", 0)
	}
	if zone == nil {
		zone = time.Local
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, usec*1000, zone), nil
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// FormatPyTime formats t like Python str(datetime) of an aware datetime:
// microseconds only when non-zero, and the UTC offset as +HH:MM (with
// seconds only when the offset has them).
func FormatPyTime(t time.Time) string {
	b := make([]byte, 0, 32)
	b = t.AppendFormat(b, "2006-01-02 15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = fmt.Appendf(b, ".%06d", us)
	}
	_, off := t.Zone()
	sign := byte('+')
	if off < 0 {
		sign = '-'
		off = -off
	}
	b = fmt.Appendf(b, "%c%02d:%02d", sign, off/3600, off/60%60)
	if off%60 != 0 {
		b = fmt.Appendf(b, ":%02d", off%60)
	}
	return string(b)
}
