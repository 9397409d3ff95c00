package stream

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// TestResetAndStop: --reset is a no-op when streaming/ matches the slot,
// refused while a receiver runs, and otherwise moves streaming/ to the
// slot's restart segment, from which the receiver resumes; --stop sends
// SIGINT to the receiver process, which stops cleanly.
func TestResetAndStop(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{ExtraConf: keepWAL})
	l := testLayout(t, "pg")
	o := testOptions(t, c, l)
	o.SlotName, o.CreateSlot = "reset_slot", true
	ctx := context.Background()

	r := startReceiver(t, o)
	c.GenerateWAL(t, 2)
	c.Exec(t, "CREATE TABLE r (x int); INSERT INTO r SELECT generate_series(1, 100)")
	waitReceived(t, r.rec.Progress, currentLSN(t, c))
	if _, err := Reset(ctx, o); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("Reset while running: %v, want ErrAlreadyRunning", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// The walsender may still be applying the receiver's last status
	// update: read restart_lsn only once the slot is released.
	deadline := time.Now().Add(15 * time.Second)
	for c.QueryRow(t, "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'reset_slot'") != "false" {
		if time.Now().After(deadline) {
			t.Fatal("slot reset_slot still active after the receiver stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	restart, err := wal.ParseLSN(c.QueryRow(t, "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = 'reset_slot'"))
	if err != nil {
		t.Fatal(err)
	}
	restartSeg := wal.NameForLSN(1, restart, segSize)
	res, err := Reset(ctx, o)
	if err != nil || res.Changed {
		t.Fatalf("Reset at the slot position = %+v, %v; want a no-op", res, err)
	}

	// Simulate a streaming/ that fell behind: only an old partial.
	for _, n := range streamedFiles(t, l.StreamingDir) {
		if err := os.Remove(filepath.Join(l.StreamingDir, n.String())); err != nil {
			t.Fatal(err)
		}
	}
	old := wal.NameForSegNo(1, restartSeg.SegNo(segSize)-2, segSize).Partial()
	writeFiles(t, l.StreamingDir, map[string]int{old.String(): 123})
	res, err = Reset(ctx, o)
	if err != nil || !res.Changed || res.Partial != restartSeg.Partial().String() {
		t.Fatalf("Reset behind = %+v, %v; want a new %s", res, err, restartSeg.Partial())
	}
	if files := streamedFiles(t, l.StreamingDir); len(files) != 1 || files[0] != restartSeg.Partial() {
		t.Fatalf("streaming/ after reset = %v, want only %s", files, restartSeg.Partial())
	}

	// The receiver resumes from the reset partial; run it in a child
	// process and stop it with Stop (SIGINT).
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envConninfo+"="+c.ConnString(),
		envBackup+"="+l.BackupDir, envLocks+"="+l.LockDir, envSlot+"=reset_slot")
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	closed := c.SwitchWAL(t)
	last := mustName(t, closed)
	waitFor(t, "child to stream "+closed, func() bool {
		_, err := os.Stat(filepath.Join(l.StreamingDir, closed))
		return err == nil
	})
	if err := Stop(ctx, l); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("receiver process after SIGINT: %v, want a clean exit", err)
	}
	if err := Stop(ctx, l); !errors.Is(err, ErrNotRunning) {
		t.Errorf("second Stop: %v, want ErrNotRunning", err)
	}
	nos := checkSegments(t, l.StreamingDir, 1, c)
	checkContiguous(t, "after reset", nos)
	if len(nos) == 0 || nos[0] != restartSeg.SegNo(segSize) || nos[len(nos)-1] != last.SegNo(segSize) {
		t.Errorf("segments after reset %X, want %s..%s", nos, restartSeg, last)
	}
}
