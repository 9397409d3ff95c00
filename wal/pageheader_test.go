package wal_test

import (
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

// fixtureSysID is the system identifier of the cluster the testdata/pg15
// pages were cut from (see testdata/pg15/README).
func fixtureSysID(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("testdata/pg15/sysid")
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("testdata/pg15/sysid: %v", err)
	}
	return id
}

func readPage(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/pg15/" + seg + ".page8k")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 8192 {
		t.Fatalf("%s fixture is %d bytes, want 8192", seg, len(b))
	}
	return b
}

func TestParsePageHeaderRealPG15(t *testing.T) {
	t.Parallel()
	sysid := fixtureSysID(t)
	tests := []struct {
		seg      string
		info     uint16
		tli      uint32
		pageAddr wal.LSN
	}{
		{"000000010000000000000001", 0x0002, 1, 0x1000000},
		{"000000020000000000000001", 0x0002, 1, 0x1000000}, // copied from TLI 1 at promotion
		{"000000020000000000000003", 0x0006, 2, 0x3000000},
	}
	for _, tt := range tests {
		h, err := wal.ParsePageHeader(readPage(t, tt.seg))
		if err != nil {
			t.Fatalf("%s: %v", tt.seg, err)
		}
		want := wal.PageHeader{
			Magic: 0xD110, Info: tt.info, TLI: tt.tli, PageAddr: tt.pageAddr,
			SystemID: sysid, SegSize: 16 << 20, BlockSize: 8192, Long: true,
		}
		if h != want {
			t.Errorf("%s: header = %+v, want %+v", tt.seg, h, want)
		}
		if v, ok := wal.MagicVersion(h.Magic); !ok || v != 15 {
			t.Errorf("MagicVersion(%#x) = %d, %v, want 15", h.Magic, v, ok)
		}
		name, err := wal.ParseName(tt.seg)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Validate(name, sysid, 16<<20); err != nil {
			t.Errorf("%s: Validate: %v", tt.seg, err)
		}
		if err := h.Validate(name.Partial(), 0, 16<<20); err != nil {
			t.Errorf("%s.partial without sysid: Validate: %v", tt.seg, err)
		}
	}
}

