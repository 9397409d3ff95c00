package catalog

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The catalog an older Cellar left in a Barman 3.4 home (the issue's
// report): backup.info with 3.17 keys and a keep annotation in meta/, and
// five-field lines appended to wals/xlog.db. RepairFormat puts it back in
// Barman 3.4's format, and a second run changes nothing.
func TestRepairFormatOfBrokenLegacyCatalog(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	l := NewLayout("pg", filepath.Join(root, "pg"), root)
	copyTree(t, "testdata/barman34/pg", l.BackupDir)
	xlogPath := filepath.Join(l.WalsDir, "xlog.db")
	orig := readFile(t, xlogPath)
	broken := orig + "000000010000000000000007\t52882\t1796320867.0645812\tgzip\tNone\n"
	mustWrite(t, xlogPath, broken)
	b := sampleBackup("20261203T210000")
	mustWrite(t, l.MetaBackupInfoPath(b.ID), string(b.Marshal()))
	mustWrite(t, filepath.Join(l.MetaDir, b.ID+"-keep"), "full")

	changed, err := RepairFormat(t.Context(), l)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{l.MetaBackupInfoPath(b.ID), filepath.Join(l.MetaDir, b.ID+"-keep"), l.MetaDir, xlogPath}
	slices.Sort(want)
	slices.Sort(changed)
	if !slices.Equal(changed, want) {
		t.Errorf("changed = %v, want %v", changed, want)
	}
	if got := readFile(t, xlogPath); got != orig+"000000010000000000000007\t52882\t1796320867.0645812\tgzip\n" {
		t.Errorf("xlog.db = %q", got)
	}
	for _, k := range keysOf(t, l.LegacyBackupInfoPath(b.ID)) {
		if !FormatBarman34.hasKey(k) {
			t.Errorf("backup.info key %s is unknown to Barman 3.4", k)
		}
	}
	if got := readFile(t, filepath.Join(l.BackupDirPath(b.ID), "annotations", "keep")); got != "full" {
		t.Errorf("keep = %q", got)
	}
	if _, err := os.Stat(l.MetaDir); !os.IsNotExist(err) {
		t.Errorf("meta/ left (%v)", err)
	}
	if again, err := RepairFormat(t.Context(), l); err != nil || len(again) != 0 {
		t.Errorf("second run changed %v, %v", again, err)
	}
}

// A 3.17 catalog is never touched.
func TestRepairFormatLeaves317Alone(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	l := NewLayout("pg1", filepath.Join(root, "pg1"), root)
	copyTree(t, "testdata/barman/pg1", l.BackupDir)
	copyTree(t, "testdata/xlogdb/current", l.WalsDir)
	if changed, err := RepairFormat(t.Context(), l); err != nil || len(changed) != 0 {
		t.Errorf("RepairFormat = %v, %v", changed, err)
	}
}
