package retention

import (
	"errors"
	"testing"
)

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"REDUNDANCY 2", "redundancy 0", "RECOVERY WINDOW OF 4 WEEKS", "recovery window of 1 day",
		"RECOVERY WINDOW OF 3 MONTHS", "RECOVERY WINDOW OF 99999999999999999999 DAYS",
		"RECOVERY WINDOW OF 1000000 MONTHS", "KEEP 3", "", "  REDUNDANCY\u00a05 ", "REDUNDANCY ٣",
		"RECOVERY WINDOW OF 7 DAYſ",
	} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, s string, min int) {
		p, err := ParsePolicy(s, min)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("ParsePolicy(%q): error %v does not match ErrInvalidPolicy", s, err)
			}
			return
		}
		if p.MinimumRedundancy < 0 {
			t.Fatalf("ParsePolicy(%q, %d): negative minimum redundancy %d", s, min, p.MinimumRedundancy)
		}
		switch p.Kind {
		case Redundancy:
			if p.Redundancy < 1 || p.Window != 0 {
				t.Fatalf("ParsePolicy(%q) = %+v", s, p)
			}
		case RecoveryWindow:
			if p.Window <= 0 || p.Redundancy != 0 || p.WindowText == "" {
				t.Fatalf("ParsePolicy(%q) = %+v", s, p)
			}
		default:
			t.Fatalf("ParsePolicy(%q) kind %v", s, p.Kind)
		}
		again, err := ParsePolicy(p.String(), p.MinimumRedundancy)
		if err != nil || again != p {
			t.Fatalf("round trip of %q: %q -> %+v, %v", s, p, again, err)
		}
	})
}
