package archive

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
)

const benchSegSize = 16 * mib

// benchSegments writes n synthetic 16 MiB segments into dir (once per
// benchmark) and returns their names. The payload is generated once and
// only the page addresses are patched per segment.
func benchSegments(b *testing.B, dir string, n int) []string {
	b.Helper()
	tmpl := segment(segName(1, 1, benchSegSize), benchSegSize, testSysID, 1)
	names := make([]string, n)
	for i := range n {
		name := segName(1, uint64(i+1), benchSegSize)
		start := uint64(mustName(name).StartLSN(benchSegSize))
		for off := uint64(0); off < benchSegSize; off += 8192 {
			binary.LittleEndian.PutUint64(tmpl[off+8:], start+off)
		}
		put(b, dir, name, tmpl)
		names[i] = name
	}
	return names
}

func benchArchive(b *testing.B, comp string, parallel int) {
	const n = 200
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o700); err != nil {
		b.Fatal(err)
	}
	names := benchSegments(b, src, n)
	b.SetBytes(n * benchSegSize)
	b.ReportAllocs()
	run := 0
	for b.Loop() {
		b.StopTimer()
		e := newEnvAt(b, filepath.Join(dir, "run", string(rune('a'+run%26))), benchSegSize, comp)
		e.opts.Parallel = parallel
		run++
		for _, name := range names {
			if err := os.Link(filepath.Join(src, name), filepath.Join(e.opts.Layout.IncomingDir, name)); err != nil {
				b.Fatal(err)
			}
		}
		a, err := NewArchiver(e.opts)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rep, err := a.ArchiveWAL(context.Background())
		if err != nil || len(rep.Archived) != n {
			b.Fatalf("archived %d: %v", len(rep.Archived), err)
		}
		b.StopTimer()
		if err := os.RemoveAll(e.dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkArchivePlain: archive-wal of 200 × 16 MiB segments, stored plain.
func BenchmarkArchivePlain(b *testing.B) { benchArchive(b, CompressionNone, 0) }

// BenchmarkArchiveZstd: the same batch compressed with zstd.
func BenchmarkArchiveZstd(b *testing.B) { benchArchive(b, CompressionZstd, 0) }

// BenchmarkArchiveZstdSequential: the same with one file compressed at a
// time (Options.Parallel = 1), for comparison.
func BenchmarkArchiveZstdSequential(b *testing.B) { benchArchive(b, CompressionZstd, 1) }

func benchGet(b *testing.B, comp string) {
	e := newEnv(b, benchSegSize, comp)
	names := benchSegments(b, e.opts.Layout.IncomingDir, 4)
	if rep := e.archive(); len(rep.Archived) != 4 {
		b.Fatalf("archived %v", rep.Archived)
	}
	b.SetBytes(benchSegSize)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := GetWAL(context.Background(), e.opts, names[i%4], io.Discard, GetOptions{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkGetWALPlain: get-wal latency per 16 MiB segment stored plain.
func BenchmarkGetWALPlain(b *testing.B) { benchGet(b, CompressionNone) }

// BenchmarkGetWALZstd: get-wal latency per segment stored with zstd.
func BenchmarkGetWALZstd(b *testing.B) { benchGet(b, CompressionZstd) }
