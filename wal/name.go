package wal

import (
	"errors"
	"fmt"
)

// Kind tells which of the four WAL file name forms a Name has.
type Kind int

// The four name forms Barman archives. The zero value is KindSegment so a
// Name literal without Kind is a plain segment.
const (
	// KindSegment is a plain 24-hex-digit segment: TTTTTTTTLLLLLLLLSSSSSSSS.
	KindSegment Kind = iota
	// KindPartial is a segment still being (or abandoned while) streamed:
	// <segment>.partial.
	KindPartial
	// KindBackup is a backup label copy written by pg_backup_stop:
	// <segment>.<offset 8 hex>.backup.
	KindBackup
	// KindHistory is a timeline history file: TTTTTTTT.history.
	KindHistory
)

// String returns a lower-case word for the kind, for logs and messages.
func (k Kind) String() string {
	switch k {
	case KindSegment:
		return "segment"
	case KindPartial:
		return "partial"
	case KindBackup:
		return "backup"
	case KindHistory:
		return "history"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Name is a parsed WAL file name. Log and Seg are the two halves of the
// segment position as written in the name (they depend on the segment size
// only through SegNo/StartLSN). For KindHistory only TLI is meaningful; for
// KindBackup, Offset is the byte offset inside the segment where the backup
// started.
type Name struct {
	Kind   Kind
	TLI    uint32
	Log    uint32
	Seg    uint32
	Offset uint32 // only for KindBackup
}

// ErrInvalidName is matched (errors.Is) by every *NameError.
var ErrInvalidName = errors.New("invalid WAL file name")

// NameError reports a string that is not a WAL file name.
type NameError struct {
	Name   string // the rejected input, verbatim
	Reason string // why, e.g. "wrong length"
}

func (e *NameError) Error() string {
	return fmt.Sprintf("wal: invalid WAL file name %q: %s", e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidName) true for any *NameError.
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

// Lengths of the four forms; ParseName dispatches on them so a rejected
// name costs at most one length switch.
const (
	segmentNameLen = 24
	partialSuffix  = ".partial"
	backupSuffix   = ".backup"
	historySuffix  = ".history"
	partialNameLen = segmentNameLen + len(partialSuffix)        // 32
	backupNameLen  = segmentNameLen + 1 + 8 + len(backupSuffix) // 40
	historyNameLen = 8 + len(historySuffix)                     // 16
)

// ParseName parses a bare WAL file name in one of the four forms Barman
// accepts: segment, segment.partial, segment.XXXXXXXX.backup and
// XXXXXXXX.history. Hex digits may be in either case; the suffixes must be
// lower case, as PostgreSQL writes them. Paths, extra suffixes (".gz",
// ".partial.partial"), whitespace, NUL and every other deviation are
// rejected with a *NameError. Segment numbers are not checked against a
// segment size; use Name.ValidateFor for that.
func ParseName(s string) (Name, error) {
	var n Name
	var ok bool
	switch len(s) {
	case segmentNameLen:
		n, ok = parseSegmentPart(s)
		n.Kind = KindSegment
	case partialNameLen:
		if s[segmentNameLen:] != partialSuffix {
			return Name{}, &NameError{Name: s, Reason: "expected a .partial suffix"}
		}
		n, ok = parseSegmentPart(s[:segmentNameLen])
		n.Kind = KindPartial
	case backupNameLen:
		if s[segmentNameLen] != '.' || s[segmentNameLen+9:] != backupSuffix {
			return Name{}, &NameError{Name: s, Reason: "expected <segment>.<offset>.backup"}
		}
		n, ok = parseSegmentPart(s[:segmentNameLen])
		if ok {
			n.Offset, ok = parseHex8(s[segmentNameLen+1 : segmentNameLen+9])
		}
		n.Kind = KindBackup
	case historyNameLen:
		if s[8:] != historySuffix {
			return Name{}, &NameError{Name: s, Reason: "expected <timeline>.history"}
		}
		n.TLI, ok = parseHex8(s[:8])
		n.Kind = KindHistory
	default:
		return Name{}, &NameError{Name: s, Reason: "wrong length for a WAL file name"}
	}
	if !ok {
		return Name{}, &NameError{Name: s, Reason: "non-hexadecimal character"}
	}
	return n, nil
}

func parseSegmentPart(s string) (Name, bool) {
	tli, ok1 := parseHex8(s[0:8])
	log, ok2 := parseHex8(s[8:16])
	seg, ok3 := parseHex8(s[16:24])
	return Name{TLI: tli, Log: log, Seg: seg}, ok1 && ok2 && ok3
}

// parseHex8 parses exactly 8 hex digits (either case).
func parseHex8(s string) (uint32, bool) {
	if len(s) != 8 {
		return 0, false
	}
	var v uint32
	for i := 0; i < 8; i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

const upperHex = "0123456789ABCDEF"

func appendHex8(b []byte, v uint32) []byte {
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, upperHex[(v>>uint(shift))&0xF])
	}
	return b
}

// String returns the canonical file name for n's kind, with upper-case hex
// as PostgreSQL and Barman write it. A Name with an unknown Kind formats
// as its segment name.
func (n Name) String() string {
	switch n.Kind {
	case KindHistory:
		return HistoryFileName(n.TLI)
	case KindPartial:
		return n.SegmentName() + partialSuffix
	case KindBackup:
		b := make([]byte, 0, backupNameLen)
		b = append(b, n.SegmentName()...)
		b = append(b, '.')
		b = appendHex8(b, n.Offset)
		return string(append(b, backupSuffix...))
	}
	return n.SegmentName()
}

// SegmentName returns the 24-character segment name n refers to (for a
// .partial or .backup name, the segment it belongs to). It returns "" for
// a history file, which belongs to no segment.
func (n Name) SegmentName() string {
	if n.Kind == KindHistory {
		return ""
	}
	b := make([]byte, 0, segmentNameLen)
	b = appendHex8(b, n.TLI)
	b = appendHex8(b, n.Log)
	b = appendHex8(b, n.Seg)
	return string(b)
}

// HashDir returns the wals/ subdirectory Barman stores n in: the first 16
// characters (timeline and log) of its segment name. History files live at
// the root of wals/, so it returns "" for them.
func (n Name) HashDir() string {
	if n.Kind == KindHistory {
		return ""
	}
	b := make([]byte, 0, 16)
	b = appendHex8(b, n.TLI)
	b = appendHex8(b, n.Log)
	return string(b)
}

// IsSegment reports whether n is a plain, complete segment (Barman's
// is_wal_file), as opposed to a partial, backup label or history file.
func (n Name) IsSegment() bool { return n.Kind == KindSegment }

// Segment returns the plain segment name n belongs to (n itself for a
// segment). For a history file it returns n unchanged.
func (n Name) Segment() Name {
	if n.Kind == KindHistory {
		return n
	}
	return Name{Kind: KindSegment, TLI: n.TLI, Log: n.Log, Seg: n.Seg}
}

// Partial returns the .partial name of n's segment. For a history file it
// returns n unchanged.
func (n Name) Partial() Name {
	if n.Kind == KindHistory {
		return n
	}
	return Name{Kind: KindPartial, TLI: n.TLI, Log: n.Log, Seg: n.Seg}
}

// ValidateFor reports whether n's segment number can exist with segSize
// (Seg below SegmentsPerLog) and, for a .backup name, whether Offset lies
// inside the segment. History names are always valid.
func (n Name) ValidateFor(segSize uint64) error {
	if err := ValidateSegmentSize(segSize); err != nil {
		return err
	}
	if n.Kind == KindHistory {
		return nil
	}
	if uint64(n.Seg) >= SegmentsPerLog(segSize) {
		return &NameError{Name: n.String(), Reason: fmt.Sprintf("segment %08X out of range for %d-byte segments", n.Seg, segSize)}
	}
	if n.Kind == KindBackup && uint64(n.Offset) >= segSize {
		return &NameError{Name: n.String(), Reason: fmt.Sprintf("offset %08X beyond %d-byte segment", n.Offset, segSize)}
	}
	return nil
}

// IsAnyWALName reports whether s is a name in any of the four forms
// (Barman's is_any_xlog_file).
func IsAnyWALName(s string) bool {
	_, err := ParseName(s)
	return err == nil
}

// IsSegmentName reports whether s is a plain 24-hex-digit segment name
// (Barman's is_wal_file).
func IsSegmentName(s string) bool { return isKind(s, KindSegment) }

// IsHistoryName reports whether s is a timeline history file name.
func IsHistoryName(s string) bool { return isKind(s, KindHistory) }

// IsBackupLabelName reports whether s is a <segment>.<offset>.backup name.
func IsBackupLabelName(s string) bool { return isKind(s, KindBackup) }

// IsPartialName reports whether s is a <segment>.partial name.
func IsPartialName(s string) bool { return isKind(s, KindPartial) }

func isKind(s string, k Kind) bool {
	n, err := ParseName(s)
	return err == nil && n.Kind == k
}

// HistoryFileName returns the history file name of timeline tli, e.g.
// "00000002.history".
func HistoryFileName(tli uint32) string {
	b := make([]byte, 0, historyNameLen)
	b = appendHex8(b, tli)
	return string(append(b, historySuffix...))
}

// kindRank orders the kinds at one segment position the way their file
// names sort: "X" < "X.<hex>.backup" < "X.partial".
func kindRank(k Kind) int {
	switch k {
	case KindSegment:
		return 0
	case KindBackup:
		return 1
	case KindPartial:
		return 2
	}
	return 3
}

// Compare orders names by (timeline, log, seg, kind, backup offset), which
// is the byte order of their canonical file names: a timeline's history
// file sorts before all of that timeline's segments, and at one segment
// position the plain segment precedes its .backup labels, which precede
// its .partial. It returns -1, 0 or +1.
func Compare(a, b Name) int {
	if c := cmp32(a.TLI, b.TLI); c != 0 {
		return c
	}
	ah, bh := a.Kind == KindHistory, b.Kind == KindHistory
	switch {
	case ah && bh:
		return 0
	case ah:
		return -1
	case bh:
		return 1
	}
	if c := cmp32(a.Log, b.Log); c != 0 {
		return c
	}
	if c := cmp32(a.Seg, b.Seg); c != 0 {
		return c
	}
	if ra, rb := kindRank(a.Kind), kindRank(b.Kind); ra != rb {
		if ra < rb {
			return -1
		}
		return 1
	}
	if a.Kind == KindBackup {
		return cmp32(a.Offset, b.Offset)
	}
	return 0
}

func cmp32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
