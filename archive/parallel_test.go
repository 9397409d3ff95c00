package archive

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestArchiveParallel archives the same mixed batch with one worker and
// with several: the parallel runs must store every file byte-identical,
// catalogue them in name order, and report, print and move to errors/
// exactly what the sequential run does.
func TestArchiveParallel(t *testing.T) {
	t.Parallel()
	const segs = 24
	type outcome struct {
		rep    Report
		out    string
		xlog   []string
		errs   []string
		stored map[string][]byte // decompressed
	}
	// The inputs are built once: generating segments dominates under -race.
	dupSame, dupDiff := segName(1, 5, mib), segName(1, 9, mib)
	first := map[string][]byte{} // archived beforehand
	input := map[string][]byte{} // then put into incoming/
	want := map[string][]byte{}  // what must end up stored
	for _, name := range []string{dupSame, dupDiff} {
		first[name] = segment(name, mib, testSysID, 1)
	}
	for i := uint64(1); i <= segs; i++ {
		name := segName(1, i, mib)
		data := segment(name, mib, testSysID, 1)
		input[name], want[name] = data, data
		switch i {
		case 7: // wrong system identifier: errors/
			input[name] = segment(name, mib, testSysID+1, 1)
			delete(want, name)
		case 12: // short: errors/
			input[name] = data[:mib/2]
			delete(want, name)
		case 15: // arrives gzip-compressed: stored as it is
			var buf bytes.Buffer
			w, err := NewEncoders(0).Writer(&buf, CompressionGzip)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(data)
			w.Close()
			input[name] = buf.Bytes()
		case 9: // a different copy of an archived segment: errors/
			input[name] = segment(name, mib, testSysID, 2)
		}
	}
	input["00000002.history"] = []byte("1\t0/3000000\tno recovery target specified\n")
	want["00000002.history"] = input["00000002.history"]
	input["not-a-wal"] = []byte("x")

	run := func(t *testing.T, comp string, parallel int) outcome {
		e := newEnv(t, mib, comp)
		e.opts.Parallel = parallel
		in := e.opts.Layout.IncomingDir
		for name, data := range first {
			put(t, in, name, data)
		}
		if rep := e.archive(); len(rep.Archived) != 2 {
			t.Fatalf("first run: %+v", rep)
		}
		e.out.Reset()
		for name, data := range input {
			put(t, in, name, data)
		}

		rep := e.archive()
		o := outcome{rep: rep, out: e.out.String(), xlog: e.xlogNames(), stored: map[string][]byte{}}
		// errors/ names carry a fixed stamp (Options.Now) and the kind.
		o.errs = listDir(t, e.opts.Layout.ErrorsDir)
		if got := listDir(t, in); len(got) != 0 {
			t.Errorf("incoming/ not drained: %v", got)
		}
		if !slices.IsSorted(o.xlog[2:]) {
			t.Errorf("xlog.db not in name order: %v", o.xlog)
		}
		for name, data := range want {
			f, err := os.Open(e.opts.Layout.WALPath(mustName(name)))
			if err != nil {
				t.Fatal(err)
			}
			r, _, err := SniffDecompressor(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("%s: stored copy differs from the original", name)
			}
			o.stored[name] = got
		}
		// No pending file may be left behind in wals/.
		filepath.WalkDir(e.opts.Layout.WalsDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".") {
				t.Errorf("left over: %s", p)
			}
			return nil
		})
		e.checkRebuildAgrees()
		return o
	}
	for _, tc := range []struct {
		comp     string
		parallel []int
	}{
		// 3 workers have a window of 6 files, so the window slides over
		// the batch; 64 is more workers than files.
		{CompressionZstd, []int{3, 64}},
		// gzip shares the lz4 and zstd code paths but is slow under -race;
		// TestArchiveCompressions covers it in parallel.
		{CompressionLZ4, []int{3}},
	} {
		t.Run(tc.comp, func(t *testing.T) {
			t.Parallel()
			comp := tc.comp
			seq := run(t, comp, 1)
			if len(seq.rep.Archived) != segs-4+1 || len(seq.rep.Dropped) != 1 || len(seq.rep.Duplicates) != 1 || len(seq.rep.Unknown) != 3 {
				t.Fatalf("sequential report %+v", seq.rep)
			}
			for _, parallel := range tc.parallel {
				par := run(t, comp, parallel)
				if !slices.Equal(par.rep.Archived, seq.rep.Archived) || !slices.Equal(par.rep.Dropped, seq.rep.Dropped) ||
					!slices.Equal(par.rep.Duplicates, seq.rep.Duplicates) || !slices.Equal(par.rep.Unknown, seq.rep.Unknown) {
					t.Errorf("parallel %d report %+v\nsequential %+v", parallel, par.rep, seq.rep)
				}
				if par.out != seq.out {
					t.Errorf("parallel %d output:\n%s\nsequential:\n%s", parallel, par.out, seq.out)
				}
				if !slices.Equal(par.xlog, seq.xlog) {
					t.Errorf("parallel %d xlog.db %v\nsequential %v", parallel, par.xlog, seq.xlog)
				}
				if !slices.Equal(par.errs, seq.errs) {
					t.Errorf("parallel %d errors/ %v\nsequential %v", parallel, par.errs, seq.errs)
				}
			}
		})
	}
}

