package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
)

func TestArchiveCompressions(t *testing.T) {
	t.Parallel()
	for _, comp := range []string{CompressionNone, CompressionGzip, CompressionZstd, CompressionLZ4} {
		t.Run("compression="+comp, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mib, comp)
			in := e.opts.Layout.IncomingDir
			want := map[string][]byte{}
			for i := uint64(1); i <= 5; i++ {
				name := segName(1, i, mib)
				want[name] = segment(name, mib, testSysID, 1)
				put(t, in, name, want[name])
			}
			hist := []byte("1\t0/3000000\tno recovery target specified\n")
			put(t, in, "00000002.history", hist)
			want["00000002.history"] = hist
			label := []byte("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n")
			put(t, in, "000000010000000000000002.00000028.backup", label)
			want["000000010000000000000002.00000028.backup"] = label

			rep := e.archive()
			if len(rep.Archived) != 7 || len(rep.Unknown) != 0 {
				t.Fatalf("report %+v", rep)
			}
			if got := listDir(t, in); len(got) != 0 {
				t.Errorf("incoming not empty: %v", got)
			}
			// Barman's output: header, then one TAB line per file, in name order.
			wantOut := "Processing xlog segments from file archival for pg\n"
			names := slices.Sorted(mapsKeys(want))
			for _, n := range names {
				wantOut += "\t" + n + "\n"
			}
			if e.out.String() != wantOut {
				t.Errorf("output:\n%s\nwant:\n%s", e.out, wantOut)
			}
			if got := e.xlogNames(); !slices.Equal(got, names) {
				t.Errorf("xlog.db names %v, want %v", got, names)
			}
			for _, w := range e.xlogInfos() {
				if w.Compression != comp {
					t.Errorf("%s: compression %q, want %q", w.Name, w.Compression, comp)
				}
				// Time is the source mtime (put sets it an hour back).
				if age := time.Since(time.Unix(int64(w.Time), 0)); age < 59*time.Minute || age > 61*time.Minute {
					t.Errorf("%s: time %v is not the source mtime", w.Name, w.Time)
				}
			}
			for name, data := range want {
				if got := e.get(name, GetOptions{}); !bytes.Equal(got, data) {
					t.Errorf("GetWAL %s: %d bytes differ from the original %d", name, len(got), len(data))
				}
			}
			e.checkRebuildAgrees()
			// A second run has nothing to do and prints nothing.
			e.out.Reset()
			if rep := e.archive(); len(rep.Archived)+len(rep.Dropped) != 0 || e.out.Len() != 0 {
				t.Errorf("second run: %+v, output %q", rep, e.out)
			}
		})
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestArchiveBadInput: every invalid file ends in errors/ (or stays in
// place while it may still be written), never in wals/, and is never
// deleted.
func TestArchiveBadInput(t *testing.T) {
	t.Parallel()
	name := segName(1, 3, mib)
	good := segment(name, mib, testSysID, 7)
	patch := func(off int, v uint64, size int) []byte {
		b := bytes.Clone(good)
		switch size {
		case 4:
			binary.LittleEndian.PutUint32(b[off:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(b[off:], v)
		}
		return b
	}
	cases := []struct {
		name    string
		file    string
		data    []byte
		fresh   bool // mtime now instead of an hour ago
		dir     bool
		symlink bool
		kind    string // errors/ kind, "" = deferred (left in place)
	}{
		{name: "short segment", file: name, data: good[:mib/2], kind: "unknown"},
		{name: "short segment being written", file: name, data: good[:mib/2], fresh: true},
		{name: "long segment", file: name, data: append(bytes.Clone(good), 0), kind: "unknown"},
		{name: "empty segment", file: name, data: nil, kind: "unknown"},
		{name: "wrong timeline", file: name, data: patch(4, 2, 4), kind: "unknown"},
		{name: "wrong pageaddr", file: name, data: patch(8, 5*mib, 8), kind: "unknown"},
		{name: "wrong systemid", file: name, data: patch(24, 42, 8), kind: "unknown"},
		{name: "wrong segment size", file: name, data: patch(32, 16*mib, 4), kind: "unknown"},
		{name: "bad magic", file: name, data: patch(0, 0x1234, 4), kind: "unknown"},
		{name: "zeros", file: name, data: make([]byte, mib), kind: "unknown"},
		{name: "segment number out of range", file: "000000010000000000001000", data: good, kind: "unknown"},
		{name: "non-WAL name", file: "notes.txt", data: []byte("hello"), kind: "unknown"},
		{name: "lower-case name", file: strings.ToLower("0000000A0000000000000003"), data: good, kind: "unknown"},
		{name: "compressed suffix", file: name + ".gz", data: good, kind: "unknown"},
		{name: "corrupt gzip", file: name, data: []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3}, kind: "unknown"},
		{name: "directory", file: name, dir: true, kind: "unknown"},
		{name: "symlink", file: name, symlink: true, kind: "unknown"},
		{name: "empty history", file: "00000002.history", data: nil, kind: "unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mib, CompressionZstd)
			e.opts.SettleTime = time.Minute
			in := e.opts.Layout.IncomingDir
			p := filepath.Join(in, tc.file)
			switch {
			case tc.dir:
				if err := os.Mkdir(p, 0o700); err != nil {
					t.Fatal(err)
				}
			case tc.symlink:
				target := put(t, e.dir, "target", good)
				if err := os.Symlink(target, p); err != nil {
					t.Fatal(err)
				}
			case tc.fresh:
				if err := os.WriteFile(p, tc.data, 0o600); err != nil {
					t.Fatal(err)
				}
			default:
				put(t, in, tc.file, tc.data)
			}
			rep := e.archive()
			if len(rep.Archived) != 0 {
				t.Fatalf("archived an invalid file: %+v", rep)
			}
			if n := len(e.xlogNames()); n != 0 {
				t.Errorf("xlog.db has %d lines", n)
			}
			walsFiles := 0
			_ = filepath.WalkDir(e.opts.Layout.WalsDir, func(path string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && !strings.HasSuffix(path, "-xlog.db") {
					walsFiles++
				}
				return nil
			})
			if walsFiles != 0 {
				t.Errorf("%d files in wals/", walsFiles)
			}
			errs := listDir(t, e.opts.Layout.ErrorsDir)
			if tc.kind == "" {
				if len(rep.Deferred) != 1 || len(errs) != 0 {
					t.Fatalf("want deferred, got %+v errors=%v", rep, errs)
				}
				if _, err := os.Lstat(p); err != nil {
					t.Fatalf("deferred file gone: %v", err)
				}
				return
			}
			want := tc.file + ".20250304T050607Z." + tc.kind
			if !slices.Equal(errs, []string{want}) {
				t.Fatalf("errors/ = %v, want [%s] (report %+v)", errs, want, rep)
			}
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("source still in incoming: %v", err)
			}
			if !tc.dir && !tc.symlink {
				got, err := os.ReadFile(filepath.Join(e.opts.Layout.ErrorsDir, want))
				if err != nil || !bytes.Equal(got, tc.data) {
					t.Errorf("errors/ copy differs from the source (%v)", err)
				}
			}
			counts, err := ArchiverErrors(e.opts.Layout)
			if wantN := 1 - btoi(tc.dir); err != nil || counts[tc.kind] != wantN {
				t.Errorf("ArchiverErrors = %v, %v", counts, err)
			}
		})
	}
}

