package passive

import (
	"context"
	"errors"
	"fmt"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
)

// CronReport tells what one SyncCron pass did.
type CronReport struct {
	Synced  []string // backups copied
	Removed []string // local FAILED backups the primary no longer has
	WALs    WALSyncResult
}

// SyncCron is one passive-node pass (seed sync_cron), under
// .<srv>-sync-cron.lock (busy: ErrBusy, the pass is skipped): refresh
// primary.info from the primary, copy every backup the passive lacks (or
// has FAILED) unless local retention calls it obsolete, remove local FAILED
// backups the primary no longer has, then sync WALs. Barman spawns one
// sync-backup per run in the background; doing them inline keeps the order
// (backups before the WALs that need them) and the errors visible. A
// failing backup does not stop the WAL sync; all errors are returned.
func SyncCron(ctx context.Context, opts Options) (CronReport, error) {
	var rep CronReport
	if err := opts.check(); err != nil {
		return rep, err
	}
	layout := opts.Layout
	lk, err := lock.TryLock(layout.LockPath("sync-cron"))
	if err != nil {
		return rep, fmt.Errorf("server %s: sync-cron: %w", opts.Server, err)
	}
	defer lk.Release()
	if err := layout.MakeDirs(); err != nil {
		return rep, err
	}
	info, err := PrimaryInfo(ctx, opts)
	if err != nil {
		return rep, err
	}
	if err := WritePrimaryInfo(layout, info); err != nil {
		return rep, err
	}
	cat := catalog.Open(layout)
	var errs []error
	for _, id := range info.BackupIDs() {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		local, gerr := cat.Get(id)
		if errors.Is(gerr, catalog.ErrNotFound) {
			local, gerr = nil, nil
		}
		if gerr != nil {
			errs = append(errs, gerr)
			continue
		}
		if CheckSyncRequired(layout, id, info, local, opts.Obsolete) != nil {
			continue
		}
		switch err := SyncBackup(ctx, opts, id); {
		case err == nil:
			rep.Synced = append(rep.Synced, id)
		case errors.Is(err, lock.ErrBusy):
			opts.logger().Info("sync-backup already running", "server", opts.Server, "backup_id", id)
		default:
			errs = append(errs, err)
		}
	}
	locals, lerr := cat.Backups()
	if lerr != nil {
		errs = append(errs, lerr)
	}
	for _, b := range locals {
		if !IsBackupLocallyObsolete(layout, info, b) {
			continue
		}
		opts.logger().Info("removing local backup gone from the primary", "server", opts.Server, "backup_id", b.ID, "status", b.Status)
		if err := RemoveLocalBackup(ctx, layout, b.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed = append(rep.Removed, b.ID)
	}
	rep.WALs, err = SyncWALs(ctx, opts)
	if err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}
