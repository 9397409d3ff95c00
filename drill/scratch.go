package drill

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
)

// ErrNoSpace: the scratch file system cannot hold the restore.
var ErrNoSpace = errors.New("not enough free space for the drill")

// ErrBusy: another drill of the server is running.
var ErrBusy = errors.New("another drill of this server is running")

// scratch is a drill's working area: <root>/cellar-drill-<server>/ with the
// data directory, the staged WAL, the socket and the server log. Only one
// drill of a server uses it at a time (the drill lock), so whatever a
// previous drill left there was left by a crash.
type scratch struct {
	dir, data, sock, log string
}

func newScratch(root, server string) scratch {
	dir := filepath.Join(root, "cellar-drill-"+server)
	return scratch{dir: dir, data: filepath.Join(dir, "data"), sock: filepath.Join(dir, "sock"), log: filepath.Join(dir, "postgres.log")}
}

// lockDrill takes the server's drill lock. It is its own lock file, so a
// drill never waits for, or blocks, archiving, streaming or backups.
func lockDrill(l catalog.Layout) (*lock.Lock, error) {
	if err := os.MkdirAll(l.LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("server %s: lock directory: %w", l.Server, err)
	}
	lk, err := lock.TryLock(filepath.Join(l.LockDir, lock.FileName(l.Server, "drill")))
	if errors.Is(err, lock.ErrBusy) {
		return nil, fmt.Errorf("server %s: %w (%w)", l.Server, ErrBusy, err)
	}
	return lk, err
}

// cleanLeftover stops a server and removes a directory that a crashed
// drill left behind.
func (s scratch) cleanLeftover(ctx context.Context) error {
	if _, err := os.Lstat(s.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := killLeftover(ctx, s.data); err != nil {
		return err
	}
	return s.remove()
}

func (s scratch) remove() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove drill scratch directory %s: %w", s.dir, err)
	}
	return nil
}

// create makes the scratch directory and socket directory for the
// server's user; the data directory itself is left to the restore.
func (s scratch) create(o owner) error {
	for _, d := range []string{s.dir, s.sock, s.data} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("drill scratch directory: %w", err)
		}
		if err := o.chown(d); err != nil {
			return fmt.Errorf("drill scratch directory: %w", err)
		}
	}
	// The socket path must fit in sun_path (108 bytes with the NUL).
	if n := len(filepath.Join(s.sock, ".s.PGSQL.5432")); n > 107 {
		return fmt.Errorf("drill scratch directory %s is too deep for a Unix socket path (%d bytes > 107); choose a shorter one", s.dir, n)
	}
	return nil
}

// checkSpace refuses a drill whose restore (need bytes) would not fit in
// the free space of root's file system.
func checkSpace(root string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("drill scratch directory %s: %w", root, err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return fmt.Errorf("%w: the restore needs about %d MiB in %s, only %d MiB are free",
			ErrNoSpace, need>>20, root, free>>20)
	}
	return nil
}

// restoreSize estimates the bytes a restore of b writes: the larger of
// the cluster size backup.info recorded and the stored backup's size, plus
// the WAL segments it stages and a margin for the WAL recovery writes.
func restoreSize(l catalog.Layout, b *catalog.BackupInfo, walSegments int) int64 {
	size := treeSize(l.BackupDirPath(b.ID))
	for _, p := range []*int64{b.ClusterSize, b.Size} {
		if p != nil && *p > size {
			size = *p
		}
	}
	seg := b.XLogSegmentSize
	if seg <= 0 {
		seg = catalog.DefaultXLogSegmentSize
	}
	return size + int64(walSegments+4)*seg
}

// treeSize sums the regular files under dir (0 when it cannot be read).
func treeSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
