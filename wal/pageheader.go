package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Page header layout (src/include/access/xlog_internal.h), little-endian
// as written on x86-64 and arm64:
//
//	0  xlp_magic       uint16
//	2  xlp_info        uint16
//	4  xlp_tli         uint32
//	8  xlp_pageaddr    uint64
//	16 xlp_rem_len     uint32
//	20 (padding to MAXALIGN = 24)
//	24 xlp_sysid       uint64   long header only
//	32 xlp_seg_size    uint32   long header only
//	36 xlp_xlog_blcksz uint32   long header only
const (
	// ShortPageHeaderSize is SizeOfXLogShortPHD.
	ShortPageHeaderSize = 24
	// LongPageHeaderSize is SizeOfXLogLongPHD; the first page of every
	// segment carries a long header.
	LongPageHeaderSize = 40
	// XLPLongHeader is the xlp_info bit marking a long header.
	XLPLongHeader uint16 = 0x0002
	// xlpAllFlags are the xlp_info bits PostgreSQL defines.
	xlpAllFlags uint16 = 0x0007
)

// MagicVersion returns the PostgreSQL major version whose WAL pages carry
// magic (XLOG_PAGE_MAGIC), and false for an unknown magic. The magic
// changes whenever the WAL format changes, so an unknown value means a
// version Cellar was not built for, or a file that is not WAL.
func MagicVersion(magic uint16) (int, bool) {
	switch magic {
	case 0xD101:
		return 12, true
	case 0xD106:
		return 13, true
	case 0xD10D:
		return 14, true
	case 0xD110:
		return 15, true
	case 0xD113:
		return 16, true
	case 0xD116:
		return 17, true
	case 0xD118:
		return 18, true
	}
	return 0, false
}

// ErrPageHeader is wrapped by ParsePageHeader errors and matched by every
// *HeaderMismatchError.
var ErrPageHeader = errors.New("invalid WAL page header")

// HeaderMismatchError reports a page header field that does not match
// what the file name, the server or the configuration say it should be.
type HeaderMismatchError struct {
	File  string // WAL file name the header was checked against
	Field string // "magic", "info", "timeline", "pageaddr", "system identifier", "segment size", "block size"
	Got   string
	Want  string
}

func (e *HeaderMismatchError) Error() string {
	return fmt.Sprintf("wal: %s: page header %s is %s, want %s", e.File, e.Field, e.Got, e.Want)
}

// Is makes errors.Is(err, ErrPageHeader) true for a *HeaderMismatchError.
func (e *HeaderMismatchError) Is(target error) bool { return target == ErrPageHeader }

// PageHeader is a decoded WAL page header. SystemID, SegSize and BlockSize
// are only set when Long is true.
type PageHeader struct {
	Magic     uint16
	Info      uint16
	TLI       uint32
	PageAddr  LSN
	RemLen    uint32
	SystemID  uint64
	SegSize   uint32
	BlockSize uint32
	Long      bool
}

// ParsePageHeader decodes the page header at the start of b. It needs at
// least ShortPageHeaderSize bytes, and LongPageHeaderSize when xlp_info
// has XLPLongHeader set. It only decodes; Validate checks the values.
func ParsePageHeader(b []byte) (PageHeader, error) {
	if len(b) < ShortPageHeaderSize {
		return PageHeader{}, fmt.Errorf("wal: %w: %d bytes, need at least %d", ErrPageHeader, len(b), ShortPageHeaderSize)
	}
	le := binary.LittleEndian
	h := PageHeader{
		Magic:    le.Uint16(b[0:]),
		Info:     le.Uint16(b[2:]),
		TLI:      le.Uint32(b[4:]),
		PageAddr: LSN(le.Uint64(b[8:])),
		RemLen:   le.Uint32(b[16:]),
	}
	if h.Info&XLPLongHeader == 0 {
		return h, nil
	}
	if len(b) < LongPageHeaderSize {
		return PageHeader{}, fmt.Errorf("wal: %w: long header flag set but only %d bytes, need %d", ErrPageHeader, len(b), LongPageHeaderSize)
	}
	h.Long = true
	h.SystemID = le.Uint64(b[24:])
	h.SegSize = le.Uint32(b[32:])
	h.BlockSize = le.Uint32(b[36:])
	return h, nil
}

// Validate checks that h is the first page header of the segment named
// want (a segment or .partial name; any other kind is a mismatch). In
// this order, so that the most telling difference is reported: a known
// magic; a long header with only defined flag bits; the given system
// identifier (not checked when systemID is 0, e.g. before the server's
// identity is known); a valid segSize equal to xlp_seg_size, with want's
// Seg in range for it; the name's timeline or an older one (the first
// segment of a new timeline starts with the parent's records); a page
// address equal to want.StartLSN(segSize); a power-of-two block size
// between 1 KiB and 64 KiB. A field mismatch is a *HeaderMismatchError
// naming the field and both values (errors.Is ErrPageHeader).
func (h PageHeader) Validate(want Name, systemID uint64, segSize uint64) error {
	file := want.String()
	mismatch := func(field, got, wantv string) error {
		return &HeaderMismatchError{File: file, Field: field, Got: got, Want: wantv}
	}
	if want.Kind != KindSegment && want.Kind != KindPartial {
		return mismatch("file kind", want.Kind.String(), "a segment or partial segment")
	}
	if _, ok := MagicVersion(h.Magic); !ok {
		return mismatch("magic", fmt.Sprintf("0x%04X", h.Magic), "a known XLOG_PAGE_MAGIC (PostgreSQL 12-18)")
	}
	if !h.Long || h.Info&^xlpAllFlags != 0 {
		return mismatch("info", fmt.Sprintf("0x%04X", h.Info), "a long header (0x0002 set, no unknown bits)")
	}
	// Cluster-wide properties first: when the file comes from another
	// cluster or configuration, that is the useful thing to report, not
	// the position mismatch it also causes.
	if systemID != 0 && h.SystemID != systemID {
		return mismatch("system identifier", fmt.Sprint(h.SystemID), fmt.Sprint(systemID))
	}
	if err := ValidateSegmentSize(segSize); err != nil {
		return fmt.Errorf("wal: %s: %w", file, err)
	}
	if uint64(h.SegSize) != segSize {
		return mismatch("segment size", fmt.Sprint(h.SegSize), fmt.Sprint(segSize))
	}
	if err := want.ValidateFor(segSize); err != nil {
		return err
	}
	// xlp_tli is the timeline of the first record on the page, not of the
	// file: the first segment of a new timeline is a copy of the parent's
	// segment up to the switch point, so its header carries an ancestor
	// TLI (see testdata/pg15/000000020000000000000001.page8k). Only a
	// newer timeline than the name's, or 0, is impossible.
	if h.TLI == 0 || h.TLI > want.TLI {
		return mismatch("timeline", fmt.Sprint(h.TLI), fmt.Sprintf("%d or an ancestor", want.TLI))
	}
	if start := want.StartLSN(segSize); h.PageAddr != start {
		return mismatch("pageaddr", h.PageAddr.String(), start.String())
	}
	if bs := h.BlockSize; bs < 1<<10 || bs > 1<<16 || bs&(bs-1) != 0 {
		return mismatch("block size", fmt.Sprint(bs), "a power of two between 1024 and 65536")
	}
	return nil
}