// TestArchiveParallelInvalidFresh: a file that fails validation in a
// worker but was modified within SettleTime stays in incoming/, as in the
// sequential path.
func TestArchiveParallelInvalidFresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionZstd)
	e.opts.SettleTime = 0 // default 30 s
	in := e.opts.Layout.IncomingDir
	for i := uint64(1); i <= 6; i++ {
		name := segName(1, i, mib)
		put(t, in, name, segment(name, mib, testSysID, 1))
	}
	growing := segName(1, 4, mib)
	if err := os.WriteFile(filepath.Join(in, growing), segment(growing, mib, testSysID, 1)[:mib/3], 0o600); err != nil {
		t.Fatal(err)
	}
	rep := e.archive()
	if len(rep.Archived) != 5 || !slices.Equal(rep.Deferred, []string{growing}) || len(rep.Unknown) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if got := listDir(t, in); !slices.Equal(got, []string{growing}) {
		t.Errorf("incoming/ %v, want only %s", got, growing)
	}
}

func TestArchiveParallelNegative(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionZstd)
	e.opts.Parallel = -1
	if _, err := NewArchiver(e.opts); err == nil || !strings.Contains(err.Error(), "parallel") {
		t.Fatalf("NewArchiver with Parallel -1: %v", err)
	}
}

// TestArchiveParallelCancel: cancelling the context stops the run and
// leaves no pending file; the next run finishes the batch.
func TestArchiveParallelCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionZstd)
	e.opts.Parallel = 3
	in := e.opts.Layout.IncomingDir
	for i := uint64(1); i <= 20; i++ {
		name := segName(1, i, mib)
		put(t, in, name, segment(name, mib, testSysID, 1))
	}
	a, err := NewArchiver(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.opts.Out = nil
	a.opts.Out = &cancelAfter{w: e.out, lines: 5, cancel: cancel}
	rep, err := a.ArchiveWAL(ctx)
	if err == nil {
		t.Fatalf("cancelled run returned no error: %+v", rep)
	}
	filepath.WalkDir(e.opts.Layout.WalsDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".") {
			t.Errorf("pending file left over: %s", p)
		}
		return nil
	})
	if got := e.xlogNames(); !slices.Equal(got, rep.Archived) {
		t.Errorf("xlog.db %v, report %v", got, rep.Archived)
	}
	rep2 := e.archive()
	if all := append(slices.Clone(rep.Archived), rep2.Archived...); len(all) != 20 || !slices.IsSorted(all) {
		t.Errorf("archived %v then %v", rep.Archived, rep2.Archived)
	}
}

// cancelAfter cancels after it has seen lines newlines of output.
type cancelAfter struct {
	w      io.Writer
	lines  int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.lines -= bytes.Count(p, []byte("\n"))
	if c.lines <= 0 {
		c.cancel()
	}
	return c.w.Write(p)
}
