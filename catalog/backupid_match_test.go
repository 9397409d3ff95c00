package catalog

import (
	"regexp"
	"testing"
)

// FuzzIsBackupID checks the hand-written backup id matcher against the
// regexp it replaced.
func FuzzIsBackupID(f *testing.F) {
	re := regexp.MustCompile(`^\d{8}T\d{6}$`)
	for _, s := range []string{"20240102T030405", "20240102t030405", "20240102T03040", "20240102T0304055",
		"2024010２T030405", "20240102T03040\n", "\n20240102T030405", "20240102 030405", "", "T", "2024-01-02T03:04:05"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isBackupID(s), re.MatchString(s); got != want {
			t.Errorf("isBackupID(%q) = %v, regexp says %v", s, got, want)
		}
	})
}
