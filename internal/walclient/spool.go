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
// was. The move is durable (rename plus directory fsyncs); across file
// systems the file is copied durably and the spool copy removed.
func (s Spool) Take(name, dest string) (bool, error) {
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
	err = durable.Rename(src, dest)
	if errors.Is(err, syscall.EXDEV) {
		if err = durable.CopyFile(src, dest, 0o600); err == nil {
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

// Fill fetches names into the spool, running up to jobs fetches at a time
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
			_, err := WriteDest(ctx, filepath.Join(s.Dir, name), func(w io.Writer) error { return fetch(ctx, name, w) })
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
// PostgreSQL never reads a half-written segment and a crash never leaves
// one behind. On error nothing is left (dest is untouched). It returns the
// number of bytes written.
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
