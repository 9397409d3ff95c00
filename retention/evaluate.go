package retention

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Backup is what retention needs to know about one catalog entry. The
// caller fills it from catalog.BackupInfo and the keep/delete_this
// annotations; this package does not import catalog's types so that it
// stays a pure function of these fields.
type Backup struct {
	ID string // backup_id, %Y%m%dT%H%M%S: lexical order is age order
	// Status is the backup.info status: EMPTY, STARTED, WAITING_FOR_WALS,
	// DONE, FAILED or SYNCING.
	Status  string
	EndTime time.Time
	// BeginWAL and EndWAL are the backup's first and last WAL segment
	// names; PrunableWAL needs them.
	BeginWAL, EndWAL string
	// Keep is the keep annotation target: "", "full" or "standalone". Any
	// other non-empty value is treated as "full", as Barman does for safety.
	Keep string
	// ParentID is parent_backup_id (set for incremental backups).
	ParentID string
	// ChildrenIDs is children_backup_ids.
	ChildrenIDs []string
	// Type is full, incremental, rsync or snapshot (informational; a
	// backup is incremental when ParentID is set or Type is "incremental").
	Type string
	// DeletePending is true when a delete_this annotation exists: a delete
	// was interrupted, and retention resumes it by forcing OBSOLETE.
	DeletePending bool
}

// Backup statuses as written in backup.info.
const (
	StatusEmpty          = "EMPTY"
	StatusStarted        = "STARTED"
	StatusWaitingForWALs = "WAITING_FOR_WALS"
	StatusDone           = "DONE"
	StatusFailed         = "FAILED"
	StatusSyncing        = "SYNCING"
)

// Keep annotation targets.
const (
	KeepFull       = "full"
	KeepStandalone = "standalone"
)

// Label is a backup's retention status, as list-backups and show-backup
// print it.
type Label string

// Labels, spelled as Barman prints them.
const (
	LabelValid    Label = "VALID"
	LabelObsolete Label = "OBSOLETE"
	// LabelPotentiallyObsolete marks a backup outside the recovery window
	// that minimum_redundancy still keeps. It is never deleted
	// automatically.
	LabelPotentiallyObsolete Label = "OBSOLETE*"
	LabelKeepFull            Label = "KEEP:FULL"
	LabelKeepStandalone      Label = "KEEP:STANDALONE"
	// LabelNone is for backups that are not DONE (and their children).
	LabelNone Label = "-"
)

// Decision is the verdict on one backup.
type Decision struct {
	ID    string
	Label Label
	// Delete is true exactly for OBSOLETE backups: retention deletes
	// nothing else (not OBSOLETE*, not kept, not FAILED).
	Delete bool
	// Reason explains the label in one line for `cellar retention
	// --dry-run` and logs.
	Reason string
}

func (b *Backup) incremental() bool { return b.ParentID != "" || b.Type == "incremental" }

// keepLabel maps the keep annotation to its label, "" when not kept.
func (b *Backup) keepLabel() Label {
	switch b.Keep {
	case "":
		return ""
	case KeepStandalone:
		return LabelKeepStandalone
	}
	return LabelKeepFull
}

const timeFmt = "2006-01-02 15:04:05 MST"

