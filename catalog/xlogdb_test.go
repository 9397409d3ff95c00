package catalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/lock"
)

func TestParseXLogLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    WALInfo
		line    string // canonical 5-field form
		wantErr bool
	}{
		{in: "000000010000000000000001\t16777216\t1700000000.123456\tNone\tNone\n",
			want: WALInfo{"000000010000000000000001", 16777216, 1700000000.123456, "", ""}},
		{in: "000000010000000000000002\t4213371\t1700000060.0\tgzip\tgpg",
			want: WALInfo{"000000010000000000000002", 4213371, 1700000060, "gzip", "gpg"},
			line: "000000010000000000000002\t4213371\t1700000060.0\tgzip\tgpg\n"},
		{in: "000000010000000000000001 16777216 1400000000", want: WALInfo{"000000010000000000000001", 16777216, 1400000000, "", ""},
			line: "000000010000000000000001\t16777216\t1400000000.0\tNone\tNone\n"},
		{in: "000000010000000000000001\t5\t1.5\tbzip2\n", want: WALInfo{"000000010000000000000001", 5, 1.5, "bzip2", ""},
			line: "000000010000000000000001\t5\t1.5\tbzip2\tNone\n"},
		{in: "a\t1", wantErr: true},
		{in: "a 1 2 3 4 5", wantErr: true},
		{in: "a x 2", wantErr: true},
		{in: "a 1 y", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseXLogLine(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseXLogLine(%q) error = %v", tc.in, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidXLogLine) {
				t.Errorf("error %v does not match ErrInvalidXLogLine", err)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("ParseXLogLine(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		want := tc.line
		if want == "" {
			want = tc.in
		}
		if l := got.Line(); l != want {
			t.Errorf("Line() = %q, want %q", l, want)
		}
	}
}

func newXLogLayout(t testing.TB) Layout {
	t.Helper()
	root := t.TempDir()
	l := NewLayout("pg1", filepath.Join(root, "pg1"), filepath.Join(root, "locks"))
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	return l
}

func scanAll(t testing.TB, x *XLogDB) []WALInfo {
	t.Helper()
	var out []WALInfo
	if err := x.Scan(context.Background(), func(w WALInfo) error { out = append(out, w); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestXLogDBFixtures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dir, file string
		n         int
	}{
		{"testdata/xlogdb/current", "pg1-xlog.db", 5},
		{"testdata/xlogdb/legacy", "xlog.db", 4},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			l := newXLogLayout(t)
			copyTree(t, tc.dir, l.WalsDir)
			x := OpenXLogDB(l)
			if got := filepath.Base(x.Path()); got != tc.file {
				t.Errorf("Path = %s, want %s", got, tc.file)
			}
			orig, _ := os.ReadFile(filepath.Join(tc.dir, tc.file))
			infos := scanAll(t, x)
			if len(infos) != tc.n {
				t.Fatalf("scanned %d entries, want %d", len(infos), tc.n)
			}
			// Rewrite that keeps everything leaves the bytes alone, but
			// for five-field lines in a Barman 3.4 catalog, which it
			// puts back in the four fields Barman 3.4 parses.
			removed, err := x.Rewrite(t.Context(), func(WALInfo) bool { return true })
			if err != nil || removed != 0 {
				t.Fatalf("Rewrite = %d, %v", removed, err)
			}
			cur, _ := os.ReadFile(x.Path())
			want := orig
			if tc.n == 4 {
				want = bytes.Replace(orig, []byte("000000010000000000000004 16777216 1400000180.75 bzip2 None\n"), []byte("000000010000000000000004\t16777216\t1400000180.75\tbzip2\n"), 1)
			}
			if !bytes.Equal(cur, want) {
				t.Errorf("keep-all Rewrite:\n%q\nwant\n%q", cur, want)
			}
			// Replace writes Barman's 5-field form; for the current fixture
			// that is byte-identical.
			if err := x.Replace(t.Context(), infos); err != nil {
				t.Fatal(err)
			}
			cur, _ = os.ReadFile(x.Path())
			if tc.n == 5 && !bytes.Equal(cur, orig) {
				t.Errorf("Replace output differs:\n%s\nwant\n%s", cur, orig)
			}
			if again := scanAll(t, x); !reflect.DeepEqual(again, infos) {
				t.Errorf("re-scan = %+v, want %+v", again, infos)
			}
		})
	}
}

func TestXLogDBAppendAndTornLine(t *testing.T) {
	t.Parallel()
	l := newXLogLayout(t)
	x := OpenXLogDB(l)
	a := WALInfo{Name: "000000010000000000000001", Size: 16777216, Time: 1700000000.5}
	b := WALInfo{Name: "000000010000000000000002", Size: 100, Time: 1700000001, Compression: "gzip"}
	if err := x.Append(t.Context(), a, b); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash in the middle of the next append.
	f, err := os.OpenFile(x.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("000000010000000000000003\t16777")
	f.Close()
	if got := scanAll(t, x); !reflect.DeepEqual(got, []WALInfo{a, b}) {
		t.Errorf("Scan with torn tail = %+v", got)
	}
	c := WALInfo{Name: "000000010000000000000003", Size: 16777216, Time: 1700000002}
	if err := x.Append(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(x.Path())
	want := a.Line() + b.Line() + c.Line()
	if string(data) != want {
		t.Errorf("after repair:\n%q\nwant\n%q", data, want)
	}
	// A file that is a single torn fragment is truncated to empty first.
	if err := os.WriteFile(x.Path(), []byte("0000000100"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := x.Append(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(x.Path())
	if string(data) != a.Line() {
		t.Errorf("after full-fragment repair: %q", data)
	}
	for _, bad := range []WALInfo{{Name: ""}, {Name: "a b"}, {Name: "x", Size: -1}, {Name: "x", Compression: "None"}, {Name: "x", Encryption: "a\tb"}} {
		if err := x.Append(t.Context(), bad); !errors.Is(err, ErrInvalidXLogLine) {
			t.Errorf("Append(%+v) = %v, want ErrInvalidXLogLine", bad, err)
		}
	}
}

func TestXLogDBTornRepairLongFile(t *testing.T) {
	t.Parallel()
	l := newXLogLayout(t)
	x := OpenXLogDB(l)
	// A torn fragment longer than one read chunk, after many lines.
	var buf bytes.Buffer
	for i := range 3000 {
		buf.WriteString(WALInfo{Name: walName(1, uint64(i)), Size: 1, Time: 1}.Line())
	}
	keep := buf.Len()
	buf.WriteString(strings.Repeat("x", 200<<10))
	if err := os.WriteFile(x.Path(), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := x.Append(t.Context(), WALInfo{Name: walName(1, 5000), Size: 1, Time: 1}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(x.Path())
	if want := int64(keep + len(WALInfo{Name: walName(1, 5000), Size: 1, Time: 1}.Line())); fi.Size() != want {
		t.Errorf("size %d, want %d", fi.Size(), want)
	}
	if got := len(scanAll(t, x)); got != 3001 {
		t.Errorf("%d entries, want 3001", got)
	}
}

func walName(tli uint32, segno uint64) string {
	n := []byte("000000000000000000000000")
	put := func(off int, v uint32) {
		const hex = "0123456789ABCDEF"
		for i := 7; i >= 0; i-- {
			n[off+i] = hex[v&0xF]
			v >>= 4
		}
	}
	put(0, tli)
	put(8, uint32(segno/256))
	put(16, uint32(segno%256))
	return string(n)
}

func TestXLogDBReadFrom(t *testing.T) {
	t.Parallel()
	l := newXLogLayout(t)
	copyTree(t, "testdata/xlogdb/current", l.WalsDir)
	x := OpenXLogDB(l)
	all, err := x.ReadFrom(t.Context(), 0)
	if err != nil || len(all) != 5 {
		t.Fatalf("ReadFrom(0) = %d entries, %v", len(all), err)
	}
	data, _ := os.ReadFile(x.Path())
	for _, e := range all {
		if !bytes.HasPrefix(data[e.Offset:], []byte(e.Name+"\t")) {
			t.Errorf("offset %d does not start line %s", e.Offset, e.Name)
		}
	}
	tail, err := x.ReadFrom(t.Context(), all[3].Offset)
	if err != nil || len(tail) != 2 || tail[0] != all[3] || tail[1] != all[4] {
		t.Errorf("ReadFrom(%d) = %+v, %v", all[3].Offset, tail, err)
	}
	end, err := x.ReadFrom(t.Context(), int64(len(data)))
	if err != nil || len(end) != 0 {
		t.Errorf("ReadFrom(end) = %+v, %v", end, err)
	}
	for _, bad := range []int64{-1, 3, int64(len(data)) + 1} {
		if _, err := x.ReadFrom(t.Context(), bad); !errors.Is(err, ErrBadOffset) {
			t.Errorf("ReadFrom(%d) = %v, want ErrBadOffset", bad, err)
		}
	}
}

func TestXLogDBRewrite(t *testing.T) {
	t.Parallel()
	l := newXLogLayout(t)
	copyTree(t, "testdata/xlogdb/legacy", l.WalsDir)
	x := OpenXLogDB(l)
	removed, err := x.Rewrite(t.Context(), func(w WALInfo) bool { return w.Name != "000000010000000000000002" })
	if err != nil || removed != 1 {
		t.Fatalf("Rewrite = %d, %v", removed, err)
	}
	data, _ := os.ReadFile(filepath.Join(l.WalsDir, "xlog.db"))
	// Kept lines are copied verbatim, old 3- and 4-field forms included;
	// a five-field line gets the four fields Barman 3.4 parses.
	want := "000000010000000000000001\t16777216\t1400000000.0\n000000010000000000000003\t4213370\t1400000120.25\tNone\n000000010000000000000004\t16777216\t1400000180.75\tbzip2\n"
	if string(data) != want {
		t.Errorf("after Rewrite:\n%q\nwant\n%q", data, want)
	}
	fi, _ := os.Stat(filepath.Join(l.WalsDir, "xlog.db"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(l.WalsDir); len(entries) != 1 {
		t.Errorf("leftover temp files: %v", entries)
	}
	// A malformed line stops a rewrite instead of being dropped silently.
	os.WriteFile(x.Path(), []byte("ok 1 1\nbroken\n"), 0o600)
	if _, err := x.Rewrite(t.Context(), func(WALInfo) bool { return true }); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("Rewrite over a bad line = %v", err)
	}
}

func writeFile(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestXLogDBRebuild(t *testing.T) {
	t.Parallel()
	l := newXLogLayout(t)
	w := l.WalsDir
	mt := time.Unix(1700000000, 250000000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte{0}, 1000))
	zw.Close()
	writeFile(t, filepath.Join(w, "0000000100000000", "000000010000000000000002"), gz.Bytes(), mt)
	writeFile(t, filepath.Join(w, "0000000100000000", "000000010000000000000001"), []byte("plain WAL"), mt)
	writeFile(t, filepath.Join(w, "0000000100000000", "000000010000000000000002.00000028.backup"), []byte("START WAL"), mt)
	writeFile(t, filepath.Join(w, "0000000100000000", "000000010000000000000003.partial"), []byte("partial"), mt)
	writeFile(t, filepath.Join(w, "0000000100000000", "junk"), []byte("junk"), mt)
	writeFile(t, filepath.Join(w, "0000000200000000", "000000020000000000000003"), []byte("\x28\xb5\x2f\xfdzstd"), mt)
	writeFile(t, filepath.Join(w, "00000002.history"), []byte("1\t0/3000000\tno recovery target specified\n"), mt)
	writeFile(t, filepath.Join(w, "notahashdir", "000000010000000000000009"), []byte("x"), mt)
	writeFile(t, filepath.Join(w, "000000010000000000000007"), []byte("segment at root"), mt)
	writeFile(t, filepath.Join(w, "sync-wals.info"), []byte("x\t0"), mt)

	x := OpenXLogDB(l)
	// The catalog is missing: the first access rebuilds it.
	got := scanAll(t, x)
	want := []WALInfo{
		{"000000010000000000000001", 9, 1700000000.25, "", ""},
		{"000000010000000000000002", int64(gz.Len()), 1700000000.25, "gzip", ""},
		{"000000010000000000000002.00000028.backup", 9, 1700000000.25, "", ""},
		// Name order puts "00000002.history" before the "0000000200000000" dir.
		{"00000002.history", 41, 1700000000.25, "", ""},
		{"000000020000000000000003", 8, 1700000000.25, "zstd", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rebuilt:\n%+v\nwant\n%+v", got, want)
	}
	// Explicit Rebuild replaces whatever the catalog says.
	if err := x.Replace(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := x.Rebuild(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, x); !reflect.DeepEqual(got, want) {
		t.Errorf("after Rebuild: %+v", got)
	}
	// Appending to a missing catalog rebuilds it without duplicating the
	// WAL that is already on disk.
	os.Remove(x.Path())
	extra := WALInfo{Name: "000000020000000000000004", Size: 1, Time: 2}
	if err := x.Append(t.Context(), WALInfo{Name: "000000020000000000000003", Size: 8, Time: 1}, extra); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, x); !reflect.DeepEqual(got, append(slices.Clone(want), extra)) {
		t.Errorf("append to missing catalog: %+v", got)
	}
}

func TestXLogDBLockIsBlocking(t *testing.T) {
	t.Parallel()
	l := newXLogLayout(t)
	x := OpenXLogDB(l)
	held, err := lock.TryLock(l.XLogDBLockPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err = x.Append(ctx, WALInfo{Name: "000000010000000000000001", Size: 1, Time: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Append with the lock held elsewhere = %v, want deadline exceeded", err)
	}
	held.Release()
	if err := x.Append(t.Context(), WALInfo{Name: "000000010000000000000001", Size: 1, Time: 1}); err != nil {
		t.Errorf("Append after release: %v", err)
	}
}

func TestXLogDBScanStops(t *testing.T) {
	t.Parallel()
	l := newXLogLayout(t)
	copyTree(t, "testdata/xlogdb/current", l.WalsDir)
	x := OpenXLogDB(l)
	stop := errors.New("stop")
	n := 0
	err := x.Scan(t.Context(), func(WALInfo) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Scan = %v after %d calls", err, n)
	}
	os.WriteFile(x.Path(), []byte("000000010000000000000001 1 1\n\nbad line here now x\n"), 0o600)
	err = x.Scan(t.Context(), func(WALInfo) error { return nil })
	if !errors.Is(err, ErrInvalidXLogLine) || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), x.Path()) {
		t.Errorf("Scan over a bad line = %v", err)
	}
}

func TestSniffCompression(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []byte
		want string
	}{
		{[]byte{0x1f, 0x8b, 8, 0}, "gzip"},
		{[]byte("BZh91AY"), "bzip2"},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0}, "zstd"},
		{[]byte{0x04, 0x22, 0x4d, 0x18, 0x64}, "lz4"},
		{[]byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0}, "xz"},
		{[]byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x01}, ""},
		{[]byte("\xff\x06\x00\x00sNaPpY"), "snappy"},
		{[]byte{0x10, 0xd1, 0x06, 0x00}, ""}, // WAL page magic
		{[]byte{0x1f}, ""},
		{nil, ""},
	}
	for _, tc := range tests {
		got, err := SniffCompression(bytes.NewReader(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("SniffCompression(%x) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
