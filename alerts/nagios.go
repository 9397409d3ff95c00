package alerts

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/cellar-backup/cellar/checks"
)

// Range is a Nagios threshold range, [@][start:][end]: it alerts when the
// value lies outside start..end (inclusive), or inside with '@'.
type Range struct {
	Start, End float64 // -Inf / +Inf when open
	Inside     bool    // '@': alert inside the range
	text       string
}

// ErrRange is matched by every range syntax error.
var ErrRange = errors.New("invalid Nagios range")

// ParseRange parses the Nagios plugin range syntax: "10" (alert if < 0 or
// > 10), "10:" (< 10), "~:10" (> 10), "10:20" (outside), "@10:20" (inside).
func ParseRange(s string) (Range, error) {
	bad := func(why string) (Range, error) {
		return Range{}, fmt.Errorf("%w %q: %s", ErrRange, s, why)
	}
	r := Range{Start: 0, End: math.Inf(1), text: s}
	body := strings.TrimSpace(s)
	if strings.HasPrefix(body, "@") {
		r.Inside = true
		body = body[1:]
	}
	if body == "" {
		return bad("empty")
	}
	start, end, hasColon := strings.Cut(body, ":")
	if !hasColon {
		start, end = "", body
	}
	if hasColon {
		switch start {
		case "~":
			r.Start = math.Inf(-1)
		case "":
			return bad("empty start (use ~ for minus infinity)")
		default:
			v, err := parseNumber(start)
			if err != nil {
				return bad("start: " + err.Error())
			}
			r.Start = v
		}
	}
	if end != "" {
		v, err := parseNumber(end)
		if err != nil {
			return bad("end: " + err.Error())
		}
		r.End = v
	} else if !hasColon {
		return bad("empty")
	}
	if r.Start > r.End {
		return bad("start is greater than end")
	}
	return r, nil
}

