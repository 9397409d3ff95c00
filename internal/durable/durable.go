// Package durable writes files so that a crash at any instant leaves either the
// old or the new content on disk, never a mix. Every catalog file that matters
// (backup.info, identity.json, xlog.db rewrites, archived WAL) goes through it.
//
// renameio makes the temp-file/fsync/rename dance easy but does not fsync the
// parent directory, so a power loss right after the rename may forget it; the
// helpers here add that step. Temp files always live next to their target
// (renameio would otherwise pick $TMPDIR when it shares the file system),
// so a crash leaves debris only in the catalog's own directories.
package durable

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/google/renameio/v2"
)

// SyncDir fsyncs a directory so that entries created, renamed or removed in it
// survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// WriteFile atomically replaces path with data: temp file in the same
// directory, fsync, rename, fsync of the directory.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := renameio.WriteFile(path, data, perm, renameio.WithTempDir(filepath.Dir(path))); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// WriteFileFrom is WriteFile for a stream. Nothing is visible at path until
// the whole stream was copied and synced.
func WriteFileFrom(path string, r io.Reader, perm os.FileMode) (int64, error) {
	t, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithPermissions(perm), renameio.WithExistingPermissions())
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	defer t.Cleanup()
	n, err := io.Copy(t, r)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", path, err)
	}
	if err := t.CloseAtomicallyReplace(); err != nil {
		return n, fmt.Errorf("write %s: %w", path, err)
	}
	return n, SyncDir(filepath.Dir(path))
}

// NewPendingFile returns a temp file that becomes path only on
// Commit. Callers stream into it and must call Cleanup in a defer.
func NewPendingFile(path string, perm os.FileMode) (*PendingFile, error) {
	t, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithPermissions(perm))
	if err != nil {
		return nil, fmt.Errorf("create temp for %s: %w", path, err)
	}
	return &PendingFile{PendingFile: t, path: path}, nil
}

// PendingFile is a renameio pending file whose Commit also fsyncs the directory.
type PendingFile struct {
	*renameio.PendingFile
	path string
}

// Commit fsyncs the data, renames it over the target and fsyncs the directory.
func (p *PendingFile) Commit() error {
	if err := p.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("commit %s: %w", p.path, err)
	}
	return SyncDir(filepath.Dir(p.path))
}

// Rename renames oldpath to newpath and fsyncs both parent directories, so
// the move is durable in both places. It overwrites newpath like rename(2);
// callers that must not overwrite check first under their own lock, or use
// Link.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(newpath)); err != nil {
		return err
	}
	if filepath.Dir(oldpath) != filepath.Dir(newpath) {
		return SyncDir(filepath.Dir(oldpath))
	}
	return nil
}

// MkdirAll creates path and any missing parents with perm and fsyncs each
// parent whose content changed.
func MkdirAll(path string, perm os.FileMode) error {
	path = filepath.Clean(path)
	if fi, err := os.Stat(path); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("mkdir %s: %w", path, syscall.ENOTDIR)
		}
		return nil
	}
	parent := filepath.Dir(path)
	if parent != path {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(path, perm); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	}
	return SyncDir(parent)
}

// CopyFile copies src to dst durably (dst appears complete or not at all).
func CopyFile(src, dst string, perm os.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = WriteFileFrom(dst, f, perm)
	return err
}

// SyncFile fsyncs an existing file by name.
func SyncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