// Evaluate labels every backup under policy p at time now, following
// Barman's retention report (BARMAN-FACTS §7):
//
//   - Only non-incremental ("root") backups are evaluated, newest first
//     by ID; incrementals inherit from their root afterwards.
//   - Only DONE roots count. Every other status is labelled "-" and is
//     never deleted by retention (FAILED backups are never pruned).
//   - REDUNDANCY: n (raised to minimum_redundancy) DONE roots are VALID,
//     older ones OBSOLETE. A keep annotation turns the label into
//     KEEP:FULL/KEEP:STANDALONE but still takes one of the n slots.
//   - RECOVERY WINDOW: DONE roots are VALID down to and including the
//     newest one that ended before the window start (it is needed to
//     recover to that start). Older ones are OBSOLETE*, while fewer than
//     minimum_redundancy backups have been kept, else OBSOLETE. Keep
//     annotations override either label.
//   - Incrementals take their root's label, except that KEEP:FULL gives
//     VALID, and KEEP:STANDALONE gives VALID only while the root is within
//     the policy (OBSOLETE otherwise: a standalone backup keeps no WAL to
//     roll its children forward).
//   - A delete_this annotation (DeletePending) forces OBSOLETE, and such a
//     backup is not counted among the roots.
//
// The result has one Decision per input backup, in input order.
func Evaluate(p Policy, backups []Backup, now time.Time) []Decision {
	out := make([]Decision, len(backups))
	for i := range backups {
		out[i].ID = backups[i].ID
	}
	done := make([]bool, len(backups))
	set := func(i int, l Label, reason string) {
		out[i].Label, out[i].Reason = l, reason
		done[i] = true
	}

	kids, _ := links(backups)

	// Roots newest first; ties (duplicate IDs) keep input order.
	var roots []int
	for i := range backups {
		// A backup being deleted must not take a redundancy slot: the
		// next older backup would be deleted in its place.
		if !backups[i].incremental() && backups[i].Status != StatusEmpty && !backups[i].DeletePending {
			roots = append(roots, i)
		}
	}
	slices.SortStableFunc(roots, func(a, b int) int { return cmp.Compare(backups[b].ID, backups[a].ID) })

	// propagate gives every descendant of root its inherited label.
	propagate := func(root int, l Label, why string) {
		seen := map[int]bool{root: true}
		stack := slices.Clone(kids[root])
		for len(stack) > 0 {
			c := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[c] {
				continue
			}
			seen[c] = true
			if !done[c] {
				set(c, l, fmt.Sprintf("incremental: %s from root backup %s (%s)", l, backups[root].ID, why))
			}
			stack = append(stack, kids[c]...)
		}
	}

	notDone := func(b *Backup) string {
		switch b.Status {
		case StatusWaitingForWALs:
			return "not counted: WAITING_FOR_WALS until check-backup finds all its WAL; retention never deletes it"
		case StatusFailed:
			return "not counted: FAILED backups never count toward retention and are never deleted by it"
		}
		return "not counted: status " + b.Status + " is not DONE; retention never deletes it"
	}

	switch p.Kind {
	case Redundancy:
		n := p.EffectiveRedundancy()
		policyText := p.String()
		if n != p.Redundancy {
			policyText += fmt.Sprintf(" raised to minimum_redundancy %d", n)
		}
		count := 0
		for _, i := range roots {
			b := &backups[i]
			if b.Status != StatusDone {
				set(i, LabelNone, notDone(b))
				propagate(i, LabelNone, "root is "+b.Status)
				continue
			}
			count++
			rank := fmt.Sprintf("DONE backup #%d (newest first), %s", count, policyText)
			inside := count <= n
			switch k := b.keepLabel(); {
			case k != "":
				state := "within the policy"
				if !inside {
					state = "beyond the policy"
				}
				set(i, k, fmt.Sprintf("kept: keep annotation %q; %s, %s (a kept backup uses a redundancy slot)", b.Keep, rank, state))
			case inside:
				set(i, LabelValid, fmt.Sprintf("valid: one of the %d most recent DONE backups: %s", n, rank))
			default:
				set(i, LabelObsolete, fmt.Sprintf("obsolete: %s; the %d newer DONE backups already satisfy it", rank, count-1))
			}
			inheritStandaloneOrCopy(out[i].Label, inside, func(l Label, why string) { propagate(i, l, why) })
		}
	case RecoveryWindow:
		point := p.RecoveryPoint(now)
		win := fmt.Sprintf("window starts %s", point.Format(timeFmt))
		found := false
		valid := 0
		for _, i := range roots {
			b := &backups[i]
			if b.Status != StatusDone {
				set(i, LabelNone, notDone(b))
				propagate(i, LabelNone, "root is "+b.Status)
				continue
			}
			ended := "ended " + b.EndTime.Format(timeFmt)
			k := b.keepLabel()
			switch {
			case !found:
				valid++
				if b.EndTime.Before(point) {
					found = true
				}
				var why string
				if found {
					why = fmt.Sprintf("newest DONE backup that ended before the recovery window (%s, %s): needed to recover to the window start", ended, win)
				} else {
					why = fmt.Sprintf("inside the recovery window of %s (%s, %s)", p.WindowText, ended, win)
				}
				if k != "" {
					set(i, k, fmt.Sprintf("kept: keep annotation %q; %s", b.Keep, why))
				} else {
					set(i, LabelValid, "valid: "+why)
				}
			case valid < p.MinimumRedundancy:
				valid++
				if k != "" {
					set(i, k, fmt.Sprintf("kept: keep annotation %q; older than the recovery window (%s, %s)", b.Keep, ended, win))
				} else {
					set(i, LabelPotentiallyObsolete, fmt.Sprintf("potentially obsolete: older than the recovery window (%s, %s), kept because only %d newer backups count toward minimum_redundancy %d; never deleted automatically", ended, win, valid-1, p.MinimumRedundancy))
				}
			default:
				if k != "" {
					set(i, k, fmt.Sprintf("kept: keep annotation %q; older than the recovery window (%s, %s)", b.Keep, ended, win))
				} else {
					set(i, LabelObsolete, fmt.Sprintf("obsolete: older than the recovery window (%s, %s) and %d newer backups satisfy minimum_redundancy %d", ended, win, valid, p.MinimumRedundancy))
				}
			}
			// Barman tests "found" after this root is processed, so the
			// children of a standalone root that itself marks the window
			// boundary are already OBSOLETE.
			inheritStandaloneOrCopy(out[i].Label, !found, func(l Label, why string) { propagate(i, l, why) })
		}
	default:
		for _, i := range roots {
			b := &backups[i]
			if b.Status != StatusDone {
				set(i, LabelNone, notDone(b))
				propagate(i, LabelNone, "root is "+b.Status)
				continue
			}
			if k := b.keepLabel(); k != "" {
				set(i, k, fmt.Sprintf("kept: keep annotation %q; no retention policy is configured", b.Keep))
			} else {
				set(i, LabelValid, "valid: no retention policy is configured")
			}
			inheritStandaloneOrCopy(out[i].Label, true, func(l Label, why string) { propagate(i, l, why) })
		}
	}

	for i := range backups {
		b := &backups[i]
		switch {
		case b.DeletePending:
			set(i, LabelObsolete, "obsolete: a delete_this annotation shows an interrupted delete; resuming it")
		case done[i]:
		case b.Status == StatusEmpty:
			set(i, LabelNone, "not counted: EMPTY backups are ignored by retention")
		case b.incremental():
			set(i, LabelNone, fmt.Sprintf("not evaluated: incremental backup whose chain (parent %q) has no evaluated root backup; never deleted by retention", b.ParentID))
		}
		// An incremental still being taken inherits its root's label
		// but is never deleted under the running backup.
		out[i].Delete = out[i].Label == LabelObsolete && !running(b)
	}
	pendingTrees(backups, kids, out)
	protectParents(backups, out)
	return out
}

