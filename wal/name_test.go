package wal_test

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

func TestParseNameValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		want      wal.Name
		canonical string
		segment   string
		hashDir   string
	}{
		{
			in:        "000000010000000000000001",
			want:      wal.Name{Kind: wal.KindSegment, TLI: 1, Log: 0, Seg: 1},
			canonical: "000000010000000000000001",
			segment:   "000000010000000000000001",
			hashDir:   "0000000100000000",
		},
		{
			in:        "0000000A000000FF000000fe", // mixed case hex is accepted
			want:      wal.Name{Kind: wal.KindSegment, TLI: 10, Log: 0xFF, Seg: 0xFE},
			canonical: "0000000A000000FF000000FE",
			segment:   "0000000A000000FF000000FE",
			hashDir:   "0000000A000000FF",
		},
		{
			in:        "ffffffffffffffffffffffff",
			want:      wal.Name{Kind: wal.KindSegment, TLI: 0xFFFFFFFF, Log: 0xFFFFFFFF, Seg: 0xFFFFFFFF},
			canonical: "FFFFFFFFFFFFFFFFFFFFFFFF",
			segment:   "FFFFFFFFFFFFFFFFFFFFFFFF",
			hashDir:   "FFFFFFFFFFFFFFFF",
		},
		{
			in:        "000000020000001600000003.partial",
			want:      wal.Name{Kind: wal.KindPartial, TLI: 2, Log: 0x16, Seg: 3},
			canonical: "000000020000001600000003.partial",
			segment:   "000000020000001600000003",
			hashDir:   "0000000200000016",
		},
		{
			in:        "000000010000000000000002.00000028.backup",
			want:      wal.Name{Kind: wal.KindBackup, TLI: 1, Log: 0, Seg: 2, Offset: 0x28},
			canonical: "000000010000000000000002.00000028.backup",
			segment:   "000000010000000000000002",
			hashDir:   "0000000100000000",
		},
		{
			in:        "00000001000000000000000a.00d3a0b8.backup",
			want:      wal.Name{Kind: wal.KindBackup, TLI: 1, Seg: 0xA, Offset: 0xD3A0B8},
			canonical: "00000001000000000000000A.00D3A0B8.backup",
			segment:   "00000001000000000000000A",
			hashDir:   "0000000100000000",
		},
		{
			in:        "00000002.history",
			want:      wal.Name{Kind: wal.KindHistory, TLI: 2},
			canonical: "00000002.history",
			segment:   "",
			hashDir:   "",
		},
		{
			in:        "0000abcd.history",
			want:      wal.Name{Kind: wal.KindHistory, TLI: 0xABCD},
			canonical: "0000ABCD.history",
			segment:   "",
			hashDir:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := wal.ParseName(tt.in)
			if err != nil {
				t.Fatalf("ParseName(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseName(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.canonical {
				t.Errorf("String() = %q, want %q", s, tt.canonical)
			}
			if s := got.SegmentName(); s != tt.segment {
				t.Errorf("SegmentName() = %q, want %q", s, tt.segment)
			}
			if s := got.HashDir(); s != tt.hashDir {
				t.Errorf("HashDir() = %q, want %q", s, tt.hashDir)
			}
			if got.IsSegment() != (tt.want.Kind == wal.KindSegment) {
				t.Errorf("IsSegment() = %v for kind %v", got.IsSegment(), tt.want.Kind)
			}
			checks := map[wal.Kind]func(string) bool{
				wal.KindSegment: wal.IsSegmentName,
				wal.KindPartial: wal.IsPartialName,
				wal.KindBackup:  wal.IsBackupLabelName,
				wal.KindHistory: wal.IsHistoryName,
			}
			for k, f := range checks {
				if f(tt.in) != (k == tt.want.Kind) {
					t.Errorf("Is-%v(%q) = %v", k, tt.in, f(tt.in))
				}
			}
			if !wal.IsAnyWALName(tt.in) {
				t.Errorf("IsAnyWALName(%q) = false", tt.in)
			}
		})
	}
}

