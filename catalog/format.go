package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Format is the on-disk catalog format of one Barman generation. Cellar
// keeps writing the format it finds, so that the Barman that wrote a
// catalog can still read it (a way back after a migration).
//
// The zero value is the newest format.
type Format int

const (
	// FormatBarman317 is the Barman 3.13.2+ layout: backup.info in
	// meta/<id>-backup.info, annotations in meta/<id>-<key>, the WAL
	// catalog in wals/<server>-xlog.db with five fields per line
	// (encryption last), and the backup.info keys of 3.17.
	FormatBarman317 Format = iota
	// FormatBarman34 is the layout of Barman 3.4 (and every version
	// before 3.13): base/<id>/backup.info, base/<id>/annotations/<key>,
	// wals/xlog.db with four fields per line and no meta/ directory.
	// Barman 3.4 rejects the backup.info keys it does not know.
	FormatBarman34
)

// NewestFormat is the format of a new catalog when nothing is configured.
const NewestFormat = FormatBarman317

// legacyOnlyMissing lists the backup.info keys Barman 3.4 does not know:
// its loader rejects a file that has any of them.
var legacyOnlyMissing = []string{"children_backup_ids", "cluster_size", "data_checksums", "encryption", "parent_backup_id", "summarize_wal"}

// String is the Barman version the format belongs to, as the
// barman_compatibility option spells it.
func (f Format) String() string {
	switch f {
	case FormatBarman317:
		return "3.17"
	case FormatBarman34:
		return "3.4"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat parses a barman_compatibility value: "3.4" or "3.17"; the
// empty string means the newest format.
func ParseFormat(s string) (Format, error) {
	switch strings.TrimSpace(s) {
	case "", "3.17":
		return FormatBarman317, nil
	case "3.4":
		return FormatBarman34, nil
	}
	return 0, fmt.Errorf("barman_compatibility %q: must be 3.4 or 3.17", s)
}

// hasKey reports whether backup.info files of format f carry key.
func (f Format) hasKey(key string) bool {
	if f != FormatBarman34 {
		return true
	}
	for _, k := range legacyOnlyMissing {
		if k == key {
			return false
		}
	}
	return true
}

// xlogFields is the number of fields per xlog.db line the format writes.
func (f Format) xlogFields() int {
	if f == FormatBarman34 {
		return 4
	}
	return 5
}

// legacyXLogDBName is the pre-3.13 WAL catalog file name.
const legacyXLogDBName = "xlog.db"

// DetectFormat tells which format the catalog on disk is in. found is
// false for a catalog with nothing written yet (then the layout's
// DefaultFormat applies). The WAL catalog decides first, because Barman
// 3.13+ renames xlog.db to <server>-xlog.db on its first run and older
// versions never create the new name; then a meta/ directory (3.13.2+);
// then any base/<id>/backup.info (older versions).
func DetectFormat(l Layout) (f Format, found bool, err error) {
	checks := []struct {
		path   string
		format Format
	}{
		{filepath.Join(l.WalsDir, XLogDBName(l.Server)), FormatBarman317},
		{filepath.Join(l.WalsDir, legacyXLogDBName), FormatBarman34},
		{l.MetaDir, FormatBarman317},
	}
	for _, c := range checks {
		ok, err := present(c.path)
		if err != nil {
			return 0, false, fmt.Errorf("server %s: detect catalog format: %w", l.Server, err)
		}
		if ok {
			return c.format, true, nil
		}
	}
	legacy, err := hasLegacyBackupInfo(l.BaseDir)
	if err != nil {
		return 0, false, fmt.Errorf("server %s: detect catalog format: %w", l.Server, err)
	}
	if legacy {
		return FormatBarman34, true, nil
	}
	return 0, false, nil
}

// Format returns the catalog's format: the one detected on disk, else
// DefaultFormat for a catalog with nothing written yet.
func (l Layout) Format() (Format, error) {
	f, found, err := DetectFormat(l)
	if err != nil {
		return 0, err
	}
	if !found {
		return l.DefaultFormat, nil
	}
	return f, nil
}

func present(p string) (bool, error) {
	_, err := os.Stat(p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// hasLegacyBackupInfo reports whether any base/<id>/backup.info exists.
func hasLegacyBackupInfo(baseDir string) (bool, error) {
	entries, err := os.ReadDir(baseDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !e.IsDir() || !IsBackupID(e.Name()) {
			continue
		}
		ok, err := present(filepath.Join(baseDir, e.Name(), "backup.info"))
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}