// pendingTrees makes the descendants of a backup whose delete was
// interrupted OBSOLETE too: a delete removes the whole tree, children
// first, so the parent still being there means its children were chosen
// for deletion with it.
func pendingTrees(backups []Backup, kids map[int][]int, out []Decision) {
	for i := range backups {
		if !backups[i].DeletePending {
			continue
		}
		for _, c := range descendants(backups, kids, i) {
			if backups[c].Keep == "" && !running(&backups[c]) {
				out[c].Label, out[c].Delete = LabelObsolete, true
				out[c].Reason = fmt.Sprintf("obsolete: taken from backup %s, whose interrupted delete is being resumed", backups[i].ID)
			}
		}
	}
}

// links returns, by input index, the children of each backup and the
// parent of each backup (-1 for none). Both parent_backup_id and
// children_backup_ids are used, since either may be stale after an
// interrupted delete; IDs not in backups are ignored and the first
// occurrence of a duplicated ID wins.
func links(backups []Backup) (kids map[int][]int, parent []int) {
	byID := make(map[string]int, len(backups))
	for i := range backups {
		if _, dup := byID[backups[i].ID]; !dup {
			byID[backups[i].ID] = i
		}
	}
	kids = make(map[int][]int)
	parent = make([]int, len(backups))
	for i := range parent {
		parent[i] = -1
	}
	linked := make(map[[2]int]bool)
	link := func(p, c int) {
		if p == c || linked[[2]int{p, c}] {
			return
		}
		linked[[2]int{p, c}] = true
		kids[p] = append(kids[p], c)
		if parent[c] < 0 {
			parent[c] = p
		}
	}
	for i := range backups {
		if pi, ok := byID[backups[i].ParentID]; ok && backups[i].ParentID != "" {
			link(pi, i)
		}
		for _, c := range backups[i].ChildrenIDs {
			if ci, ok := byID[c]; ok {
				link(i, ci)
			}
		}
	}
	return kids, parent
}

