package retention

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrHasChildren refuses a manual delete of a backup that incremental
// backups were taken from, unless its children are deleted with it.
var ErrHasChildren = errors.New("backup has incremental children")

// descendants returns, by input index, every backup taken (directly or
// through others) from backups[root], deepest first, then by id.
func descendants(backups []Backup, kids map[int][]int, root int) []int {
	depth := map[int]int{root: 0}
	stack := []int{root}
	var out []int
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range kids[p] {
			if _, seen := depth[c]; seen {
				continue
			}
			depth[c] = depth[p] + 1
			out = append(out, c)
			stack = append(stack, c)
		}
	}
	slices.SortFunc(out, func(a, b int) int {
		return cmp.Or(cmp.Compare(depth[b], depth[a]), cmp.Compare(backups[a].ID, backups[b].ID))
	})
	return out
}

// DeleteOrder checks a manual delete of id (CheckDelete) and returns the
// backups to delete in order: id's incremental descendants deepest first,
// then id itself. With descendants and withChildren false, it refuses with
// ErrHasChildren naming them: deleting a parent alone would leave
// incrementals that can no longer be restored.
func DeleteOrder(backups []Backup, id string, minimumRedundancy int, withChildren bool) ([]string, error) {
	if err := CheckDelete(backups, id, minimumRedundancy); err != nil {
		return nil, err
	}
	idx := slices.IndexFunc(backups, func(b Backup) bool { return b.ID == id })
	kids, _ := links(backups)
	var ids []string
	for _, i := range descendants(backups, kids, idx) {
		if backups[i].Keep != "" {
			return nil, fmt.Errorf("retention: backup %s: incremental descendant %s has keep annotation %q: %w", id, backups[i].ID, backups[i].Keep, ErrKept)
		}
		ids = append(ids, backups[i].ID)
	}
	if len(ids) > 0 && !withChildren {
		return nil, fmt.Errorf("retention: backup %s: %w: %s (delete them first, or delete with --with-children)",
			id, ErrHasChildren, strings.Join(ids, ", "))
	}
	return append(ids, id), nil
}

// protectParents clears Delete on every backup with a descendant that is
// not deleted too (a running, kept or otherwise surviving incremental), so
// that no surviving backup ever points at a deleted parent, whatever the
// labels say.
func protectParents(backups []Backup, out []Decision) {
	kids, _ := links(backups)
	for changed := true; changed; {
		changed = false
		for i := range out {
			if !out[i].Delete {
				continue
			}
			for _, c := range descendants(backups, kids, i) {
				if !out[c].Delete {
					out[i].Delete = false
					out[i].Reason += fmt.Sprintf("; not deleted: incremental backup %s taken from it is kept", backups[c].ID)
					changed = true
					break
				}
			}
		}
	}
}
