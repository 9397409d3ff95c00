package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Owned temp files.
//
// Short-lived client processes (wal-archive, put-wal, wal-restore) write
// hidden temp files next to their target and rename or remove them when
// done. A process killed with SIGKILL cannot remove its temp file, and no
// later run knew whether a temp file was abandoned or still being written.
// An owned temp file carries its writer's PID in its name and is locked
// (flock, exclusive) by the writer for as long as it is open: a later run
// removes it only when the lock is free AND no process with that PID
// exists. The lock protects a live writer whose PID is not visible here
// (another PID namespace); the PID check protects the moment between
// creating the file and locking it.

// ownedMarker separates the target name from the owner in a temp name:
// "." + base + ownedMarker + pid + "-" + random.
const ownedMarker = ".tmp-"

// CreateOwnedTemp creates a new hidden temp file for base in dir, mode
// 0600, named after base and this process's PID, and locks it. Closing the
// file releases the lock.
func CreateOwnedTemp(dir, base string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "."+base+ownedMarker+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return nil, fmt.Errorf("create temp for %s: %w", filepath.Join(dir, base), err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lock temp %s: %w", f.Name(), err)
	}
	return f, nil
}

// ownedTempPID returns the writer PID in an owned temp file name.
func ownedTempPID(name string) (int, bool) {
	if !strings.HasPrefix(name, ".") {
		return 0, false
	}
	i := strings.LastIndex(name, ownedMarker)
	if i < 0 {
		return 0, false
	}
	pidText, rnd, ok := strings.Cut(name[i+len(ownedMarker):], "-")
	if !ok || !isDigits(pidText) || !isDigits(rnd) {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// processAlive reports whether a process with this PID exists (EPERM
// means it exists but belongs to another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// SweepOwnedTemps removes the owned temp files in dir whose writer is
// gone, and returns their names. Files it cannot open or lock, and the
// files of live writers, are left alone; errors are not reported (a left
// temp file only wastes space until the next sweep).
func SweepOwnedTemps(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		pid, ok := ownedTempPID(e.Name())
		if !ok || !e.Type().IsRegular() || processAlive(pid) {
			continue
		}
		if removeIfUnlocked(filepath.Join(dir, e.Name())) {
			removed = append(removed, e.Name())
		}
	}
	return removed
}

// removeIfUnlocked removes path if nobody holds its flock. The lock is
// held while removing, so a writer cannot take it in between.
func removeIfUnlocked(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false
	}
	err = os.Remove(path)
	return err == nil || errors.Is(err, fs.ErrNotExist)
}
