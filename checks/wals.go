package checks

import (
	"context"
	"slices"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

const defaultSegmentSize = 16 << 20

// WALSummary is one pass over xlog.db, related to the backup catalog. The
// WAL probes and the exporter's gauges read it.
type WALSummary struct {
	// Count and TotalSize cover every xlog.db entry.
	Count     int
	TotalSize int64
	// LastTime is the newest archived mtime of any entry (zero if none).
	LastTime time.Time

	// LastBackup is the newest available (WAITING_FOR_WALS/DONE) backup,
	// OldestBackup the oldest; nil when there is none.
	LastBackup   *Backup
	OldestBackup *Backup
	// SinceBackupCount/Size count the WAL after the last backup's end WAL
	// (Barman's "wal size"); every WAL when there is no backup.
	SinceBackupCount int
	SinceBackupSize  int64
	// LastSinceBackupTime is the newest mtime of WAL from the last backup's
	// begin WAL on (Barman's "wal maximum age"); zero when there is none.
	LastSinceBackupTime time.Time
	// GapSegments counts segments missing within each timeline, from the
	// oldest available backup's begin WAL (or the first archived segment)
	// to the newest archived one.
	GapSegments int64
}

// LastAvailable returns the newest backup with status WAITING_FOR_WALS or
// DONE (backups are oldest first), or nil.
func LastAvailable(backups []Backup) *Backup {
	for i := len(backups) - 1; i >= 0; i-- {
		if backups[i].Available() {
			return &backups[i]
		}
	}
	return nil
}

// OldestAvailable returns the oldest available backup, or nil.
func OldestAvailable(backups []Backup) *Backup {
	for i := range backups {
		if backups[i].Available() {
			return &backups[i]
		}
	}
	return nil
}

func parseSegment(s string) (wal.Name, bool) {
	if s == "" {
		return wal.Name{}, false
	}
	n, err := wal.ParseName(s)
	if err != nil {
		return wal.Name{}, false
	}
	return n, true
}

// WALSummarizer is implemented by targets that keep the WAL summary up to
// date themselves (checktarget does: it reads only what was appended to
// xlog.db since the previous call). Summary prefers it to a full WALs
// scan. The result must equal what folding every WALs entry into a
// NewWALAccumulator(backups) gives.
type WALSummarizer interface {
	WALSummary(ctx context.Context, backups []Backup) (*WALSummary, error)
}

func summarize(ctx context.Context, t Target) (*WALSummary, error) {
	backups, err := t.Backups(ctx)
	if err != nil {
		return nil, err
	}
	inner := t
	if m, ok := t.(*memo); ok {
		inner = m.Target
	}
	if ws, ok := inner.(WALSummarizer); ok {
		return ws.WALSummary(ctx, backups)
	}
	a := NewWALAccumulator(backups)
	if err := t.WALs(ctx, func(w WAL) error { a.Add(w); return nil }); err != nil {
		return nil, err
	}
	return a.Summary(backups), nil
}

// walKey is what the summary takes from the backup catalog: the segment
// size and the WAL bounds of the newest and oldest available backups. An
// accumulator is only valid for the key it was built with.
type walKey struct {
	haveLast            bool
	segSize             uint64
	begin, end, gapFrom wal.Name

	haveBegin, haveEnd, haveGapFrom bool
}

func keyOf(backups []Backup) walKey {
	k := walKey{segSize: defaultSegmentSize}
	if b := LastAvailable(backups); b != nil {
		k.haveLast = true
		if b.WALSegmentSize != 0 {
			k.segSize = b.WALSegmentSize
		}
		k.begin, k.haveBegin = parseSegment(b.BeginWAL)
		k.end, k.haveEnd = parseSegment(b.EndWAL)
	}
	if b := OldestAvailable(backups); b != nil {
		k.gapFrom, k.haveGapFrom = parseSegment(b.BeginWAL)
	}
	if wal.ValidateSegmentSize(k.segSize) != nil {
		k.segSize = defaultSegmentSize
	}
	return k
}

// segRun is a run of consecutive segment numbers lo..hi.
type segRun struct{ lo, hi uint64 }

// WALAccumulator folds xlog.db entries, in as many steps as wanted, into
// the WALSummary of one backup catalog state. It keeps counters and, per
// timeline, the archived segments as sorted runs of consecutive numbers
// (so its memory grows with the number of gaps, not of entries). It is
// not safe for concurrent use.
type WALAccumulator struct {
	key walKey

	count         int
	totalSize     int64
	lastTime      time.Time
	sinceCount    int
	sinceSize     int64
	lastSinceTime time.Time
	runs          map[uint32][]segRun
}

// NewWALAccumulator starts an empty summary for the catalog state backups
// (oldest first, as Target.Backups returns them).
func NewWALAccumulator(backups []Backup) *WALAccumulator {
	return &WALAccumulator{key: keyOf(backups), runs: map[uint32][]segRun{}}
}

// Matches reports whether the accumulator is valid for backups: the
// backups it depends on (newest and oldest available) have the same WAL
// bounds and segment size.
func (a *WALAccumulator) Matches(backups []Backup) bool { return a.key == keyOf(backups) }

// Add folds one xlog.db entry in.
func (a *WALAccumulator) Add(w WAL) {
	k := &a.key
	a.count++
	a.totalSize += w.Size
	if w.Time.After(a.lastTime) {
		a.lastTime = w.Time
	}
	n, err := wal.ParseName(w.Name)
	if err != nil {
		return // unknown entry: counted, not placed
	}
	if n.Kind == wal.KindHistory {
		// A history file belongs to no segment range; Barman counts it
		// with the WAL that follows the backup.
		if !k.haveLast || (k.haveEnd && n.TLI > k.end.TLI) {
			a.sinceCount++
			a.sinceSize += w.Size
		}
		return
	}
	seg := n.Segment()
	if !k.haveBegin || wal.Compare(seg, k.begin.Segment()) >= 0 {
		if w.Time.After(a.lastSinceTime) {
			a.lastSinceTime = w.Time
		}
	}
	if !k.haveLast || !k.haveEnd || wal.Compare(seg, k.end.Segment()) > 0 {
		a.sinceCount++
		a.sinceSize += w.Size
	}
	if n.Kind == wal.KindSegment && (!k.haveGapFrom || wal.Compare(seg, k.gapFrom.Segment()) >= 0) {
		a.runs[n.TLI] = addSegment(a.runs[n.TLI], n.SegNo(k.segSize))
	}
}

// addSegment inserts no into the sorted, disjoint, non-adjacent runs.
// Archival order makes the common case an extension of the last run.
func addSegment(runs []segRun, no uint64) []segRun {
	if n := len(runs); n > 0 {
		last := &runs[n-1]
		switch {
		case no >= last.lo && no <= last.hi:
			return runs
		case no == last.hi+1:
			last.hi = no
			return runs
		case no > last.hi:
			return append(runs, segRun{no, no})
		}
	}
	// First run whose hi+1 >= no: no belongs to it, extends it, or goes
	// just before it.
	i, _ := slices.BinarySearchFunc(runs, no, func(r segRun, no uint64) int {
		if r.hi+1 < no {
			return -1
		}
		return 1
	})
	switch {
	case i == len(runs):
		return append(runs, segRun{no, no})
	case no >= runs[i].lo && no <= runs[i].hi:
		return runs
	case no == runs[i].hi+1:
		runs[i].hi = no
		if i+1 < len(runs) && runs[i+1].lo == no+1 {
			runs[i].hi = runs[i+1].hi
			runs = slices.Delete(runs, i+1, i+2)
		}
		return runs
	case no+1 == runs[i].lo:
		runs[i].lo = no
		return runs
	default:
		return slices.Insert(runs, i, segRun{no, no})
	}
}

// Summary returns the summary so far; backups must be the catalog state
// the accumulator was built for (see Matches). a is not changed.
func (a *WALAccumulator) Summary(backups []Backup) *WALSummary {
	s := &WALSummary{
		Count: a.count, TotalSize: a.totalSize, LastTime: a.lastTime,
		LastBackup: LastAvailable(backups), OldestBackup: OldestAvailable(backups),
		SinceBackupCount: a.sinceCount, SinceBackupSize: a.sinceSize,
		LastSinceBackupTime: a.lastSinceTime,
	}
	if !a.key.haveLast {
		// Barman's "wal maximum age" has nothing to measure without a
		// backup; the newest WAL is the best answer for the gauges.
		s.LastSinceBackupTime = s.LastTime
	}
	for _, runs := range a.runs {
		for i := 1; i < len(runs); i++ {
			s.GapSegments += int64(runs[i].lo - runs[i-1].hi - 1)
		}
	}
	return s
}