func TestParseNameInvalid(t *testing.T) {
	t.Parallel()
	bad := []string{
		"",
		"../000000010000000000000001",
		"wals/000000010000000000000001",
		"/000000010000000000000001",
		"00000001000000000000001",    // 23
		"0000000100000000000000011",  // 25
		"00000001000000000000000G",   // not hex
		"0000000100000000000000-1",   // sign
		" 00000001000000000000001",   // leading space, 24 chars
		"000000010000000000000001 ",  // trailing space
		"000000010000000000000001\n", // Python's $ would accept this; we do not
		"00000001000000000000000\x00",
		"000000010000000000000001\x00",
		"000000010000000000000001.partial.partial",
		"000000010000000000000001.PARTIAL",
		"000000010000000000000001.partia",
		"000000010000000000000001.gz",
		"000000010000000000000001.partial.gz",
		"000000010000000000000001.tmp",
		"000000010000000000000001.0000002G.backup",
		"000000010000000000000001.00000028.BACKUP",
		"000000010000000000000001_00000028.backup",
		"000000010000000000000001.00000028.backup.gz",
		"000000010000000000000001.0000028.backupx",
		"00000001.history.bak",
		"00000001.HISTORY",
		"0000001.history",
		"000000001.history",
		"0000000x.history",
		"00000001history.",
		"..",
		".",
		"000000010000000000000001/",
		"0x0000010000000000000001",
		"+00000010000000000000001",
		"０00000010000000000000001", // full-width digit (multi-byte)
	}
	for _, s := range bad {
		t.Run(strings.ToValidUTF8(s, "?"), func(t *testing.T) {
			t.Parallel()
			n, err := wal.ParseName(s)
			if err == nil {
				t.Fatalf("ParseName(%q) = %+v, want error", s, n)
			}
			var ne *wal.NameError
			if !errors.As(err, &ne) {
				t.Fatalf("error %T is not *NameError", err)
			}
			if ne.Name != s || ne.Reason == "" {
				t.Errorf("NameError = %+v, want Name=%q and a reason", ne, s)
			}
			if !errors.Is(err, wal.ErrInvalidName) {
				t.Errorf("errors.Is(err, ErrInvalidName) = false")
			}
			if !strings.Contains(err.Error(), "invalid WAL file name") {
				t.Errorf("message %q does not say what is wrong", err)
			}
			for _, f := range []func(string) bool{wal.IsAnyWALName, wal.IsSegmentName, wal.IsPartialName, wal.IsBackupLabelName, wal.IsHistoryName} {
				if f(s) {
					t.Errorf("an Is* predicate accepted %q", s)
				}
			}
		})
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[wal.Kind]string{
		wal.KindSegment: "segment", wal.KindPartial: "partial", wal.KindBackup: "backup",
		wal.KindHistory: "history", wal.Kind(42): "Kind(42)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestHistoryFileName(t *testing.T) {
	t.Parallel()
	for tli, want := range map[uint32]string{1: "00000001.history", 2: "00000002.history", 0x1F: "0000001F.history", 0xFFFFFFFF: "FFFFFFFF.history"} {
		if got := wal.HistoryFileName(tli); got != want {
			t.Errorf("HistoryFileName(%d) = %q, want %q", tli, got, want)
		}
	}
}

func TestSegmentAndPartial(t *testing.T) {
	t.Parallel()
	b := wal.Name{Kind: wal.KindBackup, TLI: 3, Log: 1, Seg: 2, Offset: 0x28}
	if got, want := b.Segment().String(), "000000030000000100000002"; got != want {
		t.Errorf("Segment() = %s, want %s", got, want)
	}
	if got, want := b.Partial().String(), "000000030000000100000002.partial"; got != want {
		t.Errorf("Partial() = %s, want %s", got, want)
	}
	h := wal.Name{Kind: wal.KindHistory, TLI: 3}
	if h.Segment() != h || h.Partial() != h {
		t.Errorf("Segment/Partial of a history name must return it unchanged")
	}
}

func TestValidateFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		segSize uint64
		ok      bool
	}{
		{"0000000100000000000000FF", 16 << 20, true},
		{"000000010000000000000100", 16 << 20, false}, // 256 segments per log: 00..FF
		{"000000010000000000000003", 1 << 30, true},
		{"000000010000000000000004", 1 << 30, false},
		{"000000010000000000000FFF", 1 << 20, true},
		{"000000010000000000001000", 1 << 20, false},
		{"000000010000000000000001.00FFFFFF.backup", 16 << 20, true},
		{"000000010000000000000001.01000000.backup", 16 << 20, false},
		{"00000001.history", 16 << 20, true},
		{"000000010000000000000001", 3 << 20, false}, // not a power of two
		{"000000010000000000000001", 0, false},
	}
	for _, tt := range tests {
		n, err := wal.ParseName(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		err = n.ValidateFor(tt.segSize)
		if (err == nil) != tt.ok {
			t.Errorf("%s.ValidateFor(%d) = %v, want ok=%v", tt.name, tt.segSize, err, tt.ok)
		}
	}
}

// TestCompareMatchesFileNameOrder checks the documented promise: sorting
// names with Compare gives the same order as sorting their file names.
func TestCompareMatchesFileNameOrder(t *testing.T) {
	t.Parallel()
	files := []string{
		"00000001.history",
		"000000010000000000000001",
		"000000010000000000000001.00000028.backup",
		"000000010000000000000001.00D3A0B8.backup",
		"000000010000000000000001.partial",
		"0000000100000000000000FF",
		"000000010000000100000000",
		"000000010000000100000000.partial",
		"00000002.history",
		"000000020000000000000000",
		"000000020000000100000000",
		"0000000A.history",
		"0000000A0000000000000001",
		"FFFFFFFF.history",
		"FFFFFFFFFFFFFFFFFFFFFFFF",
	}
	want := slices.Clone(files)
	sort.Strings(want)
	names := make([]wal.Name, 0, len(files))
	for i := len(files) - 1; i >= 0; i-- { // reversed input
		n, err := wal.ParseName(files[i])
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	slices.SortFunc(names, wal.Compare)
	for i, n := range names {
		if n.String() != want[i] {
			t.Fatalf("position %d: Compare order gives %s, file name order gives %s", i, n, want[i])
		}
	}
	for i := range names {
		for j := range names {
			got := wal.Compare(names[i], names[j])
			exp := strings.Compare(names[i].String(), names[j].String())
			if got != exp {
				t.Errorf("Compare(%s, %s) = %d, want %d", names[i], names[j], got, exp)
			}
		}
	}
}
