package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/retention"
	"github.com/cellar-backup/cellar/wal"
)

// fakeCatalog builds a server with n DONE backups, one per WAL segment
// pair, and archived WAL 1..2n+2 plus a history file.
func fakeCatalog(t *testing.T, policy string, n int) *Server {
	t.Helper()
	home := t.TempDir()
	cfg := loadConfig(t, fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: host=/nonexistent\n    retention_policy: %s\n", home, policy))
	s, err := New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeDirectories(); err != nil {
		t.Fatal(err)
	}
	seg := func(i int) string { return wal.NameForSegNo(1, uint64(i), wal.DefaultSegmentSize).String() }
	var infos []catalog.WALInfo
	for i := 1; i <= 2*n+2; i++ {
		name, _ := wal.ParseName(seg(i))
		p := s.Layout().WALPath(name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(seg(i)), 0o600)
		infos = append(infos, catalog.WALInfo{Name: seg(i), Size: 24, Time: float64(1700000000 + i)})
	}
	os.WriteFile(filepath.Join(s.Layout().WalsDir, "00000002.history"), []byte("1\t0/5000000\tx\n"), 0o600)
	infos = append(infos, catalog.WALInfo{Name: "00000002.history", Size: 14, Time: 1700000100})
	if err := s.XLogDB().Append(t.Context(), infos...); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		begin := base.Add(time.Duration(i) * 24 * time.Hour)
		b := catalog.NewBackupInfo(catalog.NewBackupID(begin))
		b.Status = catalog.StatusDone
		b.BeginTime, b.EndTime = begin, begin.Add(time.Minute)
		b.BeginWAL, b.EndWAL = seg(2*i+1), seg(2*i+2)
		b.Timeline, b.Version, b.XLogSegmentSize = 1, 150018, int64(wal.DefaultSegmentSize)
		b.Mode, b.ServerName = "postgres", "pg"
		b.Size = catalog.Int64(1000)
		if err := s.Catalog().Save(b); err != nil {
			t.Fatal(err)
		}
		d := s.Layout().BackupDataDir(b.ID)
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "PG_VERSION"), []byte("15\n"), 0o600)
	}
	s.SetClock(func() time.Time { return base.Add(time.Duration(n) * 24 * time.Hour) })
	return s
}

func walNames(t *testing.T, s *Server) []string {
	var names []string
	if err := s.XLogDB().Scan(t.Context(), func(w catalog.WALInfo) error { names = append(names, w.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return names
}

func TestRetentionRedundancyDeletesOldestAndPrunesWAL(t *testing.T) {
	s := fakeCatalog(t, "REDUNDANCY 2", 3)
	plan, decisions, err := s.EnforceRetention(t.Context(), true, nil)
	if err != nil || len(plan) != 1 || plan[0] != "20261101T030000" {
		t.Fatalf("dry run: %v %v", plan, err)
	}
	if decisions[0].Label != retention.LabelObsolete || decisions[0].Reason == "" {
		t.Fatalf("decision %+v", decisions[0])
	}
	if _, err := s.GetBackup("20261101T030000"); err != nil {
		t.Fatal("dry run deleted the backup")
	}
	var out strings.Builder
	deleted, _, err := s.EnforceRetention(t.Context(), false, &out)
	if err != nil || len(deleted) != 1 {
		t.Fatalf("enforce: %v %v", deleted, err)
	}
	if _, err := s.GetBackup("20261101T030000"); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("backup still in catalog: %v", err)
	}
	if _, err := os.Stat(s.Layout().BackupDirPath("20261101T030000")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("backup directory left behind")
	}
	names := walNames(t, s)
	// Segments 1 and 2 belonged only to the deleted backup; 3.. stay; history stays.
	if names[0] != "000000010000000000000003" || !contains(names, "00000002.history") || contains(names, "000000010000000000000002") {
		t.Fatalf("xlog.db after prune: %v", names)
	}
	for _, n := range []string{"000000010000000000000001", "000000010000000000000002"} {
		if _, err := os.Stat(filepath.Join(s.Layout().WalsDir, "0000000100000000", n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("WAL %s not removed from disk", n)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Layout().WalsDir, "0000000100000000", "000000010000000000000003")); err != nil {
		t.Errorf("WAL needed by a remaining backup removed: %v", err)
	}
	// The catalog on disk agrees with xlog.db.
	rebuilt, err := catalog.ScanWALsDir(t.Context(), s.Layout().WalsDir)
	if err != nil || len(rebuilt) != len(names) {
		t.Fatalf("rebuild sees %d files, xlog.db %d (%v)", len(rebuilt), len(names), err)
	}
}

func TestDeleteRefusesKeptAndMinimumRedundancy(t *testing.T) {
	s := fakeCatalog(t, "REDUNDANCY 1", 2)
	id := "20261101T030000"
	if err := s.Keep(id, catalog.KeepStandalone); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBackup(t.Context(), id, nil); !errors.Is(err, retention.ErrKept) {
		t.Fatalf("delete of a kept backup: %v", err)
	}
	_, decisions, err := s.EnforceRetention(t.Context(), true, nil)
	if err != nil || decisions[0].Label != retention.LabelKeepStandalone {
		t.Fatalf("kept backup label: %+v %v", decisions, err)
	}
	s.Catalog().ReleaseKeep(id)
	s.cfg.MinimumRedundancy = 2
	if err := s.DeleteBackup(t.Context(), id, nil); !errors.Is(err, retention.ErrMinimumRedundancy) {
		t.Fatalf("delete below minimum redundancy: %v", err)
	}
	s.cfg.MinimumRedundancy = 0
	if err := s.DeleteBackup(t.Context(), id, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Keep("20261102T030000", "sometimes"); err == nil {
		t.Fatal("bad keep target accepted")
	}
}

func TestInterruptedDeleteIsFinished(t *testing.T) {
	s := fakeCatalog(t, "REDUNDANCY 3", 3)
	id := "20261102T030000"
	// Simulate a delete killed after its marker and data removal.
	if err := s.Catalog().MarkDeleteThis(id); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(s.Layout().BackupDataDir(id))
	deleted, _, err := s.EnforceRetention(t.Context(), false, nil)
	if err != nil || len(deleted) != 1 || deleted[0] != id {
		t.Fatalf("resume: %v %v", deleted, err)
	}
	if ok, _ := s.Catalog().HasDeleteThis(id); ok {
		t.Fatal("marker left behind")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
