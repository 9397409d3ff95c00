package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/lock"
)

// TestCron runs one pass against a real lock directory: Barman's
// .<srv>-cron.lock excludes a concurrent cron per server.
func TestCron(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t,
		srv("pg1", func(s *config.Server) { s.RetentionPolicy = redundancy(2); s.StreamingArchiver = true }),
		srv("pg2", func(s *config.Server) { s.Archiver = false }),
		srv("standby", func(s *config.Server) { s.PrimarySSHCommand = "ssh primary" }),
		srv("off", func(s *config.Server) { s.Active = false }),
		srv("locked", nil),
		srv("busy", nil),
		srv("broken", nil),
	)
	cfg.Global.BarmanLockDirectory = filepath.Join(t.TempDir(), "locks") // created by Cron
	tasks := newFakeTasks()
	tasks.behave = func(_ context.Context, kind JobKind, srv string) error {
		switch {
		case srv == "busy" && kind == JobArchiveWAL:
			return fmt.Errorf("archive-wal: %w", &lock.BusyError{Path: "/l/.busy-archive-wal.lock", PID: 7})
		case srv == "broken" && kind == JobCheckBackup:
			return errors.New("backup.info unreadable")
		}
		return nil
	}

	// Run once with "locked" held by another cron, then again after.
	held, err := lockForTest(cfg, "locked")
	if err != nil {
		t.Fatal(err)
	}
	err = Cron(t.Context(), cfg, tasks, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), `server "broken"`) || !strings.Contains(err.Error(), "backup.info unreadable") {
		t.Fatalf("Cron error = %v, want the broken server's failure only", err)
	}
	if strings.Contains(err.Error(), "busy") || strings.Contains(err.Error(), "locked") {
		t.Fatalf("a skip was reported as an error: %v", err)
	}

	want := map[string]int{
		"archive-wal/pg1": 1, "check-backup/pg1": 1, "retention/pg1": 1,
		"check-backup/pg2":     1,
		"passive-sync/standby": 1,
		"archive-wal/busy":     1, "check-backup/busy": 1, // busy archive-wal does not stop the rest
		"archive-wal/broken": 1, "check-backup/broken": 1,
	}
	check := func(want map[string]int) {
		t.Helper()
		tasks.mu.Lock()
		defer tasks.mu.Unlock()
		for k, n := range want {
			if tasks.calls[k] != n {
				t.Errorf("%s ran %d times, want %d", k, tasks.calls[k], n)
			}
		}
		for k, n := range tasks.calls {
			if _, ok := want[k]; !ok {
				t.Errorf("%s ran %d times, want never", k, n)
			}
		}
	}
	check(want)
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}

	tasks.behave = nil
	if err := Cron(t.Context(), cfg, tasks, testLogger(t)); err != nil {
		t.Fatalf("second pass: %v", err)
	}
	for k := range want {
		want[k]++
	}
	want["archive-wal/locked"], want["check-backup/locked"] = 1, 1
	check(want)
	// Cron released its locks.
	for _, name := range []string{"pg1", "locked"} {
		if _, held, err := lock.Holder(filepath.Join(cfg.Global.LockDirectory(), lock.FileName(name, "cron"))); err != nil || held {
			t.Errorf("cron lock of %s still held (err %v)", name, err)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Cron(ctx, cfg, tasks, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Cron with a cancelled context: %v", err)
	}
}

func lockForTest(cfg *config.Config, srv string) (*lock.Lock, error) {
	dir := cfg.Global.LockDirectory()
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	return lock.TryLock(filepath.Join(dir, lock.FileName(srv, "cron")))
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o700) }
