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

func summarize(ctx context.Context, t Target) (*WALSummary, error) {
	backups, err := t.Backups(ctx)
	if err != nil {
		return nil, err
	}
	s := &WALSummary{LastBackup: LastAvailable(backups), OldestBackup: OldestAvailable(backups)}
	segSize := uint64(defaultSegmentSize)
	var begin, end, gapFrom wal.Name
	var haveBegin, haveEnd, haveGapFrom bool
	if b := s.LastBackup; b != nil {
		if b.WALSegmentSize != 0 {
			segSize = b.WALSegmentSize
		}
		begin, haveBegin = parseSegment(b.BeginWAL)
		end, haveEnd = parseSegment(b.EndWAL)
	}
	if b := s.OldestBackup; b != nil {
		gapFrom, haveGapFrom = parseSegment(b.BeginWAL)
	}
	if wal.ValidateSegmentSize(segSize) != nil {
		segSize = defaultSegmentSize
	}
	segs := map[uint32][]uint64{}
	err = t.WALs(ctx, func(w WAL) error {
		s.Count++
		s.TotalSize += w.Size
		if w.Time.After(s.LastTime) {
			s.LastTime = w.Time
		}
		n, err := wal.ParseName(w.Name)
		if err != nil {
			return nil // unknown entry: counted, not placed
		}
		if n.Kind == wal.KindHistory {
			// A history file belongs to no segment range; Barman counts
			// it with the WAL that follows the backup.
			if s.LastBackup == nil || (haveEnd && n.TLI > end.TLI) {
				s.SinceBackupCount++
				s.SinceBackupSize += w.Size
			}
			return nil
		}
		seg := n.Segment()
		if !haveBegin || wal.Compare(seg, begin.Segment()) >= 0 {
			if w.Time.After(s.LastSinceBackupTime) {
				s.LastSinceBackupTime = w.Time
			}
		}
		if s.LastBackup == nil || !haveEnd || wal.Compare(seg, end.Segment()) > 0 {
			s.SinceBackupCount++
			s.SinceBackupSize += w.Size
		}
		if n.Kind == wal.KindSegment && (!haveGapFrom || wal.Compare(seg, gapFrom.Segment()) >= 0) {
			segs[n.TLI] = append(segs[n.TLI], n.SegNo(segSize))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.LastBackup == nil {
		// Barman's "wal maximum age" has nothing to measure without a
		// backup; the newest WAL is the best answer for the gauges.
		s.LastSinceBackupTime = s.LastTime
	}
	for _, nos := range segs {
		slices.Sort(nos)
		nos = slices.Compact(nos)
		for i := 1; i < len(nos); i++ {
			s.GapSegments += int64(nos[i] - nos[i-1] - 1)
		}
	}
	return s, nil
}
