package server

import (
	"context"
	"sort"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// GetBackup returns one backup by id (seed get_backup).
func (s *Server) GetBackup(id string) (*catalog.BackupInfo, error) { return s.cat.Get(id) }

// AvailableBackups lists backups with the given statuses, oldest first;
// no status means Barman's default (WAITING_FOR_WALS, DONE) (seed
// get_available_backups).
func (s *Server) AvailableBackups(statuses ...catalog.Status) ([]*catalog.BackupInfo, error) {
	return s.cat.Available(statuses...)
}

// ResolveBackup accepts an id, a name or a shortcut (latest, oldest,
// last-failed, latest-full) (seed get_backup_id_from_name plus the CLI's
// shortcut parsing).
func (s *Server) ResolveBackup(ref string) (*catalog.BackupInfo, error) { return s.cat.Resolve(ref) }

// WALStats summarises the archived WAL that belong to a backup: the files
// from begin_wal to end_wal, and those after it up to the next backup (seed
// get_wal_info and get_wal_until_next_backup).
type WALStats struct {
	// WALs needed by the backup itself (begin_wal..end_wal).
	Num  int
	Size int64
	// WALs archived after end_wal and before the next backup's begin_wal
	// (to the end of the archive for the newest backup).
	UntilNextNum  int
	UntilNextSize int64
	// UntilNextTime is the newest mtime among those WALs.
	LastWAL        string
	LastWALTime    time.Time
	Timelines      []uint32
	CompressionMix map[string]int
}

// WALStatsFor computes WALStats for every backup in one pass over
// xlog.db. Backups without begin_wal get a zero entry.
func (s *Server) WALStatsFor(ctx context.Context, backups []*catalog.BackupInfo) (map[string]*WALStats, error) {
	type span struct {
		id              string
		begin, end, nxt string // nxt: begin_wal of the next available backup, "" for none
	}
	sorted := append([]*catalog.BackupInfo(nil), backups...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	out := make(map[string]*WALStats, len(sorted))
	var spans []span
	for i, b := range sorted {
		out[b.ID] = &WALStats{CompressionMix: map[string]int{}}
		if b.BeginWAL == "" {
			continue
		}
		sp := span{id: b.ID, begin: b.BeginWAL, end: b.EndWAL}
		for _, n := range sorted[i+1:] {
			if n.BeginWAL != "" && (n.Status == catalog.StatusDone || n.Status == catalog.StatusWaitingForWALs) {
				sp.nxt = n.BeginWAL
				break
			}
		}
		spans = append(spans, sp)
	}
	if len(spans) == 0 {
		return out, nil
	}
	err := s.xlog.Scan(ctx, func(w catalog.WALInfo) error {
		n, err := wal.ParseName(w.Name)
		if err != nil || !(n.Kind == wal.KindSegment) {
			return nil
		}
		seg := n.SegmentName()
		for _, sp := range spans {
			st := out[sp.id]
			switch {
			case seg >= sp.begin && (sp.end == "" || seg <= sp.end):
				st.Num++
				st.Size += w.Size
			case sp.end != "" && seg > sp.end && (sp.nxt == "" || seg < sp.nxt):
				st.UntilNextNum++
				st.UntilNextSize += w.Size
				st.LastWAL = w.Name
				if t := w.ModTime(); t.After(st.LastWALTime) {
					st.LastWALTime = t
				}
				c := w.Compression
				if c == "" {
					c = "None"
				}
				st.CompressionMix[c]++
			}
		}
		return nil
	})
	return out, err
}