func parseNumber(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// Alert reports whether v triggers the range.
func (r Range) Alert(v float64) bool {
	in := v >= r.Start && v <= r.End
	if r.Inside {
		return in
	}
	return !in
}

// String returns the range as given.
func (r Range) String() string { return r.text }

// Thresholds override the warn/crit ranges of perfdata values by label
// ("backup_age", "backup_size", "wal_age", "wals", ...), for the
// --warning/--critical options. A result whose perf value triggers Critical
// becomes CRITICAL; Warning makes an OK result WARNING.
type Thresholds struct {
	Warning  map[string]Range
	Critical map[string]Range
}

// ParseThresholds parses "label=range" options.
func ParseThresholds(warning, critical []string) (Thresholds, error) {
	th := Thresholds{Warning: map[string]Range{}, Critical: map[string]Range{}}
	var errs []error
	for _, set := range []struct {
		opts []string
		dst  map[string]Range
	}{{warning, th.Warning}, {critical, th.Critical}} {
		for _, o := range set.opts {
			label, rng, ok := strings.Cut(o, "=")
			if !ok || label == "" {
				errs = append(errs, fmt.Errorf("threshold %q: want LABEL=RANGE (e.g. backup_age=86400)", o))
				continue
			}
			r, err := ParseRange(rng)
			if err != nil {
				errs = append(errs, fmt.Errorf("threshold %q: %w", o, err))
				continue
			}
			set.dst[label] = r
		}
	}
	return th, errors.Join(errs...)
}

// apply returns the result's status after thresholds, and its perfdata with
// the threshold ranges filled in.
func (th Thresholds) apply(r checks.Result) (checks.Status, []checks.Perf) {
	st := r.Status
	perf := append([]checks.Perf(nil), r.Perf...)
	for i := range perf {
		p := &perf[i]
		if c, ok := th.Critical[p.Label]; ok {
			p.Crit = c.String()
			if c.Alert(p.Value) {
				st = checks.Worst(st, checks.Critical)
			}
		}
		if w, ok := th.Warning[p.Label]; ok {
			p.Warn = w.String()
			if w.Alert(p.Value) {
				st = checks.Worst(st, checks.Warning)
			}
		}
	}
	return st, perf
}

// formatNumber prints a plain decimal (no exponent), as perfdata requires.
func formatNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "U"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// perfLabel sanitises a label: equals signs and single quotes are not allowed.
func perfLabel(s string) string {
	return strings.NewReplacer("=", "_", "'", "_").Replace(s)
}

// FormatPerf renders one perfdata item: 'label'=value[UOM];warn;crit;min;max
// with trailing empty fields dropped.
func FormatPerf(label string, p checks.Perf) string {
	fields := []string{p.Warn, p.Crit, "", ""}
	if p.Min != nil {
		fields[2] = formatNumber(*p.Min)
	}
	if p.Max != nil {
		fields[3] = formatNumber(*p.Max)
	}
	for len(fields) > 0 && fields[len(fields)-1] == "" {
		fields = fields[:len(fields)-1]
	}
	s := "'" + perfLabel(label) + "'=" + formatNumber(p.Value) + p.UOM
	if len(fields) > 0 {
		s += ";" + strings.Join(fields, ";")
	}
	return s
}

// Nagios writes the result as a Nagios/Icinga plugin and returns the exit
// code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN):
//
//	CELLAR CRITICAL - 1 of 2 servers have issues: pg1 (backup maximum age) | 'pg1_backup_age'=...
//	pg1.backup maximum age: CRITICAL (interval provided: ...)
//
// The first line names the state and the failing servers; long output has
// one line per failure; perfdata (base units) follows the first line.
// Failures of inactive servers are listed as IGNORING and never raise the
// state. No results at all is UNKNOWN.
func Nagios(w io.Writer, results []checks.Result, th Thresholds) int {
	servers, by := groupByServer(results)
	state := checks.OK
	var perf, long, issues, ignoring []string
	for _, srv := range servers {
		var failed []string
		for _, r := range by[srv] {
			st, ps := th.apply(r)
			for _, p := range ps {
				perf = append(perf, FormatPerf(srv+"_"+p.Label, p))
			}
			if st == checks.OK {
				continue
			}
			failed = append(failed, r.Check)
			line := fmt.Sprintf("%s.%s: %s", srv, r.Check, st)
			if r.Hint != "" {
				line += " (" + r.Hint + ")"
			}
			if r.Detail != "" {
				line += ": " + r.Detail
			}
			long = append(long, line)
			if !r.Inactive {
				state = checks.Worst(state, st)
			}
		}
		if len(failed) == 0 {
			continue
		}
		summary := srv + " (" + strings.Join(failed, ", ") + ")"
		if by[srv][0].Inactive {
			ignoring = append(ignoring, srv)
		} else {
			issues = append(issues, summary)
		}
	}
	var text string
	switch {
	case len(servers) == 0:
		state = checks.Unknown
		text = "no server checked"
	case len(issues) == 0:
		text = fmt.Sprintf("%d of %d servers OK: %s", len(servers)-len(ignoring), len(servers), strings.Join(servers, ", "))
		if len(servers) == 1 {
			text = servers[0] + " OK"
		}
	default:
		text = fmt.Sprintf("%d of %d servers have issues: %s", len(issues), len(servers), strings.Join(issues, "; "))
	}
	if len(ignoring) > 0 {
		text += " * IGNORING: " + strings.Join(ignoring, ", ")
	}
	var b strings.Builder
	b.WriteString("CELLAR " + state.String() + " - " + sanitizeText(text))
	if len(perf) > 0 {
		b.WriteString(" | " + strings.Join(perf, " "))
	}
	b.WriteString("\n")
	for _, l := range long {
		b.WriteString(sanitizeText(l) + "\n")
	}
	_, _ = io.WriteString(w, b.String())
	return int(state)
}

// sanitizeText keeps free text from being read as perfdata or a new line.
func sanitizeText(s string) string {
	return strings.NewReplacer("|", "/", "\n", " ", "\r", " ").Replace(s)
}