// inheritStandaloneOrCopy works out what a root's incremental children
// get from a root labelled l. inside tells whether the root is still
// within the policy (matters only for KEEP:STANDALONE).
func inheritStandaloneOrCopy(l Label, inside bool, propagate func(Label, string)) {
	switch l {
	case LabelKeepFull:
		propagate(LabelValid, "a KEEP:FULL root keeps its chain recoverable")
	case LabelKeepStandalone:
		if inside {
			propagate(LabelValid, "KEEP:STANDALONE root still within the policy")
		} else {
			propagate(LabelObsolete, "KEEP:STANDALONE root is outside the policy and keeps only its own WAL")
		}
	default:
		propagate(l, "inherited")
	}
}

// Plan evaluates the policy and returns the IDs to delete, in a safe
// order: by root backup, oldest first, and inside one incremental chain
// the deepest children before their parents, so no surviving backup ever
// points at a deleted parent. Barman deletes OBSOLETE backups in ID order;
// the chain order only differs where a parent would precede its child.
// OBSOLETE* backups are never included and minimum redundancy is not
// checked again (it is part of the evaluation).
func Plan(p Policy, backups []Backup, now time.Time) (deletions []string, decisions []Decision) {
	decisions = Evaluate(p, backups, now)
	_, parent := links(backups)
	type item struct {
		root  string
		depth int
		id    string
	}
	var items []item
	seenID := make(map[string]bool)
	for i, d := range decisions {
		if !d.Delete || seenID[d.ID] {
			continue
		}
		seenID[d.ID] = true
		// Walk up to the root (bounded, so a cycle cannot loop).
		j, depth := i, 0
		for parent[j] >= 0 && depth <= len(backups) {
			j = parent[j]
			depth++
		}
		items = append(items, item{backups[j].ID, depth, d.ID})
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.root, b.root), cmp.Compare(b.depth, a.depth), cmp.Compare(a.id, b.id))
	})
	for _, it := range items {
		deletions = append(deletions, it.id)
	}
	return deletions, decisions
}

// Errors returned by CheckDelete.
var (
	// ErrKept: the backup has a keep annotation; release it first.
	ErrKept = errors.New("backup is kept")
	// ErrMinimumRedundancy: deleting would leave fewer DONE backups than
	// minimum_redundancy.
	ErrMinimumRedundancy = errors.New("minimum redundancy not satisfied")
	// ErrUnknownBackup: no backup with that ID.
	ErrUnknownBackup = errors.New("unknown backup")
)

// CheckDelete applies the rules of a manual `delete` (not retention): a
// kept backup is refused, and so is a DONE non-incremental backup when
// minimum_redundancy is at least the number of DONE non-incremental
// backups. A backup whose delete was interrupted (DeletePending) may
// always be deleted. Errors wrap the sentinels above and name the backup.
func CheckDelete(backups []Backup, id string, minimumRedundancy int) error {
	idx := slices.IndexFunc(backups, func(b Backup) bool { return b.ID == id })
	if idx < 0 {
		return fmt.Errorf("retention: backup %s: %w", id, ErrUnknownBackup)
	}
	b := &backups[idx]
	if b.DeletePending {
		return nil // finishing an interrupted delete
	}
	if b.Keep != "" {
		return fmt.Errorf("retention: backup %s has keep annotation %q: %w", id, b.Keep, ErrKept)
	}
	if b.Status != StatusDone || b.incremental() {
		return nil
	}
	roots := 0
	for i := range backups {
		if backups[i].Status == StatusDone && !backups[i].incremental() && !backups[i].DeletePending {
			roots++
		}
	}
	if minimumRedundancy >= roots {
		return fmt.Errorf("retention: backup %s: %w (%d DONE backups, minimum_redundancy %d)",
			id, ErrMinimumRedundancy, roots, minimumRedundancy)
	}
	return nil
}

// running reports a backup that a live process may still be writing.
func running(b *Backup) bool { return b.Status == StatusEmpty || b.Status == StatusStarted }
