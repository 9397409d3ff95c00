package lock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFileName(t *testing.T) {
	for _, tc := range []struct{ server, task, want string }{
		{"pg1", "archive-wal", ".pg1-archive-wal.lock"},
		{"main", "receive-wal", ".main-receive-wal.lock"},
		{"pg", "xlogdb", ".pg-xlogdb.lock"},
	} {
		if got := FileName(tc.server, tc.task); got != tc.want {
			t.Errorf("FileName(%q,%q) = %q, want %q", tc.server, tc.task, got, tc.want)
		}
	}
}

func TestTryLockBusyAndRelease(t *testing.T) {
	p := filepath.Join(t.TempDir(), FileName("pg1", "archive-wal"))
	l, err := TryLock(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = TryLock(p)
	var be *BusyError
	if !errors.Is(err, ErrBusy) || !errors.As(err, &be) {
		t.Fatalf("second TryLock: got %v, want ErrBusy", err)
	}
	if be.PID != os.Getpid() {
		t.Errorf("holder pid %d, want %d", be.PID, os.Getpid())
	}
	pid, held, err := Holder(p)
	if err != nil || !held || pid != os.Getpid() {
		t.Fatalf("Holder = %d %v %v", pid, held, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, held, _ := Holder(p); held {
		t.Fatal("still held after release")
	}
	l2, err := TryLock(p)
	if err != nil {
		t.Fatalf("relock: %v", err)
	}
	l2.Release()
}

func TestAcquireWaitsAndHonoursContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".x.lock")
	l, err := TryLock(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, p); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrBusy) {
		t.Fatalf("Acquire on held lock: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		l2, err := Acquire(t.Context(), p)
		if err == nil {
			l2.Release()
		}
		done <- err
	}()
	l.Release()
	if err := <-done; err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
}

// A lock held by a process that dies is released by the kernel.
func TestLockFreedWhenHolderKilled(t *testing.T) {
	if os.Getenv("LOCK_HELPER") != "" {
		if _, err := TryLock(os.Getenv("LOCK_HELPER")); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	p := filepath.Join(t.TempDir(), ".child.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockFreedWhenHolderKilled$")
	cmd.Env = append(os.Environ(), "LOCK_HELPER="+p)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || !strings.HasPrefix(string(buf), "locked") {
		t.Fatalf("child did not lock: %q %v", buf, err)
	}
	pid, held, err := Holder(p)
	if err != nil || !held || pid != cmd.Process.Pid {
		t.Fatalf("Holder = %d %v %v, want child %d", pid, held, err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := TryLock(p)
	if err != nil {
		t.Fatalf("lock after holder died: %v", err)
	}
	l.Release()
}

func TestSharedLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".pg-b1.lock")
	a, err := TryLockShared(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := TryLockShared(path)
	if err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	_, err = TryLock(path)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.PID != os.Getpid() {
		t.Fatalf("exclusive over shared: got %v, want BusyError naming pid %d", err, os.Getpid())
	}
	pids, err := Holders(path)
	if err != nil || len(pids) != 1 || pids[0] != os.Getpid() {
		t.Fatalf("Holders = %v, %v", pids, err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	ex, err := TryLock(path)
	if err != nil {
		t.Fatalf("exclusive after release: %v", err)
	}
	if _, err := TryLockShared(path); !errors.Is(err, ErrBusy) {
		t.Fatalf("shared over exclusive: %v", err)
	}
	if err := ex.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestParseProcLocks(t *testing.T) {
	data := []byte("1: FLOCK  ADVISORY  READ  1234 fd:01:5678 0 EOF\n" +
		"2: POSIX  ADVISORY  WRITE 99 fd:01:5678 0 EOF\n" +
		"3: FLOCK  ADVISORY  WRITE 77 fd:01:5678 0 EOF\n" +
		"4: FLOCK  ADVISORY  READ  55 fd:01:9999 0 EOF\n" +
		"garbage\n")
	got := parseProcLocks(data, 5678, unix.Mkdev(0xfd, 1))
	if len(got) != 2 || got[0] != 77 || got[1] != 1234 {
		t.Fatalf("got %v", got)
	}
}
