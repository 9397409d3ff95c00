package catalog

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// backupIDLayout is Barman's backup id format: the local start time.
const backupIDLayout = "20060102T150405"

// isBackupID matches `^\d{8}T\d{6}$` by hand: it runs for every directory
// entry of a catalog listing, and a package-level regexp would be compiled
// at start-up by every cellar process (one per WAL segment under
// restore_command).
func isBackupID(s string) bool {
	if len(s) != len(backupIDLayout) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 {
			if c != 'T' {
				return false
			}
		} else if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ErrInvalidBackupID is returned (wrapped) for strings that are not ids.
var ErrInvalidBackupID = errors.New("invalid backup id")

// ErrInvalidBackupName is returned (wrapped) for unusable --name values.
var ErrInvalidBackupName = errors.New("invalid backup name")

// ParseBackupID checks that s is a backup id (YYYYMMDDTHHMMSS). Ids become
// path components, so everything else is refused.
func ParseBackupID(s string) error {
	if !isBackupID(s) {
		return fmt.Errorf("%w: %q", ErrInvalidBackupID, s)
	}
	return nil
}

// IsBackupID reports whether s looks like a backup id.
func IsBackupID(s string) bool { return isBackupID(s) }

// NewBackupID formats t (in its own location; Barman uses local time) as a
// backup id.
func NewBackupID(t time.Time) string { return t.Format(backupIDLayout) }

// reservedNames are the backup shortcuts plus "auto"; a name equal to one
// of them could never be resolved.
var reservedNames = []string{"latest", "last", "oldest", "first", "last-failed", "latest-full", "last-full", "auto"}

// ValidateBackupName checks a user-chosen backup name: not empty, not a
// reserved shortcut, not shaped like an id, and storable as one
// backup.info value (no line breaks, no surrounding blanks that the reader
// would strip, not the literal None).
func ValidateBackupName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidBackupName)
	case slices.Contains(reservedNames, name):
		return fmt.Errorf("%w: %q is a reserved word", ErrInvalidBackupName, name)
	case IsBackupID(name):
		return fmt.Errorf("%w: %q looks like a backup id", ErrInvalidBackupName, name)
	case name == "None":
		return fmt.Errorf("%w: %q reads back as null", ErrInvalidBackupName, name)
	case strings.ContainsAny(name, "\n\r\x00"):
		return fmt.Errorf("%w: %q contains a line break or NUL", ErrInvalidBackupName, name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: %q has leading or trailing blanks", ErrInvalidBackupName, name)
	}
	return nil
}
