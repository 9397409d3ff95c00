// Package lock implements Barman-compatible exclusive lock files: a file
// named like ".<server>-<task>.lock" in the lock directory, held with
// flock(2), with the holder's PID written inside so that list-processes and
// terminate-process can find it. The kernel drops a flock when its holder
// dies, so a kill -9 never leaves a stale lock behind.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBusy reports that another process (or another handle in this process)
// holds the lock.
var ErrBusy = errors.New("lock busy")

// BusyError says who holds a busy lock. errors.Is(err, ErrBusy) matches it.
type BusyError struct {
	Path string
	PID  int // 0 when the holder wrote no PID
}

func (e *BusyError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("lock %s is held by process %d", e.Path, e.PID)
	}
	return fmt.Sprintf("lock %s is held by another process", e.Path)
}

// Is makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// FileName returns Barman's lock file name for a server task, for example
// ".pg1-archive-wal.lock".
func FileName(server, task string) string {
	return "." + server + "-" + task + ".lock"
}

// Lock is a held lock. Release it exactly once.
type Lock struct {
	f    *os.File
	path string
}

// Path returns the lock file path.
func (l *Lock) Path() string { return l.path }

// TryLock takes the lock without waiting. When it is held elsewhere the
// error matches ErrBusy and is a *BusyError naming the holder.
func TryLock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _, _ := readPID(path)
			return nil, &BusyError{Path: path, PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Write our PID so that other processes can name the holder.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, path: path}, nil
}

// Acquire waits for the lock until ctx is done. It polls with a short,
// growing interval rather than blocking in flock(2), so that cancellation
// is honoured promptly.
func Acquire(ctx context.Context, path string) (*Lock, error) {
	delay := time.Millisecond
	for {
		l, err := TryLock(path)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrBusy) {
			return nil, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for %w: %w", err, ctx.Err())
		case <-t.C:
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// Release unlocks and closes the lock file. The file itself stays, as in
// Barman, so that a concurrent waiter never locks an unlinked inode.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	cerr := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.path, err)
	}
	if cerr != nil {
		return fmt.Errorf("close lock %s: %w", l.path, cerr)
	}
	return nil
}

// Holder reports whether the lock at path is held and the PID written by its
// holder. A missing file is not held.
func Holder(path string) (pid int, held bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("open lock %s: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _, _ := readPID(path)
			return pid, true, nil
		}
		return 0, false, fmt.Errorf("probe lock %s: %w", path, err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return 0, false, nil
}

func readPID(path string) (int, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false, nil
	}
	return pid, true, nil
}
