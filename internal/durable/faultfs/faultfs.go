// Package faultfs is a test harness: a durable.Ops that fails the N-th
// mutation, in the manner of pebble's errorfs. A test first runs an
// operation with a counting Ops to learn how many mutations it makes, then
// runs it again once for every N, each time failing mutation N, and checks
// after each failure that the catalog is consistent and nothing needed is
// gone.
package faultfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cellar-backup/cellar/internal/durable"
)

// ErrInjected is the error a failed mutation returns (wrapped with the
// operation and path).
var ErrInjected = errors.New("injected fault")

// Op names a kind of mutation.
type Op string

// The kinds of mutation, one per durable.Ops method.
const (
	OpWriteFile     Op = "write"
	OpWriteFileFrom Op = "write-from"
	OpRename        Op = "rename"
	OpLink          Op = "link"
	OpRemove        Op = "remove"
	OpRemoveAll     Op = "remove-all"
	OpSyncDir       Op = "fsync-dir"
	OpMkdirAll      Op = "mkdir"
)

// Call records one mutation that was attempted.
type Call struct {
	Op   Op
	Path string
}

// FS wraps a durable.Ops. Mutation number FailAt (1-based, counting every
// call) returns ErrInjected without touching the disk; 0 fails nothing and
// only counts. Safe for concurrent use.
type FS struct {
	inner  durable.Ops
	failAt int

	mu    sync.Mutex
	calls []Call
}

// New returns an FS over the real filesystem that fails call failAt.
func New(failAt int) *FS { return &FS{inner: durable.OS(), failAt: failAt} }

// Calls returns the mutations attempted so far, the failed one included.
func (f *FS) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Failed reports whether the injected fault fired.
func (f *FS) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failAt > 0 && len(f.calls) >= f.failAt
}

func (f *FS) step(op Op, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, Call{Op: op, Path: path})
	if len(f.calls) == f.failAt {
		return fmt.Errorf("%s %s: %w", op, path, ErrInjected)
	}
	return nil
}

// WriteFile implements durable.Ops.
func (f *FS) WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := f.step(OpWriteFile, path); err != nil {
		return err
	}
	return f.inner.WriteFile(path, data, perm)
}

// WriteFileFrom implements durable.Ops.
func (f *FS) WriteFileFrom(path string, r io.Reader, perm os.FileMode) (int64, error) {
	if err := f.step(OpWriteFileFrom, path); err != nil {
		return 0, err
	}
	return f.inner.WriteFileFrom(path, r, perm)
}

// Rename implements durable.Ops.
func (f *FS) Rename(oldpath, newpath string) error {
	if err := f.step(OpRename, newpath); err != nil {
		return err
	}
	return f.inner.Rename(oldpath, newpath)
}

// Link implements durable.Ops.
func (f *FS) Link(oldpath, newpath string) error {
	if err := f.step(OpLink, newpath); err != nil {
		return err
	}
	return f.inner.Link(oldpath, newpath)
}

// Remove implements durable.Ops.
func (f *FS) Remove(path string) error {
	if err := f.step(OpRemove, path); err != nil {
		return err
	}
	return f.inner.Remove(path)
}

// RemoveAll implements durable.Ops.
func (f *FS) RemoveAll(path string) error {
	if err := f.step(OpRemoveAll, path); err != nil {
		return err
	}
	return f.inner.RemoveAll(path)
}

// SyncDir implements durable.Ops.
func (f *FS) SyncDir(dir string) error {
	if err := f.step(OpSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

// MkdirAll implements durable.Ops.
func (f *FS) MkdirAll(path string, perm os.FileMode) error {
	if err := f.step(OpMkdirAll, path); err != nil {
		return err
	}
	return f.inner.MkdirAll(path, perm)
}
