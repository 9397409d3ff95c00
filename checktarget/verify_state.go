package checktarget

import (
	"slices"
	"time"

	"github.com/cellar-backup/cellar/catalog"
)

// The verification records are part of the probe state (state.go): a
// restarted exporter then stats them instead of reading and parsing one
// JSON file per backup. As for backup.info, an entry is used only while
// the record's file keeps the saved identity.

// encode writes the records sorted by backup id: each id, its file
// identity, and the record when there is one (a zero identity: none).
func (c *verifyCache) encode(e *stateEncoder) {
	ids := make([]string, 0, len(c.ids))
	for id := range c.ids {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	e.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		e.Str(id)
		fid := c.ids[id]
		e.fileID(fid)
		if fid == (fileID{}) {
			continue
		}
		v := c.recs[id]
		e.Str(string(v.Result))
		e.Time(v.VerifiedAt)
		e.Varint(int64(v.Duration))
		e.Varint(v.Files)
		e.Varint(v.Bytes)
		e.Str(v.Error)
	}
}

// decodeVerifications reads what encode wrote, refusing ids that are not
// backup ids, unsorted or repeated ids, and unknown results.
func decodeVerifications(d *stateDecoder) (map[string]fileID, map[string]catalog.Verification) {
	n := d.Count(2)
	ids := make(map[string]fileID, n)
	recs := make(map[string]catalog.Verification, n)
	prev := ""
	for range n {
		id := d.Str()
		fid := d.fileID()
		if d.Err() != nil {
			break
		}
		if !catalog.IsBackupID(id) || id <= prev {
			d.Fail("bad or unsorted backup id in verification records")
			break
		}
		prev = id
		ids[id] = fid
		if fid == (fileID{}) {
			continue
		}
		v := catalog.Verification{BackupID: id, Result: catalog.VerifyResult(d.Str()), VerifiedAt: d.Time()}
		v.Duration, v.Files, v.Bytes = time.Duration(d.Varint()), d.Varint(), d.Varint()
		v.Error = d.Str()
		switch v.Result {
		case catalog.VerifyOK, catalog.VerifyFailed, catalog.VerifyUnverifiable:
		default:
			d.Fail("unknown verification result")
		}
		if d.Err() != nil {
			break
		}
		recs[id] = v
	}
	return ids, recs
}
