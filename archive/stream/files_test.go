package stream

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

const smallSeg = 1 << 20 // 1 MiB segments keep the fixtures small

func writeFiles(t *testing.T, dir string, files map[string]int) {
	t.Helper()
	for name, size := range files {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func mustName(t *testing.T, s string) wal.Name {
	t.Helper()
	n, err := wal.ParseName(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFindNewest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]int
		want  string // "" = none
	}{
		{"empty", nil, ""},
		{"only history and junk", map[string]int{"00000002.history": 10, "foo": 1, "000000010000000000000003.tmp": smallSeg}, ""},
		{"segments", map[string]int{"000000010000000000000001": smallSeg, "000000010000000000000002": smallSeg}, "000000010000000000000002"},
		{"partial after segment", map[string]int{"000000010000000000000002": smallSeg, "000000010000000000000003.partial": smallSeg}, "000000010000000000000003.partial"},
		{"short segment ignored", map[string]int{"000000010000000000000002": smallSeg, "000000010000000000000003": 100}, "000000010000000000000002"},
		{"higher timeline same segment", map[string]int{"000000010000000000000003.partial": smallSeg, "000000020000000000000003.partial": 0}, "000000020000000000000003.partial"},
		{"segment number beats timeline", map[string]int{"000000020000000000000003": smallSeg, "000000010000000000000004.partial": smallSeg}, "000000010000000000000004.partial"},
		{"complete beats leftover partial", map[string]int{"000000010000000000000003.partial": smallSeg, "000000010000000000000003": smallSeg}, "000000010000000000000003"},
		{"log carry", map[string]int{"0000000100000000000000FF": smallSeg, "000000010000000100000000.partial": 7}, "000000010000000100000000.partial"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			nf, ok, err := findNewest(dir, smallSeg)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if ok {
				got = nf.Name.String()
			}
			if got != tc.want {
				t.Errorf("findNewest = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFixBadPartial(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		files    map[string]int
		fixed    string // file expected truncated to 0
		untouchd map[string]int
	}{
		{"good full", map[string]int{"000000010000000000000003.partial": smallSeg}, "", map[string]int{"000000010000000000000003.partial": smallSeg}},
		{"good empty", map[string]int{"000000010000000000000003.partial": 0}, "", nil},
		{"bad newest", map[string]int{"000000010000000000000003.partial": 4096, "000000010000000000000002.partial": 10},
			"000000010000000000000003.partial", map[string]int{"000000010000000000000002.partial": 10}},
		{"newest is a segment", map[string]int{"000000010000000000000003": smallSeg, "000000010000000000000002.partial": 10},
			"", map[string]int{"000000010000000000000002.partial": 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			fixed, err := fixBadPartial(dir, smallSeg)
			if err != nil {
				t.Fatal(err)
			}
			if fixed != (tc.fixed != "") {
				t.Errorf("fixed = %v, want %v", fixed, tc.fixed != "")
			}
			if tc.fixed != "" {
				if fi, err := os.Stat(filepath.Join(dir, tc.fixed)); err != nil || fi.Size() != 0 {
					t.Errorf("%s not truncated: %v %v", tc.fixed, fi, err)
				}
			}
			for name, size := range tc.untouchd {
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() != int64(size) {
					t.Errorf("%s changed: %v %v", name, fi, err)
				}
			}
		})
	}
}

func TestResetDir(t *testing.T) {
	t.Parallel()
	current := "000000010000000000000008"
	tests := []struct {
		name      string
		files     map[string]int
		restart   string
		wantErr   error
		changed   bool
		wantFiles []string
		gone      []string
	}{
		{name: "empty is a no-op", restart: "000000010000000000000005"},
		{name: "already at restart", files: map[string]int{"000000010000000000000005.partial": smallSeg}, restart: "000000010000000000000005",
			wantFiles: []string{"000000010000000000000005.partial"}},
		{name: "ahead of server", files: map[string]int{"000000010000000000000009.partial": smallSeg}, restart: "000000010000000000000005",
			wantErr: ErrAheadOfServer},
		{name: "newer timeline ahead", files: map[string]int{"000000020000000000000006": smallSeg}, restart: "000000010000000000000005",
			wantErr: ErrAheadOfServer},
		{name: "behind: new partial", files: map[string]int{"000000010000000000000003": smallSeg, "000000010000000000000004.partial": smallSeg},
			restart: "000000010000000000000006", changed: true,
			wantFiles: []string{"000000010000000000000003", "000000010000000000000006.partial"}, gone: []string{"000000010000000000000004.partial"}},
		{name: "newest complete kept", files: map[string]int{"000000010000000000000004": smallSeg},
			restart: "000000010000000000000002", changed: true,
			wantFiles: []string{"000000010000000000000004", "000000010000000000000002.partial"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := catalog.NewLayout("pg", t.TempDir(), t.TempDir())
			if err := l.MakeDirs(); err != nil {
				t.Fatal(err)
			}
			writeFiles(t, l.StreamingDir, tc.files)
			o := Options{Server: "pg", Layout: l, Logger: slog.New(slog.DiscardHandler)}
			res, err := resetDir(o, mustName(t, current), mustName(t, tc.restart), smallSeg)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("resetDir error = %v, want %v", err, tc.wantErr)
			}
			if res.Changed != tc.changed {
				t.Errorf("changed = %v, want %v", res.Changed, tc.changed)
			}
			for _, f := range tc.wantFiles {
				if _, err := os.Stat(filepath.Join(l.StreamingDir, f)); err != nil {
					t.Errorf("missing %s: %v", f, err)
				}
			}
			for _, f := range tc.gone {
				if _, err := os.Stat(filepath.Join(l.StreamingDir, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s should be gone: %v", f, err)
				}
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"16MB", 16 << 20, true}, {"1GB", 1 << 30, true}, {"1024kB", 1 << 20, true},
		{"16777216", 16 << 20, true}, {" 64MB ", 64 << 20, true},
		{"15MB", 0, false}, {"2GB", 0, false}, {"512kB", 0, false}, {"", 0, false}, {"MB", 0, false}, {"-16MB", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseEndOfTimeline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   [][]byte
		want endOfTimeline
		ok   bool
	}{
		{[][]byte{[]byte("2"), []byte("0/5011FC8")}, endOfTimeline{NextTLI: 2, SwitchAt: 0x5011FC8}, true},
		{[][]byte{[]byte("0"), []byte("0/1")}, endOfTimeline{}, false},
		{[][]byte{[]byte("x"), []byte("0/1")}, endOfTimeline{}, false},
		{[][]byte{[]byte("2"), []byte("nope")}, endOfTimeline{}, false},
		{[][]byte{[]byte("2")}, endOfTimeline{}, false},
		{[][]byte{[]byte("4294967296"), []byte("0/1")}, endOfTimeline{}, false},
	}
	for _, tc := range tests {
		got, err := parseEndOfTimeline(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseEndOfTimeline(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"16MB", "1GB", "1024kB", "16777216", "", "kB", "99999999999999999999GB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && wal.ValidateSegmentSize(n) != nil {
			t.Fatalf("parseSize(%q) = %d, not a valid segment size", s, n)
		}
	})
}

func FuzzParseEndOfTimeline(f *testing.F) {
	f.Add("2", "0/5011FC8")
	f.Add("0", "")
	f.Add("4294967295", "FFFFFFFF/FFFFFFFF")
	f.Fuzz(func(t *testing.T, tli, lsn string) {
		r, err := parseEndOfTimeline([][]byte{[]byte(tli), []byte(lsn)})
		if err == nil && r.NextTLI == 0 {
			t.Fatalf("accepted timeline 0 from %q", tli)
		}
	})
}
