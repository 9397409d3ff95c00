package wal_test

import (
	"errors"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

func TestValidateSegmentSize(t *testing.T) {
	t.Parallel()
	for _, ok := range []uint64{1 << 20, 2 << 20, 16 << 20, 64 << 20, 512 << 20, 1 << 30} {
		if err := wal.ValidateSegmentSize(ok); err != nil {
			t.Errorf("ValidateSegmentSize(%d) = %v", ok, err)
		}
	}
	for _, bad := range []uint64{0, 1, 8192, 1<<20 - 1, 1<<20 + 1, 3 << 20, 1 << 31, 1 << 32, ^uint64(0)} {
		if err := wal.ValidateSegmentSize(bad); err == nil {
			t.Errorf("ValidateSegmentSize(%d) accepted", bad)
		}
	}
}

func TestSegmentsPerLog(t *testing.T) {
	t.Parallel()
	for size, want := range map[uint64]uint64{
		1 << 20: 4096, 16 << 20: 256, 64 << 20: 64, 1 << 30: 4,
		0: 256, 3: 256, // invalid sizes fall back to the default
	} {
		if got := wal.SegmentsPerLog(size); got != want {
			t.Errorf("SegmentsPerLog(%d) = %d, want %d", size, got, want)
		}
	}
}

// TestSegmentArithmetic works through the same LSNs for each segment size.
// Expected names were derived by hand from PostgreSQL's XLogFileName:
// log = segno / (2^32/size), seg = segno % (2^32/size), segno = lsn/size.
func TestSegmentArithmetic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size    uint64
		lsn     string
		name    string // segment holding lsn on TLI 1
		segNo   uint64
		offset  uint64
		prevLSN string // NameForPrevLSN
	}{
		{16 << 20, "0/0", "000000010000000000000000", 0, 0, "000000010000000000000000"},
		{16 << 20, "0/3000000", "000000010000000000000003", 3, 0, "000000010000000000000002"},
		{16 << 20, "0/3000028", "000000010000000000000003", 3, 0x28, "000000010000000000000003"},
		{16 << 20, "16/B374D848", "0000000100000016000000B3", 0x16*256 + 0xB3, 0x74D848, "0000000100000016000000B3"},
		{16 << 20, "1/0", "000000010000000100000000", 256, 0, "0000000100000000000000FF"},
		{16 << 20, "0/FFFFFFFF", "0000000100000000000000FF", 255, 0xFFFFFF, "0000000100000000000000FF"},
		{1 << 20, "0/3000028", "000000010000000000000030", 0x30, 0x28, "000000010000000000000030"},
		{1 << 20, "16/B374D848", "000000010000001600000B37", 0x16*4096 + 0xB37, 0x4D848, "000000010000001600000B37"},
		{1 << 20, "1/0", "000000010000000100000000", 4096, 0, "000000010000000000000FFF"},
		{64 << 20, "16/B374D848", "00000001000000160000002C", 0x16*64 + 0x2C, 0x374D848, "00000001000000160000002C"},
		{64 << 20, "0/4000000", "000000010000000000000001", 1, 0, "000000010000000000000000"},
		{1 << 30, "16/B374D848", "000000010000001600000002", 0x16*4 + 2, 0x3374D848, "000000010000001600000002"},
		{1 << 30, "0/C0000000", "000000010000000000000003", 3, 0, "000000010000000000000002"},
		{1 << 30, "1/0", "000000010000000100000000", 4, 0, "000000010000000000000003"},
		{1 << 30, "FFFFFFFF/FFFFFFFF", "00000001FFFFFFFF00000003", 0xFFFFFFFF*4 + 3, 1<<30 - 1, "00000001FFFFFFFF00000003"},
	}
	for _, tt := range tests {
		lsn, err := wal.ParseLSN(tt.lsn)
		if err != nil {
			t.Fatal(err)
		}
		n := wal.NameForLSN(1, lsn, tt.size)
		if n.String() != tt.name || n.Kind != wal.KindSegment {
			t.Errorf("size %d: NameForLSN(%s) = %s (%v), want %s", tt.size, tt.lsn, n, n.Kind, tt.name)
		}
		if got := lsn.SegmentNo(tt.size); got != tt.segNo {
			t.Errorf("size %d: %s.SegmentNo = %#x, want %#x", tt.size, tt.lsn, got, tt.segNo)
		}
		if got := lsn.SegmentOffset(tt.size); got != tt.offset {
			t.Errorf("size %d: %s.SegmentOffset = %#x, want %#x", tt.size, tt.lsn, got, tt.offset)
		}
		if got := n.SegNo(tt.size); got != tt.segNo {
			t.Errorf("size %d: %s.SegNo = %#x, want %#x", tt.size, n, got, tt.segNo)
		}
		if got := wal.NameForSegNo(1, tt.segNo, tt.size); got != n {
			t.Errorf("size %d: NameForSegNo(%#x) = %s, want %s", tt.size, tt.segNo, got, n)
		}
		if start := n.StartLSN(tt.size); uint64(start)+tt.offset != uint64(lsn) {
			t.Errorf("size %d: %s.StartLSN = %s, + offset %#x != %s", tt.size, n, start, tt.offset, tt.lsn)
		}
		if got := wal.NameForPrevLSN(1, lsn, tt.size).String(); got != tt.prevLSN {
			t.Errorf("size %d: NameForPrevLSN(%s) = %s, want %s", tt.size, tt.lsn, got, tt.prevLSN)
		}
		if err := n.ValidateFor(tt.size); err != nil {
			t.Errorf("size %d: computed name %s does not validate: %v", tt.size, n, err)
		}
	}
}

