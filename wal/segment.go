package wal

import (
	"errors"
	"fmt"
)

// MaxSegmentsBetween bounds SegmentsBetween so a corrupt begin/end pair
// (or a timeline mix-up) cannot make a caller allocate gigabytes of names.
// 1<<22 segments is 64 TiB of WAL at 16 MiB.
const MaxSegmentsBetween = 1 << 22

// ErrTooManySegments is wrapped when a range exceeds MaxSegmentsBetween.
var ErrTooManySegments = errors.New("too many WAL segments in range")

// NameForSegNo returns the segment name of absolute segment number segNo on
// timeline tli (PostgreSQL's XLogFileName). Log numbers wrap at 32 bits,
// exactly as the 8-hex-digit field does.
func NameForSegNo(tli uint32, segNo uint64, segSize uint64) Name {
	per := SegmentsPerLog(segSize)
	return Name{Kind: KindSegment, TLI: tli, Log: uint32(segNo / per), Seg: uint32(segNo % per)}
}

// NameForLSN returns the name of the segment on timeline tli that holds
// the byte at lsn (XLByteToSeg + XLogFileName).
func NameForLSN(tli uint32, lsn LSN, segSize uint64) Name {
	return NameForSegNo(tli, lsn.SegmentNo(segSize), segSize)
}

// NameForPrevLSN returns the segment holding the byte just before lsn
// (XLByteToPrevSeg). Use it for end positions: a backup or switch that
// ends exactly on a segment boundary needs the previous segment, which is
// what Barman reports on PostgreSQL 17 for start/stop/switch-wal
// locations at offset 0. For lsn 0 it returns segment 0.
func NameForPrevLSN(tli uint32, lsn LSN, segSize uint64) Name {
	if lsn == 0 {
		return NameForSegNo(tli, 0, segSize)
	}
	return NameForSegNo(tli, (lsn - 1).SegmentNo(segSize), segSize)
}

// SegNo returns n's absolute segment number (XLogFromFileName). For a
// history name it returns 0.
func (n Name) SegNo(segSize uint64) uint64 {
	if n.Kind == KindHistory {
		return 0
	}
	return uint64(n.Log)*SegmentsPerLog(segSize) + uint64(n.Seg)
}

// StartLSN returns the LSN of the first byte of n's segment. For a .backup
// name this is still the segment start; add Offset for the backup start.
// For a history name it returns InvalidLSN.
func (n Name) StartLSN(segSize uint64) LSN {
	if n.Kind == KindHistory {
		return InvalidLSN
	}
	return LSN(n.SegNo(segSize) * effectiveSize(segSize))
}

// maxSegNo is the last segment number whose name is representable (log
// 0xFFFFFFFF, last seg of that log).
func maxSegNo(segSize uint64) uint64 {
	return uint64(0xFFFFFFFF)*SegmentsPerLog(segSize) + SegmentsPerLog(segSize) - 1
}

// Next returns the plain segment that follows n's segment on the same
// timeline, carrying into the log number at the end of a log. It saturates
// at the last representable segment and returns a history name unchanged.
func (n Name) Next(segSize uint64) Name {
	if n.Kind == KindHistory {
		return n
	}
	no := n.SegNo(segSize)
	if no >= maxSegNo(segSize) {
		return NameForSegNo(n.TLI, maxSegNo(segSize), segSize)
	}
	return NameForSegNo(n.TLI, no+1, segSize)
}

// Prev returns the plain segment before n's segment on the same timeline.
// It saturates at segment 0 and returns a history name unchanged.
func (n Name) Prev(segSize uint64) Name {
	if n.Kind == KindHistory {
		return n
	}
	no := n.SegNo(segSize)
	if no == 0 {
		return NameForSegNo(n.TLI, 0, segSize)
	}
	return NameForSegNo(n.TLI, no-1, segSize)
}

// SegmentsBetween lists the plain segment names from begin's segment to
// end's segment, both included (the WALs a backup needs from begin_wal to
// end_wal). Both must be on the same timeline, not history names, with
// begin <= end and at most MaxSegmentsBetween segments; kinds other than
// history are reduced to their segment.
func SegmentsBetween(begin, end Name, segSize uint64) ([]Name, error) {
	if begin.Kind == KindHistory || end.Kind == KindHistory {
		return nil, fmt.Errorf("wal: segment range %s..%s: history files have no segments", begin, end)
	}
	if begin.TLI != end.TLI {
		return nil, fmt.Errorf("wal: segment range %s..%s spans timelines %d and %d", begin, end, begin.TLI, end.TLI)
	}
	if err := ValidateSegmentSize(segSize); err != nil {
		return nil, fmt.Errorf("wal: segment range %s..%s: %w", begin, end, err)
	}
	if err := begin.ValidateFor(segSize); err != nil {
		return nil, err
	}
	if err := end.ValidateFor(segSize); err != nil {
		return nil, err
	}
	b, e := begin.SegNo(segSize), end.SegNo(segSize)
	if b > e {
		return nil, fmt.Errorf("wal: segment range %s..%s: begin is after end", begin, end)
	}
	if e-b >= MaxSegmentsBetween {
		return nil, fmt.Errorf("wal: segment range %s..%s: %w (%d, max %d)", begin, end, ErrTooManySegments, e-b+1, MaxSegmentsBetween)
	}
	out := make([]Name, 0, e-b+1)
	for no := b; ; no++ {
		out = append(out, NameForSegNo(begin.TLI, no, segSize))
		if no == e {
			break
		}
	}
	return out, nil
}
