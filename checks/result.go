package checks

import (
	"fmt"
	"strings"
	"time"
)

// Status is a check outcome with the Nagios plugin exit codes as values.
type Status int

// Statuses, numbered as Nagios exit codes and cellar_check_status values.
const (
	OK       Status = 0
	Warning  Status = 1
	Critical Status = 2
	Unknown  Status = 3
)

// String returns OK, WARNING, CRITICAL or UNKNOWN.
func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	case Unknown:
		return "UNKNOWN"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Failed reports whether the status counts as a failure in Barman's
// OK/FAILED vocabulary (everything but OK).
func (s Status) Failed() bool { return s != OK }

// Severity orders statuses for "worst of": OK < UNKNOWN < WARNING <
// CRITICAL (the monitoring-plugins max_state_alt order).
func (s Status) Severity() int {
	switch s {
	case OK:
		return 0
	case Unknown:
		return 1
	case Warning:
		return 2
	case Critical:
		return 3
	}
	return 1
}

// Worst returns the more severe of a and b.
func Worst(a, b Status) Status {
	if b.Severity() > a.Severity() {
		return b
	}
	return a
}

// Result is one probe outcome for one server.
type Result struct {
	Server string
	// Check is the label printed by `check` (Barman's name; some failures
	// are renamed, e.g. "no access to backup functions").
	Check string
	// Key is the probe's stable snake_case metric label.
	Key    string
	Status Status
	Hint   string
	// Detail is extra diagnosis that Barman's layout has no room for (the
	// connection error behind a hint-less "PostgreSQL: FAILED"); the Nagios
	// long output shows it.
	Detail string
	// Values are the probe's measurements, keyed by declared Gauge name
	// (SeriesKey for labelled gauges).
	Values map[string]float64
	// Perf is Nagios perfdata in base units.
	Perf     []Perf
	Duration time.Duration
	// At is when the probe started (results may be served from a cache).
	At time.Time
	// Critical is false for Barman's NON_CRITICAL_CHECKS.
	Critical bool
	// FailureOnly: Barman prints this check only when it fails.
	FailureOnly bool
	// Inactive: the server has active=false; its failures never fail the
	// command.
	Inactive bool

	skip bool
}

// Perf is one Nagios performance value. Warn and Crit are Nagios ranges
// ("" = none); Min and Max are optional.
type Perf struct {
	Label string
	Value float64
	UOM   string // "", "s", "B", "c", "%"
	Warn  string
	Crit  string
	Min   *float64
	Max   *float64
}

// Gauge is a value a probe may measure, exported as cellar_<Name>{server}
// (plus Label when set). Declared up front so the collector can describe
// every metric before collecting.
type Gauge struct {
	Name string
	Help string
	// Label is an optional extra label whose values are bounded and known
	// in advance (LabelValues); Result.Values then uses SeriesKey. With
	// Label set and LabelValues nil, the values are whatever the result
	// holds under SeriesKey (backup ids, bounded by retention).
	Label       string
	LabelValues []string
}

// SeriesKey is the Values key of a labelled gauge series: name{value}.
func SeriesKey(name, labelValue string) string {
	return name + "{" + labelValue + "}"
}

// ParseSeriesKey splits a Values key into gauge name and label value.
func ParseSeriesKey(key string) (name, labelValue string, labelled bool) {
	i := strings.IndexByte(key, '{')
	if i < 0 || !strings.HasSuffix(key, "}") {
		return key, "", false
	}
	return key[:i], key[i+1 : len(key)-1], true
}

// Skip returns a result that Registry.Run drops: the probe does not apply
// to this server's current state (Barman prints nothing for it).
func Skip() Result { return Result{skip: true} }

// Pass returns an OK result with hint.
func Pass(hint string) Result { return Result{Status: OK, Hint: hint} }

// Fail returns a CRITICAL result with hint.
func Fail(hint string) Result { return Result{Status: Critical, Hint: hint} }

// Unknownf returns an UNKNOWN result: the probe could not evaluate.
func Unknownf(format string, args ...any) Result {
	return Result{Status: Unknown, Hint: fmt.Sprintf(format, args...)}
}

// StatusFor maps Barman's boolean outcome to OK or CRITICAL.
func StatusFor(ok bool) Status {
	if ok {
		return OK
	}
	return Critical
}

// Float returns a pointer to v, for Perf.Min/Max.
func Float(v float64) *float64 { return &v }