func TestArchiveDuplicates(t *testing.T) {
	t.Parallel()
	name := segName(1, 1, mib)
	orig := segment(name, mib, testSysID, 1)
	other := segment(name, mib, testSysID, 2)
	for _, tc := range []struct {
		name    string
		second  []byte
		comp2   string // compression of the second run
		wantDup bool
	}{
		{"identical plain", orig, CompressionNone, false},
		{"identical, stored compressed", orig, CompressionLZ4, false},
		{"different content", other, CompressionNone, true},
		{"different content compressed", other, CompressionZstd, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mib, CompressionZstd)
			put(t, e.opts.Layout.IncomingDir, name, orig)
			e.archive()
			stored, _ := os.ReadFile(e.opts.Layout.WALPath(mustName(name)))
			e.opts.Compression = tc.comp2
			put(t, e.opts.Layout.IncomingDir, name, tc.second)
			e.out.Reset()
			rep := e.archive()
			if got := listDir(t, e.opts.Layout.IncomingDir); len(got) != 0 {
				t.Errorf("incoming not empty: %v", got)
			}
			after, _ := os.ReadFile(e.opts.Layout.WALPath(mustName(name)))
			if !bytes.Equal(stored, after) {
				t.Error("stored copy was modified")
			}
			if got := e.xlogNames(); len(got) != 1 {
				t.Errorf("xlog.db = %v, want one line", got)
			}
			errs := listDir(t, e.opts.Layout.ErrorsDir)
			if tc.wantDup {
				if len(rep.Duplicates) != 1 || len(errs) != 1 || !strings.HasSuffix(errs[0], ".duplicate") {
					t.Fatalf("report %+v, errors %v", rep, errs)
				}
				if !strings.Contains(e.out.String(), "\tError: "+name+" is already present in server pg. File moved to errors directory.\n") {
					t.Errorf("output %q", e.out)
				}
				got, _ := os.ReadFile(filepath.Join(e.opts.Layout.ErrorsDir, errs[0]))
				if !bytes.Equal(got, tc.second) {
					t.Error("errors/ copy differs from the duplicate")
				}
			} else if len(rep.Dropped) != 1 || len(errs) != 0 {
				t.Fatalf("report %+v, errors %v", rep, errs)
			}
			if got := e.get(name, GetOptions{}); !bytes.Equal(got, orig) {
				t.Error("GetWAL returns other bytes than the first archived copy")
			}
		})
	}
}

