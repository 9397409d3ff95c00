package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

func TestGetWALLookupOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionZstd)
	l := e.opts.Layout
	s := func(i uint64) string { return segName(1, i, mib) }
	// s(1) archived; s(2) in incoming and streaming (incoming wins);
	// s(3) only in streaming; s(4) only as streaming .partial; s(5) missing.
	put(t, l.IncomingDir, s(1), segment(s(1), mib, testSysID, 1))
	e.archive()
	put(t, l.IncomingDir, s(2), []byte("incoming-2"))
	put(t, l.StreamingDir, s(2), []byte("streaming-2"))
	put(t, l.StreamingDir, s(3), []byte("streaming-3"))
	put(t, l.StreamingDir, s(4)+".partial", []byte("partial-4"))

	if got := e.get(s(1), GetOptions{}); !bytes.Equal(got, segment(s(1), mib, testSysID, 1)) {
		t.Error("s1 differs")
	}
	for name, want := range map[string]string{s(2): "incoming-2", s(3): "streaming-3"} {
		if got := e.get(name, GetOptions{}); string(got) != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := e.get(s(4), GetOptions{Partial: true}); string(got) != "partial-4" {
		t.Errorf("partial = %q", got)
	}
	for _, tc := range []struct {
		name string
		g    GetOptions
	}{{s(4), GetOptions{}}, {s(5), GetOptions{Partial: true}}} {
		err := GetWAL(context.Background(), e.opts, tc.name, io.Discard, tc.g)
		var nf *NotFoundError
		if !errors.Is(err, ErrWALNotFound) || !errors.As(err, &nf) {
			t.Errorf("%s: err = %v, want ErrWALNotFound", tc.name, err)
		} else if want := "WAL file '" + tc.name + "' not found in server 'pg'"; err.Error() != want {
			t.Errorf("message %q", err)
		}
	}
	if p, err := FindWAL(e.opts, s(1), false); err != nil || p != l.WALPath(mustName(s(1))) {
		t.Errorf("FindWAL = %s, %v", p, err)
	}
}

func TestGetWALBadNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	for _, name := range []string{"", "../000000010000000000000001", "000000010000000000000001/../../x", "/etc/passwd",
		"000000010000000000000001.gz", "00000001000000000000000g", "000000010000000000000001\x00"} {
		err := GetWAL(context.Background(), e.opts, name, io.Discard, GetOptions{})
		var ne *wal.NameError
		if !errors.As(err, &ne) {
			t.Errorf("%q: err = %v, want *wal.NameError", name, err)
		}
		if _, err := Peek(e.opts, name, 3); !errors.As(err, &ne) {
			t.Errorf("Peek %q: err = %v", name, err)
		}
	}
}

func TestGetWALCompressionOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionLZ4)
	name := segName(1, 1, mib)
	data := segment(name, mib, testSysID, 1)
	put(t, e.opts.Layout.IncomingDir, name, data)
	e.archive()
	stored, _ := os.ReadFile(e.opts.Layout.WALPath(mustName(name)))
	if got := e.get(name, GetOptions{KeepCompression: true}); !bytes.Equal(got, stored) || DetectCompression(got) != CompressionLZ4 {
		t.Error("keep-compression did not send the stored bytes")
	}
	for _, comp := range []string{CompressionGzip, CompressionZstd, CompressionLZ4} {
		got := e.get(name, GetOptions{Compression: comp})
		if DetectCompression(got) != comp {
			t.Errorf("%s: sent %q", comp, DetectCompression(got))
		}
		r, err := NewDecompressor(bytes.NewReader(got), comp)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(plain, data) {
			t.Errorf("%s: round trip differs (%v)", comp, err)
		}
	}
	err := GetWAL(context.Background(), e.opts, name, io.Discard, GetOptions{Compression: CompressionBzip2})
	if !errors.Is(err, ErrUnsupportedCompression) {
		t.Errorf("bzip2 output: %v", err)
	}
}

func TestPeek(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	per := wal.SegmentsPerLog(mib) // 4096 for 1 MiB
	nos := []uint64{per - 2, per - 1, per, per + 1, per + 3}
	for _, no := range nos {
		put(t, e.opts.Layout.IncomingDir, segName(1, no, mib), segment(segName(1, no, mib), mib, testSysID, 1))
	}
	e.archive()
	got, err := Peek(e.opts, segName(1, per-2, mib), 10)
	want := []string{segName(1, per-2, mib), segName(1, per-1, mib), segName(1, per, mib), segName(1, per+1, mib)}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Peek = %v, %v; want %v (log boundary crossed, stops at the gap)", got, err, want)
	}
	if got, _ := Peek(e.opts, segName(1, per-2, mib), 2); len(got) != 2 {
		t.Errorf("count not honoured: %v", got)
	}
	if got, _ := Peek(e.opts, segName(1, 1, mib), 5); len(got) != 0 {
		t.Errorf("missing start: %v", got)
	}
}

