package catalog

import (
	"errors"
	"testing"
	"time"
)

func TestBackupIDs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"20240115T100000", true},
		{"20240115t100000", false},
		{"20240115T10000", false},
		{"../../etc", false},
		{"", false},
		{"20240115T100000 ", false},
	} {
		err := ParseBackupID(tc.in)
		if (err == nil) != tc.ok || IsBackupID(tc.in) != tc.ok {
			t.Errorf("ParseBackupID(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidBackupID) {
			t.Errorf("error %v does not match ErrInvalidBackupID", err)
		}
	}
	if got := NewBackupID(time.Date(2024, 1, 2, 3, 4, 5, 999, time.UTC)); got != "20240102T030405" {
		t.Errorf("NewBackupID = %q", got)
	}
}

func TestValidateBackupName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"nightly", true},
		{"before upgrade", true},
		{"latest", false}, {"last", false}, {"oldest", false}, {"first", false},
		{"last-failed", false}, {"latest-full", false}, {"last-full", false}, {"auto", false},
		{"20240115T100000", false},
		{"", false},
		{"None", false},
		{"a\nb", false},
		{" padded", false},
	} {
		err := ValidateBackupName(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateBackupName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidBackupName) {
			t.Errorf("error %v does not match ErrInvalidBackupName", err)
		}
	}
}