// TestArchiveCrashLeftovers reproduces what a kill -9 can leave: a stored
// file whose source is still in incoming/ and whose xlog.db line is
// missing; and a pending temp file in the hash directory.
func TestArchiveCrashLeftovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	name := segName(1, 9, mib)
	data := segment(name, mib, testSysID, 3)
	dst := e.opts.Layout.WALPath(mustName(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Dir(dst), name, data)
	temp := put(t, filepath.Dir(dst), "."+segName(1, 10, mib)+"123456", data[:100])
	put(t, e.opts.Layout.IncomingDir, name, data)
	put(t, e.opts.Layout.IncomingDir, segName(1, 10, mib), segment(segName(1, 10, mib), mib, testSysID, 3))
	rep := e.archive()
	if len(rep.Dropped) != 1 || len(rep.Archived) != 1 {
		t.Fatalf("report %+v", rep)
	}
	if got := e.xlogNames(); !slices.Equal(got, []string{name, segName(1, 10, mib)}) {
		t.Errorf("xlog.db = %v", got)
	}
	if _, err := os.Stat(temp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file not swept: %v", err)
	}
	e.checkRebuildAgrees()
}

func mustName(s string) wal.Name {
	n, err := wal.ParseName(s)
	if err != nil {
		panic(err)
	}
	return n
}

