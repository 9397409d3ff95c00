package recovery

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cellar-backup/cellar/catalog"
)

// VerifyOptions drives one verification of a stored backup.
type VerifyOptions struct {
	// Layout is the server's catalog layout.
	Layout catalog.Layout
	// Backup is the backup to check (DONE or WAITING_FOR_WALS).
	Backup *catalog.BackupInfo
	// Parallel is the number of plain files read at once (default 2).
	Parallel int
	// Now is the clock of the record (default time.Now).
	Now func() time.Time
}

// VerifyBackup checks a stored backup at rest against its backup_manifest:
// every listed file must be present with its size and checksum, in plain
// and tar (compressed or not) backups alike. It holds the backup's lock
// shared while it reads, like a restore, and saves the outcome as the
// backup's catalog.Verification record before releasing it.
//
// The returned error is nil whenever a verdict was reached, whatever it is:
// the record's Result says ok, failed (Error names the first bad file and
// what is wrong) or unverifiable (no manifest, or one without checksums
// while every size matched). A non-nil error means no verdict and no new
// record: the backup is being deleted (ErrBackupBusy), is not restorable
// (ErrBackupNotRestorable), the context ended, or the record could not be
// written.
func VerifyBackup(ctx context.Context, opts VerifyOptions) (catalog.Verification, error) {
	b := opts.Backup
	if b == nil {
		return catalog.Verification{}, fmt.Errorf("%w: no backup given", ErrInvalidOptions)
	}
	if b.Status != catalog.StatusDone && b.Status != catalog.StatusWaitingForWALs {
		return catalog.Verification{}, fmt.Errorf("%w: backup %s has status %s; only DONE or WAITING_FOR_WALS backups are verified", ErrBackupNotRestorable, b.ID, b.Status)
	}
	lk, err := lockBackup(opts.Layout, b.ID)
	if err != nil {
		return catalog.Verification{}, err
	}
	defer lk.Release()
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	v := catalog.Verification{BackupID: b.ID, VerifiedAt: start.UTC()}
	c, verr := verifyAtRest(ctx, opts)
	if ctx.Err() != nil {
		return catalog.Verification{}, fmt.Errorf("verify backup %s: %w", b.ID, ctx.Err())
	}
	v.Duration = now().Sub(start)
	if c != nil {
		v.Files, v.Bytes = c.totals()
	}
	switch {
	case verr != nil:
		v.Result, v.Error = catalog.VerifyFailed, verr.Error()
	case c.m == nil:
		v.Result, v.Error = catalog.VerifyUnverifiable, fmt.Sprintf("backup %s has no %s: its files cannot be verified", b.ID, ManifestName)
	case !c.m.hasChecksums():
		v.Result, v.Error = catalog.VerifyUnverifiable, fmt.Sprintf("backup %s: %s has no checksums: only presence and sizes were checked", b.ID, ManifestName)
	default:
		v.Result = catalog.VerifyOK
	}
	if err := catalog.Open(opts.Layout).SaveVerification(v); err != nil {
		return v, err
	}
	return v, nil
}

// verifyAtRest reads every file of the backup through a checker. The
// checker is nil when the backup's trees or manifest could not be found
// or read (the error says why).
func verifyAtRest(ctx context.Context, opts VerifyOptions) (*checker, error) {
	trees, err := backupTrees(opts.Layout, opts.Backup)
	if err != nil {
		return nil, err
	}
	m, err := loadManifest(manifestPath(trees))
	if errors.Is(err, fs.ErrNotExist) {
		return newChecker(opts.Backup.ID, nil), nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", opts.Backup.ID, err)
	}
	c := newChecker(opts.Backup.ID, m)
	for _, s := range trees {
		if err := verifyTree(ctx, c, s, opts.Parallel); err != nil {
			return c, err
		}
	}
	if p := findTar(filepath.Dir(manifestPath(trees)), "pg_wal"); p != "" {
		// pg_basebackup -Ft -X stream keeps the backup's WAL apart.
		if err := verifyTar(ctx, c, p, "pg_wal/"); err != nil {
			return c, err
		}
	}
	return c, c.missing(func(string) bool { return true })
}

func verifyTree(ctx context.Context, c *checker, s source, parallel int) error {
	if s.tarPath != "" {
		return verifyTar(ctx, c, s.tarPath, s.keyPrefix())
	}
	if parallel <= 0 {
		parallel = 2
	}
	return verifyPlain(ctx, c, s.plainDir, s.keyPrefix(), parallel)
}

func verifyPlain(ctx context.Context, c *checker, dir, prefix string, parallel int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("backup %s: %w", c.backup, err)
		}
		if err := gctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		g.Go(func() error { return verifyFile(c, prefix+filepath.ToSlash(rel), p) })
		return nil
	})
	if err != nil {
		return firstCause(err, g.Wait())
	}
	return g.Wait()
}

func verifyFile(c *checker, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup %s: %w", c.backup, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup %s: %w", c.backup, err)
	}
	return verifyStream(c, key, fi.Size(), f, path)
}

// verifyStream checks one file's bytes; where names the source in read
// errors.
func verifyStream(c *checker, key string, size int64, r io.Reader, where string) error {
	if _, listed := c.m[key]; !listed {
		return nil
	}
	cr, err := c.start(key, size, r)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return fmt.Errorf("backup %s: read %s: %w", c.backup, where, err)
	}
	return cr.done()
}

func verifyTar(ctx context.Context, c *checker, path, prefix string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup %s: %w", c.backup, err)
	}
	defer f.Close()
	dec, err := decoder(f, codecFromSuffix(path))
	if err != nil {
		return fmt.Errorf("backup %s: %s: %w", c.backup, path, err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("backup %s: read %s: %w", c.backup, path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		key := prefix + filepath.ToSlash(filepath.Clean(strings.TrimPrefix(h.Name, "./")))
		if err := verifyStream(c, key, h.Size, tr, path+": "+h.Name); err != nil {
			return err
		}
	}
}
