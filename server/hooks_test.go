package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/hooks/hookstest"
	"github.com/cellar-backup/cellar/wal"
)

func TestHooksFromConfig(t *testing.T) {
	home := t.TempDir()
	cfg := loadConfig(t, fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: host=/nonexistent\n    pre_archive_retry_script: a\n    post_backup_script: b\n    pre_recovery_script: c\n    post_delete_retry_script: d\n    pre_wal_delete_script: e\n", home))
	s, err := New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		got  hooks.Set
		kind string
		cmd  string
	}{
		{s.ArchiveOptions(nil).Hooks, hooks.KindArchive, s.ArchiveHooks().PreRetry},
		{s.BackupHooks(), hooks.KindBackup, s.BackupHooks().Post},
		{s.RecoveryHooks(), hooks.KindRecovery, s.RecoveryHooks().Pre},
		{s.DeleteHooks(), hooks.KindDelete, s.DeleteHooks().PostRetry},
		{s.WALDeleteHooks(), hooks.KindWALDelete, s.WALDeleteHooks().Pre},
	} {
		if tc.got.Kind != tc.kind || tc.got.Server != "pg" || tc.cmd == "" {
			t.Errorf("%s hooks: %+v (command %q)", tc.kind, tc.got, tc.cmd)
		}
	}
	if got := []string{s.ArchiveHooks().PreRetry, s.BackupHooks().Post, s.RecoveryHooks().Pre, s.DeleteHooks().PostRetry, s.WALDeleteHooks().Pre}; !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("commands %v", got)
	}
}

func TestDeleteHooks(t *testing.T) {
	s := fakeCatalog(t, "REDUNDANCY 1", 3)
	dir := t.TempDir()
	pre, post, walPre, walPost := filepath.Join(dir, "pre"), filepath.Join(dir, "post"), filepath.Join(dir, "walpre"), filepath.Join(dir, "walpost")
	h := &s.Config().Hooks
	h.PreDeleteScript, h.PostDeleteRetryScript = hookstest.EnvDump(pre), hookstest.EnvDump(post)
	h.PreWALDeleteRetryScript, h.PostWALDeleteScript = hookstest.EnvDump(walPre), hookstest.EnvDump(walPost)
	bs, err := s.Catalog().Backups()
	if err != nil || len(bs) != 3 {
		t.Fatalf("backups %d %v", len(bs), err)
	}
	first, second := bs[0], bs[1]
	var ts1 string
	if err := s.XLogDB().Scan(t.Context(), func(w catalog.WALInfo) error {
		if ts1 == "" {
			ts1 = hooks.Timestamp(w.ModTime())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBackup(t.Context(), first.ID, nil); err != nil {
		t.Fatal(err)
	}
	pres, posts := hookstest.ReadDumps(t, pre), hookstest.ReadDumps(t, post)
	if len(pres) != 1 || len(posts) != 1 {
		t.Fatalf("delete hooks ran %d/%d times", len(pres), len(posts))
	}
	want := map[string]string{
		"BARMAN_SERVER": "pg", "BARMAN_BACKUP_ID": first.ID, "BARMAN_BACKUP_DIR": s.Layout().BackupDirPath(first.ID),
		"BARMAN_PREVIOUS_ID": "", "BARMAN_NEXT_ID": second.ID, "BARMAN_STATUS": "DONE", "BARMAN_ERROR": "",
	}
	for k, v := range want {
		if pres[0][k] != v || posts[0][k] != v {
			t.Errorf("%s: pre %q post %q, want %q", k, pres[0][k], posts[0][k], v)
		}
	}
	if pres[0]["BARMAN_HOOK"] != "delete_script" || posts[0]["BARMAN_HOOK"] != "delete_retry_script" || posts[0]["BARMAN_PHASE"] != "post" {
		t.Errorf("identity: pre %v post %v", pres[0], posts[0])
	}
	// The first backup needed WAL 1 and 2: both removed, one hook run each.
	wp, wq := hookstest.ReadDumps(t, walPre), hookstest.ReadDumps(t, walPost)
	if len(wp) != 2 || len(wq) != 2 {
		t.Fatalf("wal_delete hooks ran %d/%d times", len(wp), len(wq))
	}
	seg1 := wal.NameForSegNo(1, 1, wal.DefaultSegmentSize)
	wantWAL := map[string]string{
		"BARMAN_SEGMENT": seg1.String(), "BARMAN_FILE": s.Layout().WALPath(seg1), "BARMAN_SIZE": "24",
		"BARMAN_TIMESTAMP": ts1, "BARMAN_COMPRESSION": "", "BARMAN_HOOK": "wal_delete_retry_script", "BARMAN_RETRY": "1",
	}
	for k, v := range wantWAL {
		if wp[0][k] != v {
			t.Errorf("wal pre %s = %q, want %q", k, wp[0][k], v)
		}
	}
	if wq[0]["BARMAN_SEGMENT"] != seg1.String() || wq[0]["BARMAN_PHASE"] != "post" {
		t.Errorf("wal post %v", wq[0])
	}

	// ABORT_STOP in the pre delete retry script leaves the backup alone.
	h.PreDeleteRetryScript = "exit 63"
	err = s.DeleteBackup(t.Context(), second.ID, nil)
	if !errors.Is(err, hooks.ErrAbortStop) {
		t.Fatalf("DeleteBackup err = %v, want ErrAbortStop", err)
	}
	if _, err := s.Catalog().Get(second.ID); err != nil {
		t.Fatalf("backup gone after ABORT_STOP: %v", err)
	}
	if pending, _ := s.Catalog().HasDeleteThis(second.ID); pending {
		t.Fatal("ABORT_STOP left a delete_this marker")
	}
	if _, err := os.Stat(filepath.Join(s.Layout().BackupDataDir(second.ID), "PG_VERSION")); err != nil {
		t.Fatalf("backup data touched: %v", err)
	}
}

func TestWALDeleteAbortStopKeepsWAL(t *testing.T) {
	s := fakeCatalog(t, "REDUNDANCY 1", 3)
	bs, _ := s.Catalog().Backups()
	h := &s.Config().Hooks
	seg2 := wal.NameForSegNo(1, 2, wal.DefaultSegmentSize).String()
	// Stop at the second WAL: the first goes, the second stays listed.
	h.PreWALDeleteRetryScript = fmt.Sprintf(`[ "$BARMAN_SEGMENT" = %s ] && exit 63; exit 0`, seg2)
	err := s.DeleteBackup(t.Context(), bs[0].ID, nil)
	if !errors.Is(err, hooks.ErrAbortStop) {
		t.Fatalf("DeleteBackup err = %v, want ErrAbortStop", err)
	}
	names := walNames(t, s)
	seg1 := wal.NameForSegNo(1, 1, wal.DefaultSegmentSize)
	if slices.Contains(names, seg1.String()) || !slices.Contains(names, seg2) {
		t.Fatalf("xlog.db after abort: %v", names)
	}
	if _, err := os.Stat(s.Layout().WALPath(seg1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("first WAL not removed: %v", err)
	}
	n2, _ := wal.ParseName(seg2)
	if _, err := os.Stat(s.Layout().WALPath(n2)); err != nil {
		t.Errorf("stopped WAL removed: %v", err)
	}
}
