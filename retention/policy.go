// Package retention decides which backups a Barman-compatible retention
// policy keeps or deletes, and which archived WAL files can be pruned once
// the obsolete backups are gone.
//
// Everything here is pure: the package reads no files and deletes nothing.
// The backup and jobs packages load the catalog, call Plan and PrunableWAL,
// and apply the result under the proper locks.
package retention

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kind tells the retention policy types apart. The zero Kind means no
// policy is configured.
type Kind int

// Policy kinds.
const (
	// None is the zero Kind: no retention policy, nothing is ever obsolete.
	None Kind = iota
	// Redundancy keeps the n most recent DONE backups (REDUNDANCY n).
	Redundancy
	// RecoveryWindow keeps what is needed to recover to any point of the
	// last n days/weeks/months (RECOVERY WINDOW OF n UNIT).
	RecoveryWindow
)

// String names the kind as Barman spells it.
func (k Kind) String() string {
	switch k {
	case None:
		return "NONE"
	case Redundancy:
		return "REDUNDANCY"
	case RecoveryWindow:
		return "RECOVERY WINDOW"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Policy is a parsed retention_policy together with the server's
// minimum_redundancy, which both policy kinds honour.
type Policy struct {
	Kind Kind
	// Redundancy is n of REDUNDANCY n (as configured, before
	// minimum_redundancy raises it).
	Redundancy int
	// Window is the recovery window length. A month is 31 days, as in
	// Barman. Windows longer than time.Duration can hold are saturated at
	// the maximum (about 292 years), which changes nothing in practice.
	Window time.Duration
	// WindowText is the window as written canonically, e.g. "4 WEEKS";
	// used in String and in decision reasons.
	WindowText string
	// MinimumRedundancy is the server's minimum_redundancy (never negative).
	MinimumRedundancy int
}

// ErrInvalidPolicy is matched (errors.Is) by every *PolicyError.
var ErrInvalidPolicy = errors.New("invalid retention policy")

// PolicyError reports a retention_policy value that cannot be parsed.
type PolicyError struct {
	Value  string // the rejected text, verbatim
	Reason string
}

func (e *PolicyError) Error() string {
	return fmt.Sprintf("retention: invalid retention policy %q: %s", e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidPolicy) true for any *PolicyError.
func (e *PolicyError) Is(target error) bool { return target == ErrInvalidPolicy }

// maxWindowCount matches the bound config applies to the window number, so
// every value config accepts parses here too.
const maxWindowCount = 1_000_000

const day = 24 * time.Hour

// ParsePolicy parses `REDUNDANCY n` or `RECOVERY WINDOW OF n
// DAY[S]|WEEK[S]|MONTH[S]` case-insensitively, with any whitespace between
// words, as Barman's patterns do. n must be at least 1 (Barman accepts 0,
// which would delete every backup; Cellar's config rejects it and so does
// this). A negative minimumRedundancy is treated as 0, Barman's fallback
// for an invalid value.
func ParsePolicy(s string, minimumRedundancy int) (Policy, error) {
	if minimumRedundancy < 0 {
		minimumRedundancy = 0
	}
	bad := func(reason string) (Policy, error) {
		return Policy{}, &PolicyError{Value: s, Reason: reason}
	}
	const usage = "use REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS"
	f := strings.Fields(s)
	switch {
	case len(f) == 2 && strings.EqualFold(f[0], "REDUNDANCY"):
		n, err := parseCount(f[1])
		if err != nil {
			return bad("redundancy " + err.Error())
		}
		return Policy{Kind: Redundancy, Redundancy: n, MinimumRedundancy: minimumRedundancy}, nil
	case len(f) == 5 && strings.EqualFold(f[0], "RECOVERY") && strings.EqualFold(f[1], "WINDOW") && strings.EqualFold(f[2], "OF"):
		n, err := parseCount(f[3])
		if err != nil {
			return bad("window " + err.Error())
		}
		if n > maxWindowCount {
			return bad(fmt.Sprintf("window %d is too long (at most %d)", n, maxWindowCount))
		}
		// One trailing S is optional; "DAYSS" trims to "DAYS" and fails.
		unit := strings.TrimSuffix(strings.ToUpper(f[4]), "S")
		var days int64
		switch unit {
		case "DAY":
			days = 1
		case "WEEK":
			days = 7
		case "MONTH":
			days = 31 // Barman's month, not a calendar month
		default:
			return bad(fmt.Sprintf("unknown unit %q (%s)", f[4], usage))
		}
		total := int64(n) * days
		w := time.Duration(math.MaxInt64)
		if total <= int64(math.MaxInt64/int64(day)) {
			w = time.Duration(total) * day
		}
		return Policy{
			Kind: RecoveryWindow, Window: w,
			WindowText:        strconv.Itoa(n) + " " + unit + "S",
			MinimumRedundancy: minimumRedundancy,
		}, nil
	}
	return bad(usage)
}

// parseCount reads a positive decimal count of ASCII digits.
func parseCount(s string) (int, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a whole number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	if n < 1 {
		return 0, fmt.Errorf("must be at least 1, got %d", n)
	}
	return n, nil
}

// IsSet reports whether a policy is configured.
func (p Policy) IsSet() bool { return p.Kind == Redundancy || p.Kind == RecoveryWindow }

// String returns the policy as Barman prints it ("REDUNDANCY 2",
// "RECOVERY WINDOW OF 4 WEEKS"); ParsePolicy reads it back.
func (p Policy) String() string {
	switch p.Kind {
	case Redundancy:
		return "REDUNDANCY " + strconv.Itoa(p.Redundancy)
	case RecoveryWindow:
		return "RECOVERY WINDOW OF " + p.WindowText
	}
	return "none"
}

// EffectiveRedundancy is the number of DONE backups a REDUNDANCY policy
// keeps: n raised to minimum_redundancy when that is larger (Barman warns
// and enforces the minimum). It is 0 for other kinds.
func (p Policy) EffectiveRedundancy() int {
	if p.Kind != Redundancy {
		return 0
	}
	return max(p.Redundancy, p.MinimumRedundancy)
}

// RecoveryPoint is the start of the recovery window ("point of
// recoverability"): now minus the window. It is the zero time for
// policies without a window.
func (p Policy) RecoveryPoint(now time.Time) time.Time {
	if p.Kind != RecoveryWindow {
		return time.Time{}
	}
	return now.Add(-p.Window)
}