func TestNextPrev(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size       uint64
		from, next string
	}{
		{16 << 20, "000000010000000000000001", "000000010000000000000002"},
		{16 << 20, "0000000100000000000000FF", "000000010000000100000000"}, // log boundary
		{16 << 20, "000000030000000A000000FF", "000000030000000B00000000"},
		{1 << 20, "000000010000000000000FFF", "000000010000000100000000"},
		{64 << 20, "00000001000000000000003F", "000000010000000100000000"},
		{1 << 30, "000000010000000000000003", "000000010000000100000000"},
		{1 << 30, "000000010000000100000000", "000000010000000100000001"},
	}
	for _, tt := range tests {
		from, err := wal.ParseName(tt.from)
		if err != nil {
			t.Fatal(err)
		}
		next := from.Next(tt.size)
		if next.String() != tt.next {
			t.Errorf("size %d: %s.Next = %s, want %s", tt.size, tt.from, next, tt.next)
		}
		if prev := next.Prev(tt.size); prev != from {
			t.Errorf("size %d: %s.Prev = %s, want %s", tt.size, next, prev, from)
		}
		// Next of a partial/backup is the next plain segment.
		if p := from.Partial().Next(tt.size); p != next {
			t.Errorf("size %d: %s.partial.Next = %s, want %s", tt.size, tt.from, p, next)
		}
	}
	// Saturation at both ends, never wrapping to a nonsense name.
	first := wal.Name{TLI: 1}
	if got := first.Prev(16 << 20); got != first {
		t.Errorf("Prev of the first segment = %s", got)
	}
	last := wal.Name{TLI: 1, Log: 0xFFFFFFFF, Seg: 3}
	if got := last.Next(1 << 30); got != last {
		t.Errorf("Next of the last segment = %s", got)
	}
	h := wal.Name{Kind: wal.KindHistory, TLI: 2}
	if h.Next(16<<20) != h || h.Prev(16<<20) != h || h.StartLSN(16<<20) != wal.InvalidLSN || h.SegNo(16<<20) != 0 {
		t.Errorf("history names must not move or have positions")
	}
}

func TestSegmentsBetween(t *testing.T) {
	t.Parallel()
	mustName := func(s string) wal.Name {
		n, err := wal.ParseName(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	got, err := wal.SegmentsBetween(mustName("0000000100000000000000FE"), mustName("000000010000000100000001.00000028.backup"), 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000", "000000010000000100000001"}
	if len(got) != len(want) {
		t.Fatalf("got %d names %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i].String() != want[i] || got[i].Kind != wal.KindSegment {
			t.Errorf("[%d] = %s, want %s", i, got[i], want[i])
		}
	}

	one, err := wal.SegmentsBetween(mustName("000000010000000000000003"), mustName("000000010000000000000003.partial"), 1<<30)
	if err != nil || len(one) != 1 || one[0].String() != "000000010000000000000003" {
		t.Errorf("single-segment range = %v, %v", one, err)
	}

	bad := []struct {
		name       string
		begin, end string
		size       uint64
	}{
		{"timelines differ", "000000010000000000000001", "000000020000000000000002", 16 << 20},
		{"begin after end", "000000010000000000000002", "000000010000000000000001", 16 << 20},
		{"history", "00000001.history", "000000010000000000000001", 16 << 20},
		{"seg out of range", "000000010000000000000100", "000000010000000100000001", 16 << 20},
		{"bad size", "000000010000000000000001", "000000010000000000000002", 12345},
		{"too many", "000000010000000000000000", "000000010000400000000000", 16 << 20},
	}
	for _, tt := range bad {
		if r, err := wal.SegmentsBetween(mustName(tt.begin), mustName(tt.end), tt.size); err == nil {
			t.Errorf("%s: got %d names, want error", tt.name, len(r))
		}
	}
	// Exactly at the bound is allowed; one more is not.
	lo := wal.Name{TLI: 1}
	hi := wal.NameForSegNo(1, wal.MaxSegmentsBetween-1, 16<<20)
	if r, err := wal.SegmentsBetween(lo, hi, 16<<20); err != nil || len(r) != wal.MaxSegmentsBetween {
		t.Errorf("range of MaxSegmentsBetween: %d names, %v", len(r), err)
	}
	_, err = wal.SegmentsBetween(lo, hi.Next(16<<20), 16<<20)
	if !errors.Is(err, wal.ErrTooManySegments) {
		t.Errorf("range of MaxSegmentsBetween+1: error %v, want ErrTooManySegments", err)
	}
}
