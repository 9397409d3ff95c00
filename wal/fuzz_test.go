package wal_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

// FuzzParseWALName: ParseName never panics; anything it accepts has a
// canonical form that parses back to the same Name, matches the input up
// to hex case, and agrees with the Is* predicates.
func FuzzParseWALName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000001", "0000000100000000000000ff.partial",
		"000000010000000000000002.00000028.backup", "00000002.history",
		"../000000010000000000000001", "000000010000000000000001.partial.partial",
		"00000001.history.bak", "", "\x00", "00000001000000000000001",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := wal.ParseName(s)
		if err != nil {
			var ne *wal.NameError
			if !errors.As(err, &ne) || ne.Name != s {
				t.Fatalf("ParseName(%q) error %v is not a *NameError for the input", s, err)
			}
			if wal.IsAnyWALName(s) {
				t.Fatalf("IsAnyWALName(%q) true but ParseName failed", s)
			}
			return
		}
		c := n.String()
		if !equalFoldHex(c, s) {
			t.Fatalf("ParseName(%q).String() = %q, differs beyond hex case", s, c)
		}
		back, err := wal.ParseName(c)
		if err != nil || back != n {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v, %v", s, n, c, back, err)
		}
		if wal.Compare(n, back) != 0 {
			t.Fatalf("Compare(n, n) != 0 for %q", s)
		}
		preds := map[wal.Kind]bool{
			wal.KindSegment: wal.IsSegmentName(s), wal.KindPartial: wal.IsPartialName(s),
			wal.KindBackup: wal.IsBackupLabelName(s), wal.KindHistory: wal.IsHistoryName(s),
		}
		for k, v := range preds {
			if v != (k == n.Kind) {
				t.Fatalf("predicate for %v on %q = %v (kind %v)", k, s, v, n.Kind)
			}
		}
		if n.Kind != wal.KindHistory {
			if len(n.SegmentName()) != 24 || n.HashDir() != n.SegmentName()[:16] {
				t.Fatalf("%q: SegmentName %q HashDir %q", s, n.SegmentName(), n.HashDir())
			}
			// Arithmetic must not panic and must stay consistent for any
			// segment number that is valid for the size.
			for _, size := range []uint64{1 << 20, 16 << 20, 1 << 30} {
				if n.ValidateFor(size) != nil {
					continue
				}
				no := n.SegNo(size)
				if got := wal.NameForSegNo(n.TLI, no, size); got != n.Segment() {
					t.Fatalf("%q size %d: NameForSegNo(SegNo) = %s", s, size, got)
				}
				if got := wal.NameForLSN(n.TLI, n.StartLSN(size), size); got != n.Segment() {
					t.Fatalf("%q size %d: NameForLSN(StartLSN) = %s", s, size, got)
				}
				_ = n.Next(size).Prev(size)
			}
		}
	})
}

// equalFoldHex reports whether a and b are equal ignoring ASCII case of
// the hex letters a-f only (suffixes must match exactly).
func equalFoldHex(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= y && y <= 'f' {
			y -= 'a' - 'A'
		}
		if 'a' <= x && x <= 'f' {
			x -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// FuzzParseLSN: never panics; accepted text round-trips through String.
func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "ffffffff/ffffffff", "1/", "/1", "123456789/0", " 0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := wal.ParseLSN(s)
		if err != nil {
			if !errors.Is(err, wal.ErrInvalidLSN) {
				t.Fatalf("ParseLSN(%q) error %v does not wrap ErrInvalidLSN", s, err)
			}
			return
		}
		back, err := wal.ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("round trip %q -> %#x -> %q -> %#x, %v", s, uint64(l), l, uint64(back), err)
		}
		for _, size := range []uint64{1 << 20, 16 << 20, 1 << 30} {
			n := wal.NameForLSN(1, l, size)
			if off := l.SegmentOffset(size); off >= size || uint64(n.StartLSN(size))+off != uint64(l) {
				t.Fatalf("size %d: %s is not %s + %#x", size, l, n, off)
			}
			if p := wal.NameForPrevLSN(1, l, size); l != 0 && !(p == n || p.Next(size) == n) {
				t.Fatalf("size %d: NameForPrevLSN(%s) = %s, NameForLSN = %s", size, l, p, n)
			}
		}
		// Invalid sizes must not panic.
		_ = wal.NameForLSN(1, l, 0)
		_ = wal.NameForPrevLSN(1, l, 3)
	})
}

// FuzzTimelineHistory: never panics; parse -> format -> parse gives the
// same entries; TimelineForLSN returns a timeline from the file or the
// target.
func FuzzTimelineHistory(f *testing.F) {
	for _, s := range []string{
		"1\t0/3000000\tno recovery target specified\n",
		"1\t0/3000000\tno recovery target specified\n\n2\t0/5000A28\tbefore 2024-01-02 10:00:00+00\n",
		"# comment\n  \n1 0/1 x\r\n",
		"1\t0/1\ta\tb\n2\t0/1\n",
		"2\t0/1\n1\t0/2\n",
		"1\n", "x", "",
	} {
		f.Add([]byte(s), uint64(0x3000000))
	}
	f.Fuzz(func(t *testing.T, data []byte, lsn uint64) {
		entries, err := wal.ParseHistory(data)
		if err != nil {
			if !errors.Is(err, wal.ErrInvalidHistory) {
				t.Fatalf("error %v does not wrap ErrInvalidHistory", err)
			}
			return
		}
		out := wal.FormatHistory(entries)
		again, err := wal.ParseHistory(out)
		if err != nil {
			t.Fatalf("reparse of %q: %v", out, err)
		}
		if len(entries) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(entries, again) {
			t.Fatalf("round trip:\n%+v\n%q\n%+v", entries, out, again)
		}
		const target = ^uint32(0)
		got := wal.TimelineForLSN(entries, target, wal.LSN(lsn))
		found := got == target
		for _, e := range entries {
			found = found || e.ParentTLI == got
		}
		if !found {
			t.Fatalf("TimelineForLSN returned %d, not in history", got)
		}
	})
}

// FuzzPageHeader: decoding and validating arbitrary bytes never panics.
func FuzzPageHeader(f *testing.F) {
	f.Add(make([]byte, 40), uint64(0), uint64(16<<20))
	f.Fuzz(func(t *testing.T, b []byte, sysid, segSize uint64) {
		h, err := wal.ParsePageHeader(b)
		if err != nil {
			return
		}
		_ = h.Validate(wal.Name{TLI: h.TLI, Log: 0, Seg: 1}, sysid, segSize)
	})
}

func BenchmarkParseName(b *testing.B) {
	names := []string{
		"0000000100000016000000B3",
		"0000000100000016000000B3.partial",
		"0000000100000016000000B3.00D3A0B8.backup",
		"00000002.history",
		"not-a-wal-file",
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = wal.ParseName(names[i%len(names)])
	}
}

func BenchmarkParseSegmentName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wal.ParseName("0000000100000016000000B3"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNameString(b *testing.B) {
	n := wal.Name{TLI: 1, Log: 0x16, Seg: 0xB3}
	b.ReportAllocs()
	for b.Loop() {
		_ = n.String()
	}
}
