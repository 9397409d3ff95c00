package durable

import (
	"io"
	"os"
)

// Ops is every filesystem mutation a catalog operation makes (archiving,
// deleting a backup, pruning WAL, retention). Operations take an Ops rather
// than calling os and this package directly, so that a test can fail the
// N-th mutation (see internal/durable/faultfs) and prove that the catalog is
// consistent after a failure at every point.
//
// Contract: each method either completes with the durability of the
// function of this package with the same name (WriteFile, WriteFileFrom,
// Rename, MkdirAll: whole or not at all, directory fsynced), or returns an
// error after which the caller must assume nothing about the target beyond
// "old or new state". Remove and RemoveAll do not fsync the parent; callers
// that need the removal durable call SyncDir. Implementations are safe for
// concurrent use.
type Ops interface {
	WriteFile(path string, data []byte, perm os.FileMode) error
	WriteFileFrom(path string, r io.Reader, perm os.FileMode) (int64, error)
	Rename(oldpath, newpath string) error
	Link(oldpath, newpath string) error
	Remove(path string) error
	RemoveAll(path string) error
	SyncDir(dir string) error
	MkdirAll(path string, perm os.FileMode) error
}

// OS returns the real Ops: this package's durable helpers and package os.
func OS() Ops { return osOps{} }

type osOps struct{}

func (osOps) WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFile(path, data, perm)
}

func (osOps) WriteFileFrom(path string, r io.Reader, perm os.FileMode) (int64, error) {
	return WriteFileFrom(path, r, perm)
}
func (osOps) Rename(oldpath, newpath string) error         { return Rename(oldpath, newpath) }
func (osOps) Link(oldpath, newpath string) error           { return os.Link(oldpath, newpath) }
func (osOps) Remove(path string) error                     { return os.Remove(path) }
func (osOps) RemoveAll(path string) error                  { return os.RemoveAll(path) }
func (osOps) SyncDir(dir string) error                     { return SyncDir(dir) }
func (osOps) MkdirAll(path string, perm os.FileMode) error { return MkdirAll(path, perm) }
