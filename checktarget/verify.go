package checktarget

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
)

var _ checks.VerificationReader = (*Target)(nil)

// Verifications implements checks.VerificationReader with verifyCache: a
// record is parsed again only when its file changed.
func (t *Target) Verifications(ctx context.Context, backups []checks.Backup) (map[string]catalog.Verification, error) {
	return t.verify.verifications(ctx, t.s.Catalog(), backups)
}

// verifyCache holds the parsed verification records (base/<id>/
// cellar-verify.json) of one server by path, with the identity of the file
// they were read from; a zero identity records that the file was absent.
//
// The newest DONE backup's record, which the check and the per-server
// gauges judge, is stat'ed on every evaluation. The others, which only
// feed the per-backup gauges and the "last verification of any backup"
// age, are stat'ed in turn, a slice per evaluation as backupCache does for
// backup.info (restatSlices): a change there shows within restatSlices
// evaluations, and a server with 1000 backups costs ~60 stats per
// evaluation instead of 1000.
type verifyCache struct {
	mu    sync.Mutex
	files map[string]cachedVerify
	gen   int
}

type cachedVerify struct {
	id fileID // zero: the file did not exist
	v  catalog.Verification
}

// verifications returns the records of the DONE backups among backups, as
// checks.VerificationReader specifies.
func (c *verifyCache) verifications(ctx context.Context, cat *catalog.Catalog, backups []checks.Backup) (map[string]catalog.Verification, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = map[string]cachedVerify{}
	}
	c.gen++
	newest := ""
	for _, b := range backups {
		if b.Status == checks.StatusDone {
			newest = b.ID
		}
	}
	out := map[string]catalog.Verification{}
	listed := map[string]bool{}
	var errs []error
	for i, b := range backups {
		if b.Status != checks.StatusDone {
			continue
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		path := cat.Layout().VerificationPath(b.ID)
		listed[path] = true
		e, cached := c.files[path]
		if !(cached && b.ID != newest && i%restatSlices != c.gen%restatSlices) {
			var err error
			if e, err = c.refresh(cat, b.ID, path, e, cached); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if e.id != (fileID{}) {
			out[b.ID] = e.v
		}
	}
	for p := range c.files {
		if !listed[p] {
			delete(c.files, p)
		}
	}
	return out, errors.Join(errs...)
}

// refresh stats the record of backup id at path and parses it when its
// identity differs from the cached entry's. A record that cannot be read
// is dropped from the cache, so the next evaluation retries it.
func (c *verifyCache) refresh(cat *catalog.Catalog, id, path string, e cachedVerify, cached bool) (cachedVerify, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.files[path] = cachedVerify{}
		return cachedVerify{}, nil
	}
	if err != nil {
		delete(c.files, path)
		return cachedVerify{}, fmt.Errorf("server %s: backup %s: verification record: %w", cat.Layout().Server, id, err)
	}
	fid := idOf(fi)
	if cached && e.id == fid {
		return e, nil
	}
	// Read after the stat: a record replaced in between is cached with the
	// older identity and so read again next time, never kept stale.
	v, ok, err := cat.Verification(id)
	if err != nil {
		delete(c.files, path)
		return cachedVerify{}, err
	}
	if !ok {
		c.files[path] = cachedVerify{}
		return cachedVerify{}, nil
	}
	e = cachedVerify{id: fid, v: v}
	c.files[path] = e
	return e, nil
}
