package archive

import (
	"context"
	"fmt"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// appendXLog catalogues one stored file. Time is the source's mtime as a
// Python float (Barman's st_mtime).
func (a *Archiver) appendXLog(ctx context.Context, n wal.Name, size int64, mtime time.Time, comp string) error {
	info := catalog.WALInfo{
		Name:        n.String(),
		Size:        size,
		Time:        float64(mtime.Unix()) + float64(mtime.Nanosecond())*1e-9,
		Compression: comp,
	}
	if err := catalog.OpenXLogDB(a.opts.Layout).Append(ctx, info); err != nil {
		return fmt.Errorf("catalogue %s: %w", n, err)
	}
	if a.listed != nil {
		a.listed[info.Name] = true
	}
	return nil
}

// xlogHas reports whether xlog.db lists n. The catalog is read once per
// run, on the first duplicate, and kept up to date by appendXLog: while
// we hold the archive-wal lock nobody else appends.
func (a *Archiver) xlogHas(ctx context.Context, n wal.Name) (bool, error) {
	if a.listed == nil {
		set := map[string]bool{}
		err := catalog.OpenXLogDB(a.opts.Layout).Scan(ctx, func(w catalog.WALInfo) error {
			set[w.Name] = true
			return nil
		})
		if err != nil {
			return false, err
		}
		a.listed = set
	}
	return a.listed[n.String()], nil
}
