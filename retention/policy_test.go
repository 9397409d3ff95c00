package retention

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in     string
		min    int
		kind   Kind
		n      int
		window time.Duration
		canon  string
		minOut int
		errSub string // non-empty: want an error containing this
	}{
		{in: "REDUNDANCY 2", kind: Redundancy, n: 2, canon: "REDUNDANCY 2"},
		{in: "  redundancy\t10  ", kind: Redundancy, n: 10, canon: "REDUNDANCY 10"},
		{in: "Redundancy 1", min: 3, kind: Redundancy, n: 1, canon: "REDUNDANCY 1", minOut: 3},
		{in: "REDUNDANCY 1", min: -4, kind: Redundancy, n: 1, canon: "REDUNDANCY 1", minOut: 0},
		{in: "RECOVERY WINDOW OF 7 DAYS", kind: RecoveryWindow, window: 7 * day, canon: "RECOVERY WINDOW OF 7 DAYS"},
		{in: "recovery window of 1 day", kind: RecoveryWindow, window: day, canon: "RECOVERY WINDOW OF 1 DAYS"},
		{in: "RECOVERY WINDOW OF 4 WEEKS", kind: RecoveryWindow, window: 28 * day, canon: "RECOVERY WINDOW OF 4 WEEKS"},
		{in: "Recovery  Window Of 2 week", kind: RecoveryWindow, window: 14 * day, canon: "RECOVERY WINDOW OF 2 WEEKS"},
		// A month is 31 days in Barman, not a calendar month.
		{in: "RECOVERY WINDOW OF 3 MONTHS", kind: RecoveryWindow, window: 93 * day, canon: "RECOVERY WINDOW OF 3 MONTHS"},
		{in: "RECOVERY WINDOW OF 1 month", min: 2, kind: RecoveryWindow, window: 31 * day, canon: "RECOVERY WINDOW OF 1 MONTHS", minOut: 2},
		// The largest count config accepts saturates instead of overflowing.
		{in: "RECOVERY WINDOW OF 1000000 MONTHS", kind: RecoveryWindow, window: time.Duration(math.MaxInt64), canon: "RECOVERY WINDOW OF 1000000 MONTHS"},
		{in: "RECOVERY WINDOW OF 1000001 DAYS", errSub: "too long"},
		{in: "REDUNDANCY 0", errSub: "at least 1"},
		{in: "REDUNDANCY -1", errSub: "not a whole number"},
		{in: "REDUNDANCY +1", errSub: "not a whole number"},
		{in: "REDUNDANCY 99999999999999999999", errSub: "out of range"},
		{in: "REDUNDANCY", errSub: "use REDUNDANCY n"},
		{in: "REDUNDANCY 2 3", errSub: "use REDUNDANCY n"},
		{in: "RECOVERY WINDOW OF 0 DAYS", errSub: "at least 1"},
		{in: "RECOVERY WINDOW 7 DAYS", errSub: "use REDUNDANCY n"},
		{in: "RECOVERY WINDOW OF 7 YEARS", errSub: `unknown unit "YEARS"`},
		{in: "RECOVERY WINDOW OF 7 DAYSS", errSub: "unknown unit"},
		{in: "RECOVERY WINDOW OF 7 S", errSub: "unknown unit"},
		{in: "KEEP 3", errSub: "use REDUNDANCY n"},
		{in: "", errSub: "use REDUNDANCY n"},
	} {
		p, err := ParsePolicy(tc.in, tc.min)
		if tc.errSub != "" {
			if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.errSub) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("ParsePolicy(%q) = %+v, %v; want ErrInvalidPolicy naming the value and containing %q", tc.in, p, err, tc.errSub)
			}
			var pe *PolicyError
			if !errors.As(err, &pe) || pe.Value != tc.in {
				t.Errorf("ParsePolicy(%q): error %v is not a *PolicyError with the value", tc.in, err)
			}
			continue
		}
		if err != nil || p.Kind != tc.kind || p.Redundancy != tc.n || p.Window != tc.window || p.String() != tc.canon || p.MinimumRedundancy != tc.minOut || !p.IsSet() {
			t.Errorf("ParsePolicy(%q, %d) = %+v (%q), %v; want kind %v n %d window %v canon %q min %d",
				tc.in, tc.min, p, p, err, tc.kind, tc.n, tc.window, tc.canon, tc.minOut)
			continue
		}
		again, err := ParsePolicy(p.String(), p.MinimumRedundancy)
		if err != nil || again != p {
			t.Errorf("round trip %q -> %+v, %v", p, again, err)
		}
	}
}

func TestPolicyHelpers(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	w, err := ParsePolicy("RECOVERY WINDOW OF 2 WEEKS", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.RecoveryPoint(now), now.AddDate(0, 0, -14); !got.Equal(want) {
		t.Errorf("RecoveryPoint = %v, want %v", got, want)
	}
	if w.EffectiveRedundancy() != 0 {
		t.Errorf("window EffectiveRedundancy = %d, want 0", w.EffectiveRedundancy())
	}
	r, _ := ParsePolicy("REDUNDANCY 2", 5)
	if !r.RecoveryPoint(now).IsZero() || r.EffectiveRedundancy() != 5 {
		t.Errorf("redundancy helpers: point %v effective %d", r.RecoveryPoint(now), r.EffectiveRedundancy())
	}
	var none Policy
	if none.IsSet() || none.String() != "none" || none.Kind.String() != "NONE" || Kind(9).String() != "Kind(9)" {
		t.Errorf("zero policy: set %v %q %q", none.IsSet(), none, none.Kind)
	}
}
