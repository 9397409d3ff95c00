package recovery

import (
	"context"
	"fmt"

	"github.com/cellar-backup/cellar/catalog"
)

// ReadXLogDB reads the server's WAL catalog (xlog.db) into entries,
// holding the xlog.db lock while it reads.
func ReadXLogDB(ctx context.Context, layout catalog.Layout) ([]WALEntry, error) {
	var out []WALEntry
	err := catalog.OpenXLogDB(layout).Scan(ctx, func(w catalog.WALInfo) error {
		e := WALEntry{Name: w.Name}
		if w.Compression != "None" {
			e.Compression = w.Compression
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("server %s: WAL catalog: %w", layout.Server, err)
	}
	return out, nil
}
