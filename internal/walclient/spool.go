package walclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/wal"
)

// Fetcher writes the plain bytes of WAL file name to w. A failure may
// leave w with a truncated copy: Spool and WriteDest only make what was
// written visible after Fetcher returns nil.
type Fetcher func(ctx context.Context, name string, w io.Writer) error

// Spool is wal-restore's prefetch directory: segments fetched ahead of
// PostgreSQL's requests wait there as <dir>/<name>, complete files only
// (they are written under a hidden temp name and renamed), and are moved
// into place when PostgreSQL asks for them.
type Spool struct {
	Dir string
}

func checkName(name string) error {
	n, err := wal.ParseName(name)
	if err != nil {
		return err
	}
	if n.String() != name {
		return &wal.NameError{Name: name, Reason: "hex digits must be upper case"}
	}
	return nil
}

// Take moves <dir>/<name> to dest if it is spooled, reporting whether it
// was. check (if not nil) vets the spooled file first: a file that fails
// it is removed from the spool and its error returned, so that the caller
// fetches the WAL again. Across file systems the file is copied (temp
// file and rename, as WriteRestored) and the spool copy removed.
func (s Spool) Take(name, dest string, check func(path string) error) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	src := filepath.Join(s.Dir, name)
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("spool %s: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("spool %s: not a regular file", src)
	}
	if check != nil {
		if err := check(src); err != nil {
			if rerr := os.Remove(src); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return false, fmt.Errorf("spooled %s discarded: %w", src, err)
		}
	}
	// A plain rename, no fsyncs: dest is a restore_command destination
	// (see WriteRestored), and if the rename is lost in a crash the
	// complete, fsynced segment is simply still spooled.
	err = os.Rename(src, dest)
	if errors.Is(err, syscall.EXDEV) {
		_, err = WriteRestored(context.Background(), dest, func(w io.Writer) error {
			f, err := openNoFollow(src)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		})
		if err == nil {
			err = os.Remove(src)
		}
	}
	if err != nil {
		return false, fmt.Errorf("move spooled %s to %s: %w", name, dest, err)
	}
	return true, nil
}

// Has reports whether name is spooled.
func (s Spool) Has(name string) bool {
	if checkName(name) != nil {
		return false
	}
	fi, err := os.Lstat(filepath.Join(s.Dir, name))
	return err == nil && fi.Mode().IsRegular()
}

// Fill fetches names into the spool (durably, unlike WriteRestored: a
// spooled segment outlives this process and a crash, and must not come
// back as a zero-filled file later), running up to jobs fetches at a time
// and skipping names already spooled. It waits for all of them (the
// restore_command process must not exit with fetches half done) and
// returns their errors joined; a failed fetch leaves nothing in the spool.
// Prefetch is best effort: callers usually only log the error, as the
// segment will be fetched again when PostgreSQL asks for it.
func (s Spool) Fill(ctx context.Context, names []string, jobs int, fetch Fetcher) error {
	if len(names) == 0 {
		return nil
	}
	if err := durable.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("create spool %s: %w", s.Dir, err)
	}
	archive.SweepOwnedTemps(s.Dir)
	jobs = max(jobs, 1)
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, name := range names {
		if err := checkName(name); err != nil {
			errs[i] = err
			continue
		}
		if s.Has(name) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			_, err := writeSpooled(ctx, filepath.Join(s.Dir, name), func(w io.Writer) error { return fetch(ctx, name, w) })
			if err != nil {
				errs[i] = fmt.Errorf("prefetch %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// countingWriter counts bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteDest writes dest durably from fill: a hidden temp file in dest's
// directory, fsynced and renamed over dest, then the directory fsynced, so
// a crash never leaves a half-written or unflushed file under dest (the
// spool's files outlive the process). On error nothing is left (dest is
// untouched). It returns the number of bytes written. Files handed to
// PostgreSQL use WriteRestored instead.
func WriteDest(ctx context.Context, dest string, fill func(w io.Writer) error) (int64, error) {
	p, err := durable.NewPendingFile(dest, 0o600)
	if err != nil {
		return 0, err
	}
	defer p.Cleanup()
	cw := &countingWriter{w: p}
	if err := fill(cw); err != nil {
		return cw.n, err
	}
	if err := ctx.Err(); err != nil {
		return cw.n, err
	}
	if err := p.Commit(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// writeSpooled is WriteDest with an owned temp file, so that the temp
// file of a killed prefetch is removed by a later Fill.
func writeSpooled(ctx context.Context, dest string, fill func(w io.Writer) error) (n int64, err error) {
	dir, base := filepath.Split(dest)
	f, err := archive.CreateOwnedTemp(dir, base)
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
		f.Close()
	}()
	cw := &countingWriter{w: f}
	if err := fill(cw); err != nil {
		return cw.n, err
	}
	if err := ctx.Err(); err != nil {
		return cw.n, err
	}
	if err := f.Sync(); err != nil {
		return cw.n, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return cw.n, fmt.Errorf("rename %s to %s: %w", tmp, dest, err)
	}
	return cw.n, durable.SyncDir(dir)
}

// WriteRestored writes a restore_command destination (PostgreSQL's %p,
// usually pg_wal/RECOVERYXLOG) from fill: a hidden temp file in dest's
// directory renamed over dest, so PostgreSQL never finds a half-written
// file under the final name, and on error nothing is left (no temp file,
// dest untouched). Unlike WriteDest it does not fsync the file or the
// directory: PostgreSQL fsyncs the segments it keeps when it moves them
// into place (KeepFileRestoredFromArchive), and after a crash it asks for
// the segment again, so an fsync here only costs time (a 16 MiB segment
// flushed to disk per restore_command call); barman-wal-restore and cp do
// not fsync either. fill gets the *os.File itself, so that io.Copy from
// another *os.File is done by the kernel (copy_file_range). It returns the
// number of bytes written.
func WriteRestored(ctx context.Context, dest string, fill func(w io.Writer) error) (n int64, err error) {
	return WriteRestoredChecked(ctx, dest, fill, nil)
}

// WriteRestoredChecked is WriteRestored that calls check on the complete
// temp file (and its size) before the rename: a check error leaves dest
// untouched. The temp file is an owned temp file (see
// archive.CreateOwnedTemp): one left by a killed wal-restore is removed by
// a later run (SweepRestoreTemps).
func WriteRestoredChecked(ctx context.Context, dest string, fill func(w io.Writer) error, check func(f *os.File, size int64) error) (n int64, err error) {
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	f, err := archive.CreateOwnedTemp(dir, base)
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
		f.Close()
	}()
	if err := fill(f); err != nil {
		n, _ = f.Seek(0, io.SeekCurrent)
		return n, err
	}
	if n, err = f.Seek(0, io.SeekCurrent); err != nil {
		return 0, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	if check != nil {
		if err := check(f, n); err != nil {
			return n, err
		}
	}
	if err := os.Rename(tmp, dest); err != nil {
		return n, fmt.Errorf("rename %s to %s: %w", tmp, dest, err)
	}
	return n, nil
}

// SweepRestoreTemps removes the temp files that killed wal-restore
// processes left in dir (see archive.SweepOwnedTemps).
func SweepRestoreTemps(dir string) []string { return archive.SweepOwnedTemps(dir) }

func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}
