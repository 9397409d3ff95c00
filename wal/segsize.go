package wal

import "fmt"

// Segment size limits. PostgreSQL (initdb --wal-segsize, and the
// --with-wal-segsize build option before PG11) only allows powers of two
// between 1 MiB and 1 GiB.
const (
	// DefaultSegmentSize is PostgreSQL's default wal_segment_size, and what
	// Barman assumes when backup.info has no xlog_segment_size.
	DefaultSegmentSize uint64 = 16 << 20
	// MinSegmentSize is the smallest segment size PostgreSQL accepts.
	MinSegmentSize = 1 << 20
	// MaxSegmentSize is the largest segment size PostgreSQL accepts.
	MaxSegmentSize = 1 << 30
)

// ValidateSegmentSize reports whether size is a segment size PostgreSQL can
// produce: a power of two in [MinSegmentSize, MaxSegmentSize].
func ValidateSegmentSize(size uint64) error {
	if size < MinSegmentSize || size > MaxSegmentSize || size&(size-1) != 0 {
		return fmt.Errorf("wal: invalid WAL segment size %d: must be a power of two between 1MiB and 1GiB", size)
	}
	return nil
}

// effectiveSize maps an invalid segment size to DefaultSegmentSize so the
// arithmetic below can never divide by zero or overflow. Callers are
// expected to validate sizes they read from disk; this is only a guard.
func effectiveSize(size uint64) uint64 {
	if ValidateSegmentSize(size) != nil {
		return DefaultSegmentSize
	}
	return size
}

// SegmentsPerLog returns how many segments share one "log" number (the
// middle 8 hex digits of a segment name): 0x100000000 / segSize, so 256 for
// 16 MiB and 4 for 1 GiB. An invalid segSize is treated as
// DefaultSegmentSize.
func SegmentsPerLog(segSize uint64) uint64 {
	return (1 << 32) / effectiveSize(segSize)
}
