package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
)

// Chains: an incremental's parent_backup_id is the source of truth, written
// with the child's first backup.info. The parent's children_backup_ids
// (Barman's field) is a derived list of DONE children, written only after
// the child became DONE; a crash in between leaves a DONE child the parent
// does not list yet, which RepairChildren (run by every check-backup pass)
// adds. A FAILED incremental is never listed.

// linkChild adds child to its parent's children_backup_ids, under the
// parent's per-backup lock (a delete of the parent holds it).
func linkChild(ctx context.Context, l catalog.Layout, child *catalog.BackupInfo) error {
	if child.ParentBackupID == "" || child.Status != catalog.StatusDone {
		return nil
	}
	return updateParent(ctx, l, child.ParentBackupID, func(ids []string) []string {
		if slices.Contains(ids, child.ID) {
			return ids
		}
		ids = append(ids, child.ID)
		slices.Sort(ids)
		return ids
	})
}

// UnlinkChild removes child from the children_backup_ids of parentID (a
// delete of the child). A parent that is gone already is no error.
func UnlinkChild(ctx context.Context, l catalog.Layout, parentID, child string) error {
	return updateParent(ctx, l, parentID, func(ids []string) []string {
		return slices.DeleteFunc(ids, func(id string) bool { return id == child })
	})
}

// updateParent rewrites parentID's children list with edit, durably and
// only when it changes.
func updateParent(ctx context.Context, l catalog.Layout, parentID string, edit func([]string) []string) error {
	lk, err := lock.Acquire(ctx, l.BackupLockPath(parentID))
	if err != nil {
		return fmt.Errorf("server %s: backup %s lock: %w", l.Server, parentID, err)
	}
	defer lk.Release()
	cat := catalog.Open(l)
	p, err := cat.Get(parentID)
	if errors.Is(err, catalog.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server %s: parent backup %s: %w", l.Server, parentID, err)
	}
	old := slices.Clone(p.ChildrenBackupIDs)
	p.ChildrenBackupIDs = edit(p.ChildrenBackupIDs)
	if len(p.ChildrenBackupIDs) == 0 {
		p.ChildrenBackupIDs = nil
	}
	if slices.Equal(old, p.ChildrenBackupIDs) {
		return nil
	}
	return cat.Save(p)
}

// RepairChildren makes every parent's children_backup_ids list exactly its
// DONE children that exist (after a crash between a child's DONE and its
// parent's update, or between a child's deletion and its parent's update).
// It returns the ids of the parents it rewrote.
func RepairChildren(ctx context.Context, l catalog.Layout) ([]string, error) {
	backups, err := catalog.Open(l).Backups()
	if err != nil && len(catalog.UnreadableBackups(err)) == 0 {
		return nil, err
	}
	want := map[string][]string{}
	for _, b := range backups {
		if b.ParentBackupID != "" && b.Status == catalog.StatusDone {
			want[b.ParentBackupID] = append(want[b.ParentBackupID], b.ID)
		}
	}
	var fixed []string
	var errs []error
	for _, b := range backups {
		w := want[b.ID]
		slices.Sort(w)
		if slices.Equal(w, b.ChildrenBackupIDs) {
			continue
		}
		if err := updateParent(ctx, l, b.ID, func([]string) []string { return w }); err != nil {
			errs = append(errs, err)
			continue
		}
		fixed = append(fixed, b.ID)
	}
	return fixed, errors.Join(errs...)
}
