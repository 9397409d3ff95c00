package retention

import (
	"cmp"
	"slices"

	"github.com/cellar-backup/cellar/wal"
)

// PrunableWAL returns the archived WAL files that no remaining backup needs,
// under wal_retention_policy "main" (WAL is pruned only below the oldest
// backup). remaining is the catalog after retention's deletions; walNames
// are the archived names (xlog.db order). The result keeps walNames' order.
//
// It is the steady state of Barman's per-deletion rule (BARMAN-FACTS §7,
// delete step 2 and 4, cron variant):
//
//   - Backups that count are WAITING_FOR_WALS or DONE ("copy done").
//   - Walking them oldest first, leading KEEP:STANDALONE backups protect
//     only their own begin_wal..end_wal (inclusive); the first backup
//     without a standalone annotation is the anchor, and everything from its
//     begin_wal on is kept. A KEEP:FULL backup is an ordinary anchor, so all
//     WAL after its start is kept.
//   - If only standalone backups remain, the newest one acts as the anchor
//     (Barman would keep from the deleted backup's begin_wal, which this
//     function no longer sees; keeping from the newest standalone is the
//     safe side of that). If no copy-done backup remains, nothing is
//     pruned: Barman's "remove everything" is not worth the risk of racing
//     a backup that is just starting.
//   - History files are never pruned, nor WAL on timelines used by other
//     remaining backups (STARTED, WAITING_FOR_WALS or DONE) than the
//     anchor's.
//   - A backup of unknown status (not one of the six Barman writes, for
//     example an empty one from a catalog that could not read it) prunes
//     nothing: the WAL it may need is unknown.
//   - Names that do not parse, or (when segSize is non-zero) are invalid
//     for that segment size, are never pruned: deleting something not
//     understood is never right. An unparsable anchor begin_wal prunes
//     nothing.
//
// .backup label files compare by their segment for ranges and by full
// name against the anchor, as Barman does; .partial files likewise.
func PrunableWAL(remaining []Backup, walNames []string, segSize uint64) []string {
	var copyDone []*Backup
	timelines := make(map[uint32]bool)
	for i := range remaining {
		b := &remaining[i]
		if !knownStatus(b.Status) {
			return nil
		}
		switch b.Status {
		case StatusWaitingForWALs, StatusDone:
			copyDone = append(copyDone, b)
			fallthrough
		case StatusStarted:
			if n, err := wal.ParseName(b.BeginWAL); err == nil && n.Kind == wal.KindSegment {
				timelines[n.TLI] = true
			}
		}
	}
	if len(copyDone) == 0 {
		return nil
	}
	slices.SortStableFunc(copyDone, func(a, b *Backup) int { return cmp.Compare(a.ID, b.ID) })

	type walRange struct{ begin, end wal.Name }
	var protect []walRange
	var anchor *Backup
	for _, b := range copyDone {
		if b.Keep != KeepStandalone {
			anchor = b
			break
		}
		bn, err1 := wal.ParseName(b.BeginWAL)
		en, err2 := wal.ParseName(b.EndWAL)
		if err1 != nil || err2 != nil {
			// A standalone backup whose range is unknown cannot be
			// protected precisely: prune nothing rather than guess.
			return nil
		}
		protect = append(protect, walRange{bn.Segment(), en.Segment()})
	}
	if anchor == nil {
		anchor = copyDone[len(copyDone)-1]
	}
	boundary, err := wal.ParseName(anchor.BeginWAL)
	if err != nil || boundary.Kind != wal.KindSegment {
		return nil
	}
	delete(timelines, boundary.TLI)

	var out []string
	for _, name := range walNames {
		n, err := wal.ParseName(name)
		if err != nil || n.Kind == wal.KindHistory {
			continue
		}
		if segSize != 0 && n.ValidateFor(segSize) != nil {
			continue
		}
		if timelines[n.TLI] {
			continue
		}
		if wal.Compare(n, boundary) >= 0 {
			continue
		}
		seg := n.Segment()
		if slices.ContainsFunc(protect, func(r walRange) bool {
			return wal.Compare(seg, r.begin) >= 0 && wal.Compare(seg, r.end) <= 0
		}) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func knownStatus(s string) bool {
	switch s {
	case StatusEmpty, StatusStarted, StatusWaitingForWALs, StatusDone, StatusFailed, StatusSyncing:
		return true
	}
	return false
}
