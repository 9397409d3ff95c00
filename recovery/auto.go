package recovery

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// ErrNoBackupForTarget: `auto` found no backup that can reach the target.
var ErrNoBackupForTarget = fmt.Errorf("no backup can reach the recovery target")

// SelectAuto picks the backup for the `auto` shortcut among backups (any
// order): without a stop target the newest available one (on the target
// timeline when a number is given); for a time target the newest that
// ended at or before it; for an LSN target the newest whose end_xlog is at
// or before it. xid, name and immediate targets and --target-tli current
// cannot choose a backup and are refused.
func SelectAuto(backups []*catalog.BackupInfo, t Target) (*catalog.BackupInfo, error) {
	switch {
	case t.XID != "", t.Name != "", t.Immediate:
		return nil, fmt.Errorf("%w: auto backup selection works only with a time or LSN target (or none)", ErrInvalidOptions)
	case t.TLI == "current":
		return nil, fmt.Errorf("%w: --target-tli current cannot be combined with auto", ErrInvalidOptions)
	}
	var tli int64
	if t.TLI != "" && t.TLI != "latest" {
		n, err := strconv.ParseInt(t.TLI, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: target timeline %q", ErrInvalidOptions, t.TLI)
		}
		tli = n
	}
	sorted := slices.Clone(backups)
	slices.SortFunc(sorted, func(a, b *catalog.BackupInfo) int {
		switch {
		case a.ID > b.ID:
			return -1
		case a.ID < b.ID:
			return 1
		}
		return 0
	})
	for _, b := range sorted {
		if b.Status != catalog.StatusDone && b.Status != catalog.StatusWaitingForWALs {
			continue
		}
		if tli != 0 && b.Timeline != tli {
			continue
		}
		if t.Time != nil && (b.EndTime.IsZero() || b.EndTime.After(*t.Time)) {
			continue
		}
		if t.LSN != nil {
			end, err := wal.ParseLSN(b.EndXLog)
			if err != nil || end > *t.LSN {
				continue
			}
		}
		return b, nil
	}
	return nil, ErrNoBackupForTarget
}
