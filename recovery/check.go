package recovery

import (
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"

	"github.com/cellar-backup/cellar/catalog"
)

// DamagedFileError says which file of a backup is bad and how. It matches
// ErrBackupDamaged.
type DamagedFileError struct {
	Backup string
	// Path is the file's path relative to PGDATA, as backup_manifest names
	// it (tablespace files under pg_tblspc/<oid>/).
	Path string
	// Problem says what is wrong: size, checksum or missing.
	Problem string
}

func (e *DamagedFileError) Error() string {
	return fmt.Sprintf("backup %s is damaged: %s: %s", e.Backup, e.Path, e.Problem)
}

// Is makes errors.Is(err, ErrBackupDamaged) true.
func (e *DamagedFileError) Is(target error) bool { return target == ErrBackupDamaged }

// checker verifies the files of one backup against its manifest as they
// stream through, and remembers which listed files it saw so that the
// missing ones can be named at the end. Safe for concurrent use.
type checker struct {
	backup string
	m      manifest // nil: no manifest, nothing is checked

	mu    sync.Mutex
	seen  map[string]bool
	files int64
	bytes int64
}

func newChecker(backup string, m manifest) *checker {
	return &checker{backup: backup, m: m, seen: make(map[string]bool, len(m))}
}

func (c *checker) damaged(key, format string, args ...any) error {
	return &DamagedFileError{Backup: c.backup, Path: key, Problem: fmt.Sprintf(format, args...)}
}

// start begins checking the file key, whose source claims size bytes (-1
// when unknown): a size already different from the manifest's fails at
// once. The returned reader hashes what passes through it; call done once
// it has been read to the end. Files the manifest does not list (or every
// file, without a manifest) are passed through unchecked.
func (c *checker) start(key string, size int64, r io.Reader) (*checkedReader, error) {
	want, listed := c.m[key]
	cr := &checkedReader{r: r, c: c, key: key}
	if !listed {
		return cr, nil
	}
	c.mu.Lock()
	c.seen[key] = true
	c.mu.Unlock()
	cr.want = &want
	if size >= 0 && size != want.size {
		return nil, c.damaged(key, "size %d bytes, backup_manifest says %d", size, want.size)
	}
	if want.checksum != "" {
		h, err := catalog.ManifestHash(want.algorithm)
		if err != nil {
			return nil, fmt.Errorf("backup %s: %s: %w", c.backup, key, err)
		}
		cr.h = h
	}
	return cr, nil
}

// data checks a file read whole into memory (configuration files edited
// before being written).
func (c *checker) data(key string, b []byte) error {
	cr, err := c.start(key, int64(len(b)), nil)
	if err != nil {
		return err
	}
	if cr.h != nil {
		cr.h.Write(b)
	}
	cr.n = int64(len(b))
	return cr.done()
}

// missing returns the error for the first (in path order) listed file
// that was not seen and that want says should have been, or nil.
func (c *checker) missing(want func(key string) bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var gone []string
	for k := range c.m {
		if !c.seen[k] && want(k) {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	sort.Strings(gone)
	more := ""
	if len(gone) > 1 {
		more = fmt.Sprintf(" (and %d more listed files)", len(gone)-1)
	}
	return c.damaged(gone[0], "missing from the backup, listed in backup_manifest%s", more)
}

// totals returns the files and bytes checked so far.
func (c *checker) totals() (files, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.files, c.bytes
}

// checkedReader counts and hashes the bytes of one file on their way
// from the backup to the destination.
type checkedReader struct {
	r    io.Reader
	c    *checker
	key  string
	want *fileSum // nil: not listed in the manifest
	h    hash.Hash
	n    int64
}

func (cr *checkedReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n += int64(n)
	if cr.h != nil {
		cr.h.Write(p[:n])
	}
	return n, err
}

// WriteTo copies the rest through a buffer sized for data files, so that
// io.Copy neither falls back to 32 KiB writes nor bypasses the hash.
func (cr *checkedReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 256<<10)
	var total int64
	for {
		n, rerr := cr.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
			if m != n {
				return total, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// done compares what was read with the manifest.
func (cr *checkedReader) done() error {
	if cr.want == nil {
		return nil
	}
	c := cr.c
	if cr.n != cr.want.size {
		return c.damaged(cr.key, "size %d bytes, backup_manifest says %d", cr.n, cr.want.size)
	}
	if cr.h != nil {
		if got := hex.EncodeToString(cr.h.Sum(nil)); got != cr.want.checksum {
			return c.damaged(cr.key, "%s checksum %s, backup_manifest says %s", cr.want.algorithm, got, cr.want.checksum)
		}
	}
	c.mu.Lock()
	c.files++
	c.bytes += cr.n
	c.mu.Unlock()
	return nil
}
