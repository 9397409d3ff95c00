package checktarget

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
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
// of 1000. The records map is handed out as is and copied before the next
// change (copy on write), so callers may keep reading it and an unchanged
// catalog costs neither a copy nor a second set of records in memory.
type verifyCache struct {
	mu     sync.Mutex
	ids    map[string]fileID
	recs   map[string]catalog.Verification
	shared bool // recs was handed out: copy before changing it
	gen    int
	// ver counts changes worth saving (state.go).
	ver uint64
	// reads counts records parsed (tests check a warm start reads none).
	reads int
}

// verifications returns the records of the DONE backups among backups, as
// checks.VerificationReader specifies.
func (c *verifyCache) verifications(ctx context.Context, cat *catalog.Catalog, backups []checks.Backup) (map[string]catalog.Verification, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids, c.recs = map[string]fileID{}, map[string]catalog.Verification{}
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
		fid, cached := c.ids[b.ID]
		if cached && b.ID != newest && i%restatSlices != c.gen%restatSlices {
			continue
		}
		if err := c.refresh(cat, b.ID, fid, cached); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.ids) > done {
		c.sweep(backups)
	}
	c.shared = true
	return c.recs, errors.Join(errs...)
}

// refresh stats the record of backup id and parses it when its identity
// differs from the cached one (fid). A record that cannot be read is
// dropped from the cache, so the next evaluation retries it.
func (c *verifyCache) refresh(cat *catalog.Catalog, id string, fid fileID, cached bool) error {
	fi, err := os.Stat(cat.Layout().VerificationPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		c.absent(id, fid, cached)
		return nil
	}
	if err != nil {
		c.drop(id)
		return fmt.Errorf("server %s: backup %s: verification record: %w", cat.Layout().Server, id, err)
	}
	now := idOf(fi)
	if cached && fid == now {
		return nil
	}
	// Read after the stat: a record replaced in between is cached with the
	// older identity and so read again next time, never kept stale.
	c.reads++
	v, ok, err := cat.Verification(id)
	if err != nil {
		c.drop(id)
		return err
	}
	if !ok {
		c.absent(id, fid, cached)
		return nil
	}
	c.writable()
	c.recs[id] = v
	c.ids[id] = now
	c.ver++
	return nil
}

// absent records that backup id has no record (fid, cached: what the cache
// held).
func (c *verifyCache) absent(id string, fid fileID, cached bool) {
	c.forget(id)
	if !cached || fid != (fileID{}) {
		c.ids[id] = fileID{}
		c.ver++
	}
}

// writable copies recs if it was handed out.
func (c *verifyCache) writable() {
	if c.shared {
		c.recs = maps.Clone(c.recs)
		c.shared = false
	}
}

// forget removes the record of id, keeping its identity entry.
func (c *verifyCache) forget(id string) {
	if _, ok := c.recs[id]; ok {
		c.writable()
		delete(c.recs, id)
	}
}

// drop removes everything known about id.
func (c *verifyCache) drop(id string) {
	c.forget(id)
	if _, ok := c.ids[id]; ok {
		delete(c.ids, id)
		c.ver++
	}
}

// sweep drops the entries of backups no longer DONE in the catalog.
func (c *verifyCache) sweep(backups []checks.Backup) {
	done := make(map[string]bool, len(backups))
	for _, b := range backups {
		done[b.ID] = b.Status == checks.StatusDone
	}
	for id := range c.ids {
		if !done[id] {
			c.drop(id)
		}
	}
}
