package backup

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

const childEnv = "CELLAR_BACKUP_CHILD"

type childSpec struct {
	Layout                 catalog.Layout
	Conninfo, ReplConninfo string
	MaxRateKBps            int64
}

// TestKilledBackupChild is the child half of TestKillDuringCopy: it runs a
// rate-limited backup with the options passed in the environment, until the
// parent kills it. Without the environment variable it does nothing.
func TestKilledBackupChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	var cs childSpec
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		t.Fatal(err)
	}
	o := Options{Server: "pg", Layout: cs.Layout, Conninfo: cs.Conninfo, ReplConninfo: cs.ReplConninfo, MaxRateKBps: cs.MaxRateKBps, ImmediateCheckpoint: true}
	_, err := Run(context.Background(), o)
	t.Fatalf("child backup finished before being killed: %v", err)
}

func TestKillDuringCopy(t *testing.T) {
	t.Parallel()
	c := sourceCluster(t)
	o := newOptions(t, c)
	// ~30 MB at 32 kB/s: the copy outlives the test.
	spec, err := json.Marshal(childSpec{Layout: o.Layout, Conninfo: o.Conninfo, ReplConninfo: o.ReplConninfo, MaxRateKBps: 32})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledBackupChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	// Wait until the child's backup is STARTED and copying.
	cat := catalog.Open(o.Layout)
	var id string
	deadline := time.Now().Add(60 * time.Second)
	for id == "" {
		backups, _ := cat.Backups()
		for _, b := range backups {
			if b.Status == catalog.StatusStarted {
				if entries, _ := os.ReadDir(o.Layout.BackupDirPath(b.ID)); len(entries) > 0 {
					id = b.ID
				}
			}
		}
		select {
		case <-exited:
			t.Fatalf("child exited early:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			backups, err := cat.Backups()
			cmd.Process.Kill()
			<-exited
			for _, b := range backups {
				t.Logf("backup %s: %s", b.ID, b.Status)
			}
			t.Fatalf("child backup never started copying (%v):\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// While the child holds the backup lock, its backup is left alone.
	if ids, err := MarkStaleFailed(o.Layout, nil); err != nil || len(ids) != 0 {
		t.Fatalf("MarkStaleFailed with a live backup: %v, %v", ids, err)
	}
	if _, err := Run(context.Background(), o); !errors.Is(err, ErrBackupRunning) || !errors.Is(err, lock.ErrBusy) {
		t.Fatalf("concurrent Run: %v, want ErrBackupRunning", err)
	}

	cmd.Process.Signal(syscall.SIGKILL)
	<-exited

	info, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run after kill: %v", err)
	}
	if info.ID == id || info.Status != catalog.StatusWaitingForWALs {
		t.Fatalf("new backup %s status %s", info.ID, info.Status)
	}
	killed, err := cat.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if killed.Status != catalog.StatusFailed || killed.Error != "failure copying files (interrupted: backup process died)" {
		t.Fatalf("killed backup: status %s error %q", killed.Status, killed.Error)
	}
	verifyBackup(t, o.Layout.BackupDataDir(info.ID))
}

func TestReuseLink(t *testing.T) {
	t.Parallel()
	c := sourceCluster(t)
	o := newOptions(t, c)
	o.ReuseBackup = ReuseLink
	first, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	c.Exec(t, "CHECKPOINT")
	second, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID == second.ID {
		t.Fatalf("same id %s", first.ID)
	}
	verifyBackup(t, o.Layout.BackupDataDir(first.ID))
	verifyBackup(t, o.Layout.BackupDataDir(second.ID))
	size, dedup := *second.Size, *second.DeduplicatedSize
	t.Logf("second backup: size %d, new bytes %d (%.2f%%)", size, dedup, 100*float64(dedup)/float64(size))
	if dedup*20 >= size {
		t.Errorf("second backup of an unchanged cluster has %d new bytes of %d (want < 5%%)", dedup, size)
	}
	// The first backup's files are now shared, so its own share shrinks too.
	s1, d1, err := DiskUsage(o.Layout.BackupDirPath(first.ID))
	if err != nil {
		t.Fatal(err)
	}
	if d1*20 >= s1 {
		t.Errorf("first backup still owns %d of %d bytes after linking", d1, s1)
	}
}

// writeWAL creates an (empty) archived WAL file in Barman's wals/<hash>/.
func writeWAL(t *testing.T, l catalog.Layout, name string) {
	t.Helper()
	n, err := wal.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	p := l.WALPath(n)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCheckBackup(t *testing.T) {
	t.Parallel()
	const (
		b0 = "000000010000000000000010"
		b1 = "000000010000000000000011"
		b2 = "000000010000000000000012"
		b3 = "000000010000000000000013"
	)
	tests := []struct {
		name    string
		wals    []string
		status  catalog.Status
		errText string
	}{
		{"no WAL yet", nil, catalog.StatusWaitingForWALs, ""},
		{"other timeline only", []string{"000000020000000000000013"}, catalog.StatusWaitingForWALs, ""},
		{"older than begin", []string{"00000001000000000000000F"}, catalog.StatusWaitingForWALs, ""},
		{"partial so far", []string{b0, b1}, catalog.StatusWaitingForWALs, ""},
		{"complete", []string{b0, b1, b2}, catalog.StatusDone, ""},
		{"complete and newer", []string{b0, b1, b2, b3}, catalog.StatusDone, ""},
		{"gap", []string{b0, b2}, catalog.StatusFailed, "At least one WAL file is missing. The first missing WAL file is " + b1},
		{"first missing", []string{b1, b2}, catalog.StatusFailed, "At least one WAL file is missing. The first missing WAL file is " + b0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := catalog.NewLayout("pg", dir, dir)
			if err := l.MakeDirs(); err != nil {
				t.Fatal(err)
			}
			info := catalog.NewBackupInfo("20260101T000000")
			info.Status = catalog.StatusStarted
			cat := catalog.Open(l)
			if err := cat.Save(info); err != nil {
				t.Fatal(err)
			}
			info.Status = catalog.StatusWaitingForWALs
			info.BeginWAL, info.EndWAL, info.Timeline = b0, b2, 1
			if err := cat.Save(info); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.wals {
				writeWAL(t, l, w)
			}
			got, err := CheckBackup(context.Background(), l, info.ID)
			if err != nil {
				t.Fatal(err)
			}
			saved, err := cat.Get(info.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.status || saved.Status != tc.status || saved.Error != tc.errText {
				t.Fatalf("status %s (saved %s, error %q), want %s %q", got.Status, saved.Status, saved.Error, tc.status, tc.errText)
			}
			if tc.status == catalog.StatusFailed {
				if _, err := CheckBackup(context.Background(), l, info.ID); !errors.Is(err, ErrBackupFailed) {
					t.Fatalf("check of FAILED backup: %v", err)
				}
			}
		})
	}
}

// TestWaitForWALsRealArchive: a backup becomes DONE once the WAL archived
// by PostgreSQL is copied into wals/ (the poke stands in for archive-wal).
func TestWaitForWALsRealArchive(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	o := newOptions(t, c)
	info, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	poke := func(context.Context) error {
		entries, err := os.ReadDir(c.ArchiveDir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if wal.IsSegmentName(e.Name()) {
				n, _ := wal.ParseName(e.Name())
				if _, err := os.Stat(o.Layout.WALPath(n)); err == nil {
					continue
				}
				data, err := os.ReadFile(filepath.Join(c.ArchiveDir, e.Name()))
				if err != nil {
					return err
				}
				os.MkdirAll(filepath.Dir(o.Layout.WALPath(n)), 0o700)
				if err := os.WriteFile(o.Layout.WALPath(n), data, 0o600); err != nil {
					return err
				}
			}
		}
		return nil
	}
	done, err := WaitForWALs(context.Background(), o.Layout, info.ID, time.Minute, poke)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != catalog.StatusDone {
		t.Fatalf("status %s error %q", done.Status, done.Error)
	}
}
