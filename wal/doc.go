// Package wal is the pure (no I/O) vocabulary of PostgreSQL write-ahead
// log handling in Cellar: WAL file names in the four forms Barman stores
// (segment, .partial, .backup label, .history), LSNs and the segment
// arithmetic between them, timeline history files, and the page header at
// the start of a WAL segment.
//
// Every function is safe on arbitrary input: parsers return errors and
// arithmetic helpers never panic. Segment sizes coming from untrusted
// places (backup.info, pg_settings) should be checked with
// ValidateSegmentSize; the arithmetic helpers fall back to
// DefaultSegmentSize for an invalid size rather than dividing by zero.
package wal
