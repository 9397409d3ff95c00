package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
)

// ErrBackupFailed is returned by CheckBackup for a FAILED backup, which
// check-backup refuses to look at.
var ErrBackupFailed = errors.New("backup is FAILED")

// CheckBackup is Barman's check-backup: a WAITING_FOR_WALS backup becomes
// DONE when every WAL from begin_wal to end_wal is in wals/, FAILED when
// one is missing below the newest archived WAL of its timeline. It runs
// under the per-backup lock and returns the (possibly updated) backup.info.
func CheckBackup(ctx context.Context, l catalog.Layout, id string) (*catalog.BackupInfo, error) {
	cat := catalog.Open(l)
	info, err := cat.Get(id)
	if err != nil {
		return nil, err
	}
	if info.Status == catalog.StatusFailed {
		return info, fmt.Errorf("server %s: backup %s: %w", l.Server, id, ErrBackupFailed)
	}
	lk, err := lock.Acquire(ctx, l.BackupLockPath(id))
	if err != nil {
		return nil, fmt.Errorf("server %s: backup %s lock: %w", l.Server, id, err)
	}
	defer lk.Release()
	// Re-read under the lock: a delete or another check may have run.
	if info, err = cat.Get(id); err != nil {
		return nil, err
	}
	if info.EndWAL == "" || info.Status != catalog.StatusWaitingForWALs {
		return info, nil
	}
	status, missing, err := walStatus(l, info)
	if err != nil {
		return info, fmt.Errorf("server %s: backup %s: %w", l.Server, id, err)
	}
	switch status {
	case catalog.StatusFailed:
		info.Status = catalog.StatusFailed
		info.Error = "At least one WAL file is missing. The first missing WAL file is " + missing
	case catalog.StatusDone:
		info.Status = catalog.StatusDone
	default:
		return info, nil
	}
	if err := cat.Save(info); err != nil {
		return info, err
	}
	// Only now, with the child DONE on disk, may its parent list it.
	if err := linkChild(ctx, l, info); err != nil {
		return info, err
	}
	return info, nil
}

// walStatus applies check-backup's rules (BARMAN-FACTS §14): newest WAL of
// the timeline from a scan of wals/ (not xlog.db); unseen or older than
// begin_wal -> WAITING; a gap in begin..min(end, newest) -> FAILED; end <=
// newest -> DONE; else WAITING.
func walStatus(l catalog.Layout, info *catalog.BackupInfo) (catalog.Status, string, error) {
	segSize := uint64(info.XLogSegmentSize)
	if segSize == 0 {
		segSize = catalog.DefaultXLogSegmentSize
	}
	begin, err := wal.ParseName(info.BeginWAL)
	if err != nil {
		return "", "", fmt.Errorf("begin_wal: %w", err)
	}
	end, err := wal.ParseName(info.EndWAL)
	if err != nil {
		return "", "", fmt.Errorf("end_wal: %w", err)
	}
	have, newest, err := scanTimeline(l, begin.TLI)
	if err != nil {
		return "", "", err
	}
	if newest == nil || wal.Compare(*newest, begin) < 0 {
		return catalog.StatusWaitingForWALs, "", nil
	}
	upTo := end
	if wal.Compare(*newest, end) < 0 {
		upTo = *newest
	}
	need, err := wal.SegmentsBetween(begin, upTo, segSize)
	if err != nil {
		return "", "", err
	}
	for _, n := range need {
		if !have[n.String()] {
			return catalog.StatusFailed, n.String(), nil
		}
	}
	if wal.Compare(end, *newest) <= 0 {
		return catalog.StatusDone, "", nil
	}
	return catalog.StatusWaitingForWALs, "", nil
}

// scanTimeline lists the archived segments of timeline tli under wals/.
func scanTimeline(l catalog.Layout, tli uint32) (map[string]bool, *wal.Name, error) {
	dirs, err := os.ReadDir(l.WalsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("scan %s: %w", l.WalsDir, err)
	}
	prefix := fmt.Sprintf("%08X", tli)
	have := map[string]bool{}
	var newest *wal.Name
	for _, d := range dirs {
		if !d.IsDir() || len(d.Name()) != 16 || d.Name()[:8] != prefix {
			continue
		}
		entries, err := os.ReadDir(l.WalsDir + "/" + d.Name())
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", d.Name(), err)
		}
		for _, e := range entries {
			n, err := wal.ParseName(e.Name())
			if err != nil || n.Kind != wal.KindSegment || n.TLI != tli {
				continue
			}
			have[n.String()] = true
			if newest == nil || wal.Compare(n, *newest) > 0 {
				nn := n
				newest = &nn
			}
		}
	}
	return have, newest, nil
}

// WaitForWALs polls CheckBackup until the backup leaves WAITING_FOR_WALS or
// timeout passes (0 = until ctx is done). poke, if set, runs before each
// check; the server layer passes archive-wal there (Barman's wait_for_wal
// archives incoming WAL itself).
func WaitForWALs(ctx context.Context, l catalog.Layout, id string, timeout time.Duration, poke func(context.Context) error) (*catalog.BackupInfo, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if poke != nil {
			if err := poke(ctx); err != nil && ctx.Err() == nil {
				return nil, err
			}
		}
		info, err := CheckBackup(ctx, l, id)
		if err != nil || info.Status != catalog.StatusWaitingForWALs {
			return info, err
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("server %s: backup %s: waiting for WAL %s: %w", l.Server, id, info.EndWAL, ctx.Err())
		case <-tick.C:
		}
	}
}