func TestStreamingArchiver(t *testing.T) {
	t.Parallel()
	s := func(i uint64) string { return segName(1, i, mib) }
	for _, tc := range []struct {
		name      string
		files     []string
		batch     int
		archived  []string
		heldBack  []string
		header    string
		remaining []string
	}{
		{
			name:     "newest partial held back",
			files:    []string{s(1), s(2), s(3) + ".partial"},
			archived: []string{s(1), s(2)}, heldBack: []string{s(3) + ".partial"},
			header: "Processing xlog segments from streaming for pg\n",
		},
		{
			name:     "older partials archived",
			files:    []string{s(1) + ".partial", s(2), segName(2, 2, mib) + ".partial"},
			archived: []string{s(1) + ".partial", s(2)}, heldBack: []string{segName(2, 2, mib) + ".partial"},
			header: "Processing xlog segments from streaming for pg\n",
		},
		{
			name:     "no partial: newest segment stays",
			files:    []string{s(1), s(2), s(3)},
			archived: []string{s(1), s(2)}, heldBack: []string{s(3)},
			header: "Processing xlog segments from streaming for pg\n",
		},
		{
			name:     "batch",
			files:    []string{s(1), s(2), s(3), s(4) + ".partial"},
			batch:    2,
			archived: []string{s(1), s(2)}, heldBack: []string{s(4) + ".partial"},
			header:    "Processing xlog segments from streaming for pg (batch size: 2)\n",
			remaining: []string{s(3)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mib, CompressionNone)
			e.opts.StreamingBatchSize = tc.batch
			dir := e.opts.Layout.StreamingDir
			put(t, dir, ".pg_receivewal.tmp", []byte("x"))
			for _, f := range tc.files {
				put(t, dir, f, segment(strings.TrimSuffix(f, ".partial"), mib, testSysID, 1))
			}
			rep := e.archive()
			if !slices.Equal(rep.Archived, tc.archived) || !slices.Equal(rep.HeldBack, tc.heldBack) {
				t.Fatalf("archived %v held %v, want %v %v", rep.Archived, rep.HeldBack, tc.archived, tc.heldBack)
			}
			if !strings.HasPrefix(e.out.String(), tc.header) {
				t.Errorf("output %q, want header %q", e.out, tc.header)
			}
			left := listDir(t, dir)
			want := append(append([]string{".pg_receivewal.tmp"}, tc.heldBack...), tc.remaining...)
			slices.Sort(want)
			if !slices.Equal(left, want) {
				t.Errorf("streaming/ = %v, want %v", left, want)
			}
			for _, n := range tc.archived {
				if _, err := os.Stat(e.opts.Layout.WALPath(mustName(n))); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestArchiveBatchAndOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	e.opts.ArchiverBatchSize = 3
	for i := uint64(7); i >= 1; i-- {
		put(t, e.opts.Layout.IncomingDir, segName(1, i, mib), segment(segName(1, i, mib), mib, testSysID, 1))
	}
	var all []string
	for run := 0; run < 3; run++ {
		all = append(all, e.archive().Archived...)
	}
	want := []string{}
	for i := uint64(1); i <= 7; i++ {
		want = append(want, segName(1, i, mib))
	}
	if !slices.Equal(all, want) || !slices.Equal(e.xlogNames(), want) {
		t.Errorf("archived %v, xlog %v, want %v", all, e.xlogNames(), want)
	}
	if !strings.Contains(e.out.String(), "(batch size: 3)") {
		t.Errorf("output %q", e.out)
	}
}

func TestArchiveLockBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	l, err := lock.TryLock(e.opts.Layout.LockPath("archive-wal"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	put(t, e.opts.Layout.IncomingDir, segName(1, 1, mib), segment(segName(1, 1, mib), mib, testSysID, 1))
	a, err := NewArchiver(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.ArchiveWAL(context.Background())
	if !errors.Is(err, lock.ErrBusy) || !errors.Is(err, ErrArchiveBusy) {
		t.Fatalf("err = %v, want lock.ErrBusy", err)
	}
	if want := "Another archive-wal process is already running on server pg"; err.Error() != want {
		t.Errorf("message %q", err)
	}
	if got := listDir(t, e.opts.Layout.IncomingDir); len(got) != 1 {
		t.Error("file touched while the lock was busy")
	}
}

func TestArchiveCompressedIncoming(t *testing.T) {
	t.Parallel()
	// A client that compressed before sending (wal-archive -z): stored
	// as is, whatever Options.Compression says, and validated decompressed.
	e := newEnv(t, mib, CompressionZstd)
	name := segName(1, 4, mib)
	data := segment(name, mib, testSysID, 1)
	var gz bytes.Buffer
	w, _ := NewEncoders(0).Writer(&gz, CompressionGzip)
	w.Write(data)
	w.Close()
	put(t, e.opts.Layout.IncomingDir, name, gz.Bytes())
	short := segName(1, 5, mib)
	var gzShort bytes.Buffer
	w, _ = NewEncoders(0).Writer(&gzShort, CompressionGzip)
	w.Write(segment(short, mib, testSysID, 1)[:1000])
	w.Close()
	put(t, e.opts.Layout.IncomingDir, short, gzShort.Bytes())
	rep := e.archive()
	if !slices.Equal(rep.Archived, []string{name}) || len(rep.Unknown) != 1 {
		t.Fatalf("report %+v", rep)
	}
	infos := e.xlogInfos()
	if len(infos) != 1 || infos[0].Compression != "gzip" || infos[0].Size != int64(gz.Len()) {
		t.Errorf("xlog.db %+v", infos)
	}
	if got := e.get(name, GetOptions{}); !bytes.Equal(got, data) {
		t.Error("round trip differs")
	}
	if got := e.get(name, GetOptions{KeepCompression: true}); !bytes.Equal(got, gz.Bytes()) {
		t.Error("keep-compression differs from the stored bytes")
	}
}

func TestArchiveSystemIDUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	e.opts.SystemID = 0
	name := segName(1, 4, mib)
	put(t, e.opts.Layout.IncomingDir, name, segment(name, mib, 99, 1))
	if rep := e.archive(); len(rep.Archived) != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestArchiverErrorsCount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	for _, n := range []string{"a.20250101T000000Z.duplicate", "b.20250101T000000Z.duplicate", "c.20250101T000000Z.unknown"} {
		put(t, e.opts.Layout.ErrorsDir, n, nil)
	}
	got, err := ArchiverErrors(e.opts.Layout)
	if err != nil || got["duplicate"] != 2 || got["unknown"] != 1 {
		t.Errorf("got %v, %v", got, err)
	}
	missing := catalog.NewLayout("x", filepath.Join(e.dir, "nope"), e.dir)
	if got, err := ArchiverErrors(missing); err != nil || len(got) != 0 {
		t.Errorf("missing dir: %v, %v", got, err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