func TestWaitForWAL(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	name := segName(1, 6, mib)
	data := segment(name, mib, testSysID, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		put(t, e.opts.Layout.IncomingDir, name, data)
	}()
	if err := WaitForWAL(t.Context(), e.opts, name, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.opts.Layout.WALPath(mustName(name))); err != nil {
		t.Fatal(err)
	}
	// No name: wait until a newer WAL appears.
	next := segName(1, 7, mib)
	go func() {
		time.Sleep(50 * time.Millisecond)
		put(t, e.opts.Layout.IncomingDir, next, segment(next, mib, testSysID, 1))
	}()
	if err := WaitForWAL(t.Context(), e.opts, "", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.opts.Layout.WALPath(mustName(next))); err != nil {
		t.Fatal(err)
	}
	err := WaitForWAL(t.Context(), e.opts, segName(1, 99, mib), 100*time.Millisecond)
	if !errors.Is(err, ErrWaitTimeout) {
		t.Errorf("err = %v, want ErrWaitTimeout", err)
	}
}

func TestCompressionRoundTrip(t *testing.T) {
	t.Parallel()
	data := segment(segName(1, 1, mib), mib, testSysID, 1)
	enc := NewEncoders(0)
	for i := 0; i < 2; i++ { // second pass reuses the encoders
		for _, comp := range []string{CompressionNone, CompressionGzip, CompressionZstd, CompressionLZ4} {
			var buf bytes.Buffer
			w, err := enc.Writer(&buf, comp)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := DetectCompression(buf.Bytes()); got != comp {
				t.Errorf("detect %q, want %q", got, comp)
			}
			if comp != CompressionNone && buf.Len() >= len(data) {
				t.Errorf("%s did not compress (%d bytes)", comp, buf.Len())
			}
			r, name, err := SniffDecompressor(&buf)
			if err != nil || name != comp {
				t.Fatalf("sniff %q, %v", name, err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s round trip differs (%v)", comp, err)
			}
		}
	}
	for _, comp := range []string{CompressionBzip2, CompressionXZ, CompressionSnappy, "pigz", "custom"} {
		if _, err := enc.Writer(io.Discard, comp); !errors.Is(err, ErrUnsupportedCompression) {
			t.Errorf("%s writer: %v", comp, err)
		}
	}
}

// TestBzip2Read decodes a file written by the bzip2 tool (Barman's
// bzip2 compression), which Cellar reads but never writes.
func TestBzip2Read(t *testing.T) {
	t.Parallel()
	bz, err := exec.LookPath("bzip2")
	if err != nil {
		t.Fatal("bzip2 is needed to produce test input: apt-get install bzip2")
	}
	e := newEnv(t, mib, CompressionNone)
	name := segName(1, 1, mib)
	data := segment(name, mib, testSysID, 1)
	p := put(t, e.dir, "seg", data)
	if out, err := exec.Command(bz, "-k", p).CombinedOutput(); err != nil {
		t.Fatalf("bzip2: %v %s", err, out)
	}
	comp, _ := os.ReadFile(p + ".bz2")
	put(t, e.opts.Layout.IncomingDir, name, comp)
	e.archive()
	infos := e.xlogInfos()
	if len(infos) != 1 || infos[0].Compression != CompressionBzip2 {
		t.Fatalf("xlog.db %+v", infos)
	}
	if got := e.get(name, GetOptions{}); !bytes.Equal(got, data) {
		t.Error("bzip2 round trip differs")
	}
	if got := e.get(name, GetOptions{Compression: CompressionZstd}); DetectCompression(got) != CompressionZstd {
		t.Error("re-encode bzip2 → zstd failed")
	}
}

// TestGetWALPlainSend: a segment stored plain is sent as it is, whatever
// the writer: a file (copy_file_range), a pipe (sendfile), or a buffer;
// a cancelled context stops it.
func TestGetWALPlainSend(t *testing.T) {
	t.Parallel()
	const segSize = 16 * mib // more than one sendChunk
	e := newEnv(t, segSize, CompressionNone)
	name := segName(1, 1, segSize)
	want := segment(name, segSize, testSysID, 7)
	put(t, e.opts.Layout.IncomingDir, name, want)
	e.archive()
	ctx := context.Background()

	t.Run("file", func(t *testing.T) {
		t.Parallel()
		f, err := os.Create(t.TempDir() + "/out")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := GetWAL(ctx, e.opts, name, f, GetOptions{}); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(f.Name())
		if !bytes.Equal(got, want) {
			t.Fatalf("file copy differs (%d bytes, want %d)", len(got), len(want))
		}
	})
	t.Run("pipe", func(t *testing.T) {
		t.Parallel()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(r)
			done <- b
		}()
		err = GetWAL(ctx, e.opts, name, w, GetOptions{})
		w.Close()
		got := <-done
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("pipe copy differs (%d bytes, want %d)", len(got), len(want))
		}
	})
	t.Run("buffer", func(t *testing.T) {
		t.Parallel()
		var b bytes.Buffer
		if err := GetWAL(ctx, e.opts, name, &b, GetOptions{}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatal("buffer copy differs")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := GetWAL(cctx, e.opts, name, io.Discard, GetOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("re-encoded", func(t *testing.T) {
		t.Parallel()
		var b bytes.Buffer
		if err := GetWAL(ctx, e.opts, name, &b, GetOptions{Compression: CompressionZstd}); err != nil {
			t.Fatal(err)
		}
		plain, kind, err := SniffDecompressor(&b)
		if err != nil || kind != CompressionZstd {
			t.Fatalf("sniff: %s %v", kind, err)
		}
		got, err := io.ReadAll(plain)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("zstd round trip differs: %v", err)
		}
	})
}
