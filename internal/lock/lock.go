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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	f      *os.File
	path   string
	shared bool
}

// Path returns the lock file path.
func (l *Lock) Path() string { return l.path }

// TryLock takes the lock exclusively without waiting. When it is held
// elsewhere (exclusively or shared) the error matches ErrBusy and is a
// *BusyError naming a holder.
func TryLock(path string) (*Lock, error) {
	f, err := flockFile(path, syscall.LOCK_EX)
	if err != nil {
		return nil, err
	}
	// Write our PID so that other processes can name the holder.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, path: path}, nil
}

// TryLockShared takes the lock shared without waiting: any number of shared
// holders may hold it at once (restores and verifications of one backup),
// while an exclusive holder (delete, retention) excludes them all. When an
// exclusive holder has it the error matches ErrBusy and names that holder.
// A shared holder does not write its PID into the file (several may hold
// it); Holders finds them through /proc/locks.
func TryLockShared(path string) (*Lock, error) {
	f, err := flockFile(path, syscall.LOCK_SH)
	if err != nil {
		return nil, err
	}
	return &Lock{f: f, path: path, shared: true}, nil
}

func flockFile(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &BusyError{Path: path, PID: holderPID(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// holderPID names one process holding path: the PID an exclusive holder
// wrote, else the first holder /proc/locks lists.
func holderPID(path string) int {
	if pid, ok, _ := readPID(path); ok {
		return pid
	}
	if pids, err := Holders(path); err == nil && len(pids) > 0 {
		return pids[0]
	}
	return 0
}

// Holders lists the PIDs holding a flock on the file at path, shared or
// exclusive, as /proc/locks reports them (sorted, without duplicates). A
// missing file has no holders.
func Holders(path string) ([]int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("stat lock %s: %w", path, err)
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, fmt.Errorf("read /proc/locks: %w", err)
	}
	return parseProcLocks(data, st.Ino, uint64(st.Dev)), nil
}

// parseProcLocks returns the PIDs of FLOCK lines on inode ino of device
// dev. A line reads "1: FLOCK  ADVISORY  READ  1234 fd:01:5678 0 EOF"; the
// device is major:minor in hex.
func parseProcLocks(data []byte, ino, dev uint64) []int {
	seen := map[int]bool{}
	var pids []int
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		pid, err := strconv.Atoi(f[4])
		if err != nil || pid <= 0 || seen[pid] {
			continue
		}
		if !sameFile(f[5], ino, dev) {
			continue
		}
		seen[pid] = true
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

func sameFile(field string, ino, dev uint64) bool {
	parts := strings.Split(field, ":")
	if len(parts) != 3 {
		return false
	}
	maj, err1 := strconv.ParseUint(parts[0], 16, 32)
	mnr, err2 := strconv.ParseUint(parts[1], 16, 32)
	n, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || n != ino {
		return false
	}
	return unix.Mkdev(uint32(maj), uint32(mnr)) == dev
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
	if !l.shared {
		_ = l.f.Truncate(0)
	}
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