func TestValidateMismatches(t *testing.T) {
	t.Parallel()
	sysid := fixtureSysID(t)
	page1 := readPage(t, "000000010000000000000001")
	h1, err := wal.ParsePageHeader(page1)
	if err != nil {
		t.Fatal(err)
	}
	recycled, err := wal.ParsePageHeader(readPage(t, "000000020000000000000004"))
	if err != nil {
		t.Fatal(err)
	}
	name := func(s string) wal.Name {
		n, err := wal.ParseName(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	with := func(f func(*wal.PageHeader)) wal.PageHeader {
		h := h1
		f(&h)
		return h
	}
	tests := []struct {
		what    string
		h       wal.PageHeader
		want    wal.Name
		sysid   uint64
		segSize uint64
		field   string // HeaderMismatchError.Field; "" = some other error
		got     string
		wantVal string
	}{
		{"recycled file", recycled, name("000000020000000000000004"), sysid, 16 << 20, "pageaddr", "0/2000000", "0/4000000"},
		{"wrong segment", h1, name("000000010000000000000002"), sysid, 16 << 20, "pageaddr", "0/1000000", "0/2000000"},
		{"newer timeline in header", h1, name("000000000000000000000001"), sysid, 16 << 20, "timeline", "1", "0 or an ancestor"},
		{"other cluster", h1, name("000000010000000000000001"), sysid + 1, 16 << 20, "system identifier", strconv.FormatUint(sysid, 10), strconv.FormatUint(sysid+1, 10)},
		{"segment size", h1, name("000000010000000000000000"), sysid, 1 << 30, "segment size", "16777216", "1073741824"},
		{"unknown magic", with(func(h *wal.PageHeader) { h.Magic = 0xD0FF }), name("000000010000000000000001"), sysid, 16 << 20, "magic", "0xD0FF", ""},
		{"short header", with(func(h *wal.PageHeader) { h.Info = 0; h.Long = false }), name("000000010000000000000001"), sysid, 16 << 20, "info", "0x0000", ""},
		{"unknown flag", with(func(h *wal.PageHeader) { h.Info |= 0x0100 }), name("000000010000000000000001"), sysid, 16 << 20, "info", "0x0102", ""},
		{"block size", with(func(h *wal.PageHeader) { h.BlockSize = 8191 }), name("000000010000000000000001"), sysid, 16 << 20, "block size", "8191", ""},
		{"timeline 0", with(func(h *wal.PageHeader) { h.TLI = 0 }), name("000000010000000000000001"), sysid, 16 << 20, "timeline", "0", ""},
		{"history name", h1, name("00000001.history"), sysid, 16 << 20, "file kind", "history", ""},
		{"backup name", h1, name("000000010000000000000001.00000028.backup"), sysid, 16 << 20, "file kind", "backup", ""},
		{"invalid size", h1, name("000000010000000000000001"), sysid, 0, "", "", ""},
	}
	for _, tt := range tests {
		err := tt.h.Validate(tt.want, tt.sysid, tt.segSize)
		if err == nil {
			t.Errorf("%s: Validate accepted", tt.what)
			continue
		}
		var me *wal.HeaderMismatchError
		isMismatch := errors.As(err, &me)
		if tt.field == "" {
			if isMismatch {
				t.Errorf("%s: got mismatch %v, want a different error", tt.what, err)
			}
			continue
		}
		if !isMismatch {
			t.Errorf("%s: error %v is not a *HeaderMismatchError", tt.what, err)
			continue
		}
		if me.Field != tt.field || me.Got != tt.got || (tt.wantVal != "" && me.Want != tt.wantVal) {
			t.Errorf("%s: mismatch %+v, want field %q got %q want %q", tt.what, me, tt.field, tt.got, tt.wantVal)
		}
		if me.File != tt.want.String() || !strings.Contains(err.Error(), tt.want.String()) {
			t.Errorf("%s: error %q does not name the file %s", tt.what, err, tt.want)
		}
		if !errors.Is(err, wal.ErrPageHeader) {
			t.Errorf("%s: errors.Is(err, ErrPageHeader) = false", tt.what)
		}
	}
}

func TestParsePageHeaderShort(t *testing.T) {
	t.Parallel()
	page := readPage(t, "000000010000000000000001")
	for _, n := range []int{0, 1, 23} {
		if _, err := wal.ParsePageHeader(page[:n]); !errors.Is(err, wal.ErrPageHeader) {
			t.Errorf("%d bytes: error %v, want ErrPageHeader", n, err)
		}
	}
	// 24..39 bytes are enough for a short header but not for the long one
	// this page announces.
	for _, n := range []int{24, 39} {
		if _, err := wal.ParsePageHeader(page[:n]); !errors.Is(err, wal.ErrPageHeader) {
			t.Errorf("%d bytes of a long header: error %v, want ErrPageHeader", n, err)
		}
	}
	if _, err := wal.ParsePageHeader(page[:40]); err != nil {
		t.Errorf("40 bytes: %v", err)
	}
	// A short header (a page inside a segment) decodes from 24 bytes.
	short := make([]byte, 24)
	binary.LittleEndian.PutUint16(short[0:], 0xD110)
	binary.LittleEndian.PutUint32(short[4:], 3)
	binary.LittleEndian.PutUint64(short[8:], 0x1002000)
	binary.LittleEndian.PutUint32(short[16:], 77)
	h, err := wal.ParsePageHeader(short)
	if err != nil {
		t.Fatal(err)
	}
	if want := (wal.PageHeader{Magic: 0xD110, TLI: 3, PageAddr: 0x1002000, RemLen: 77}); h != want {
		t.Errorf("short header = %+v, want %+v", h, want)
	}
}

func TestMagicVersion(t *testing.T) {
	t.Parallel()
	for magic, v := range map[uint16]int{0xD10D: 14, 0xD110: 15, 0xD113: 16, 0xD116: 17} {
		if got, ok := wal.MagicVersion(magic); !ok || got != v {
			t.Errorf("MagicVersion(%#x) = %d, %v, want %d", magic, got, ok, v)
		}
	}
	if _, ok := wal.MagicVersion(0); ok {
		t.Error("MagicVersion(0) is known")
	}
}
