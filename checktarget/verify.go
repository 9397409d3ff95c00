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
// cellar-verify.json) of one server by backup id, with the identity of the
// file each was read from; a zero identity records that the file was
// absent.
//
// The newest DONE backup's record, which the check and the per-server
// gauges judge, is stat'ed on every evaluation. The others are stat'ed in
// turn, a slice per evaluation, as backupCache does for backup.info
// (restatSlices): a change there shows within restatSlices evaluations,
// and a server with 1000 backups costs ~60 stats per evaluation instead
// of 1000. The map handed out is rebuilt only when a record changed, and
// never modified afterwards, so callers may keep reading it.
type verifyCache struct {
	mu    sync.Mutex
	files map[string]cachedVerify
	snap  map[string]catalog.Verification
	dirty bool
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
	done := 0
	for _, b := range backups {
		if b.Status == checks.StatusDone {
			newest = b.ID
			done++
		}
	}
	var errs []error
	for i, b := range backups {
		if b.Status != checks.StatusDone {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, cached := c.files[b.ID]
		if cached && b.ID != newest && i%restatSlices != c.gen%restatSlices {
			continue
		}
		if err := c.refresh(cat, b.ID, e, cached); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.files) > done {
		c.sweep(backups)
	}
	if c.dirty || c.snap == nil {
		c.snap = c.snapshot()
		c.dirty = false
	}
	return c.snap, errors.Join(errs...)
}

// refresh stats the record of backup id and parses it when its identity
// differs from the cached entry's. A record that cannot be read is dropped
// from the cache, so the next evaluation retries it.
func (c *verifyCache) refresh(cat *catalog.Catalog, id string, e cachedVerify, cached bool) error {
	fi, err := os.Stat(cat.Layout().VerificationPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		c.set(id, cachedVerify{}, !cached || e.id != fileID{})
		return nil
	}
	if err != nil {
		c.drop(id)
		return fmt.Errorf("server %s: backup %s: verification record: %w", cat.Layout().Server, id, err)
	}
	fid := idOf(fi)
	if cached && e.id == fid {
		return nil
	}
	// Read after the stat: a record replaced in between is cached with the
	// older identity and so read again next time, never kept stale.
	v, ok, err := cat.Verification(id)
	if err != nil {
		c.drop(id)
		return err
	}
	if !ok {
		fid = fileID{}
	}
	c.set(id, cachedVerify{id: fid, v: v}, true)
	return nil
}

func (c *verifyCache) set(id string, e cachedVerify, changed bool) {
	c.files[id] = e
	c.dirty = c.dirty || changed
}

func (c *verifyCache) drop(id string) {
	if _, ok := c.files[id]; ok {
		delete(c.files, id)
		c.dirty = true
	}
}

// sweep drops the entries of backups no longer DONE in the catalog.
func (c *verifyCache) sweep(backups []checks.Backup) {
	done := make(map[string]bool, len(backups))
	for _, b := range backups {
		done[b.ID] = b.Status == checks.StatusDone
	}
	for id := range c.files {
		if !done[id] {
			c.drop(id)
		}
	}
}

func (c *verifyCache) snapshot() map[string]catalog.Verification {
	out := make(map[string]catalog.Verification, len(c.files))
	for id, e := range c.files {
		if e.id != (fileID{}) {
			out[id] = e.v
		}
	}
	return out
}
