package recovery

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// WALEntry is one archived WAL file as the WAL catalog (xlog.db) lists it.
type WALEntry struct {
	Name        string // segment or history file name
	Compression string // xlog.db compression ("" or "None" = plain)
}

// backupWAL is what the WAL planning needs from backup.info, parsed once.
type backupWAL struct {
	tli     uint32
	begin   wal.Name
	end     wal.Name
	segSize uint64
}

func parseBackupWAL(b *catalog.BackupInfo) (backupWAL, error) {
	var bw backupWAL
	if b == nil {
		return bw, fmt.Errorf("%w: no backup given", ErrInvalidOptions)
	}
	var err error
	if bw.begin, err = wal.ParseName(b.BeginWAL); err != nil {
		return bw, fmt.Errorf("backup %s: begin_wal: %w", b.ID, err)
	}
	if bw.end, err = wal.ParseName(b.EndWAL); err != nil {
		return bw, fmt.Errorf("backup %s: end_wal: %w", b.ID, err)
	}
	bw.tli = bw.begin.TLI
	if b.Timeline > 0 {
		bw.tli = uint32(b.Timeline)
	}
	bw.segSize = uint64(b.XLogSegmentSize)
	if bw.segSize == 0 {
		bw.segSize = catalog.DefaultXLogSegmentSize
	}
	return bw, nil
}

// readHistory reads (and decompresses) an archived history file.
func readHistory(layout catalog.Layout, name wal.Name) ([]wal.HistoryEntry, error) {
	path := layout.WALPath(name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server %s: history file %s: %w", layout.Server, name, err)
	}
	defer f.Close()
	rc, err := sniffDecoder(f)
	if err != nil {
		return nil, fmt.Errorf("history file %s: %w", path, err)
	}
	defer rc.Close()
	data, err := readAllLimit(rc, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("history file %s: %w", path, err)
	}
	h, err := wal.ParseHistory(data)
	if err != nil {
		return nil, fmt.Errorf("history file %s: %w", path, err)
	}
	return h, nil
}

// ChildrenTimelines returns, in increasing order, the timelines whose
// history descends from tli (tli is an ancestor in their history file),
// keeping only those forked after forkedAfter when it is non-zero. History
// files come from the WAL catalog entries and are read from the archive.
func ChildrenTimelines(ctx context.Context, layout catalog.Layout, tli uint32, forkedAfter wal.LSN, entries []WALEntry) ([]uint32, error) {
	var out []uint32
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := wal.ParseName(e.Name)
		if err != nil || n.Kind != wal.KindHistory || n.TLI <= tli {
			continue
		}
		h, err := readHistory(layout, n)
		if err != nil {
			return nil, err
		}
		for _, he := range h {
			if he.ParentTLI == tli && (forkedAfter == 0 || he.SwitchPoint > forkedAfter) {
				out = append(out, n.TLI)
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// TargetTimeline resolves Target.TLI for a backup: "" and "current" are the
// backup's own timeline, "latest" the newest timeline descending from it
// that has archived history, a number itself.
func TargetTimeline(ctx context.Context, layout catalog.Layout, b *catalog.BackupInfo, t Target, entries []WALEntry) (uint32, error) {
	bw, err := parseBackupWAL(b)
	if err != nil {
		return 0, err
	}
	switch t.TLI {
	case "", "current":
		return bw.tli, nil
	case "latest":
		kids, err := ChildrenTimelines(ctx, layout, bw.tli, 0, entries)
		if err != nil {
			return 0, err
		}
		if len(kids) == 0 {
			return bw.tli, nil
		}
		return kids[len(kids)-1], nil
	}
	n, err := strconv.ParseUint(t.TLI, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: target timeline %q", ErrInvalidOptions, t.TLI)
	}
	return uint32(n), nil
}

// RequiredWAL lists the archived WAL files a restore of b to target needs
// when WAL is copied up front: every history file, plus each segment from
// the backup's begin_wal on, on timelines up to the target timeline. An
// immediate target stops at the backup's end_wal and an LSN target at the
// segment holding it; time, xid and name targets cannot be located without
// reading WAL, so everything after begin_wal is included. It fails with
// ErrMissingWAL when a segment between begin_wal and end_wal is absent.
func RequiredWAL(ctx context.Context, layout catalog.Layout, b *catalog.BackupInfo, target Target, entries []WALEntry) ([]WALEntry, error) {
	bw, err := parseBackupWAL(b)
	if err != nil {
		return nil, err
	}
	tli, err := TargetTimeline(ctx, layout, b, target, entries)
	if err != nil {
		return nil, err
	}
	// Segments on timelines after the backup's are only useful past the
	// point where that timeline forked; older timelines' segments beyond
	// the fork point are harmless but kept (as Barman does) so that an
	// unexpected history still has what it needs.
	var lastSeg uint64 = ^uint64(0)
	switch {
	case target.Immediate:
		lastSeg = bw.end.SegNo(bw.segSize)
	case target.LSN != nil:
		lastSeg = target.LSN.SegmentNo(bw.segSize)
	}
	beginNo := bw.begin.SegNo(bw.segSize)
	var out []WALEntry
	have := map[uint64]bool{}
	for _, e := range entries {
		n, err := wal.ParseName(e.Name)
		if err != nil {
			continue
		}
		switch n.Kind {
		case wal.KindHistory:
			out = append(out, e)
		case wal.KindSegment:
			no := n.SegNo(bw.segSize)
			if n.TLI > tli || n.TLI < bw.tli || no < beginNo || no > lastSeg {
				continue
			}
			if n.TLI == bw.tli {
				have[no] = true
			}
			out = append(out, e)
		}
	}
	for no := beginNo; no <= bw.end.SegNo(bw.segSize); no++ {
		if !have[no] {
			return nil, fmt.Errorf("backup %s: %w: %s", b.ID, ErrMissingWAL, wal.NameForSegNo(bw.tli, no, bw.segSize))
		}
	}
	slices.SortStableFunc(out, func(a, b WALEntry) int { return strings.Compare(a.Name, b.Name) })
	return slices.CompactFunc(out, func(a, b WALEntry) bool { return a.Name == b.Name }), nil
}
