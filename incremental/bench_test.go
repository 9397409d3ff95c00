package incremental

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// benchBlocks is the size of the benchmark's relation file: 64 MiB.
const benchBlocks = 8192

// benchChain writes a full file and three INCREMENTAL files, each with 5 %
// of the blocks changed at random, to dir, and opens them as sources.
func benchChain(b *testing.B, dir string) []Source {
	b.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	blk := make([]byte, BlockSize)
	full := writeBench(b, filepath.Join(dir, "full"), func(w io.Writer) {
		for i := range benchBlocks {
			binary.LittleEndian.PutUint32(blk, uint32(i))
			_, _ = w.Write(blk)
		}
	})
	sources := []Source{full}
	for k := range 3 {
		var blocks []uint32
		for i := range uint32(benchBlocks) {
			if rng.IntN(20) == 0 {
				blocks = append(blocks, i)
			}
		}
		raw := encodeIncremental(binary.LittleEndian, benchBlocks, blocks, func(int) []byte { return blk })
		s := writeBench(b, filepath.Join(dir, "incr"+string(rune('1'+k))), func(w io.Writer) { _, _ = w.Write(raw) })
		s.Incremental = true
		sources = append(sources, s)
	}
	return sources
}

func writeBench(b *testing.B, path string, fill func(io.Writer)) Source {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	fill(f)
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	r, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = r.Close() })
	st, err := r.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return Source{Name: path, R: r, Size: st.Size()}
}

// BenchmarkReconstruct compares rebuilding a 64 MiB relation file from a
// full copy and three 5 % increments with plainly copying the full file,
// both through the same checksum (or none), from page-cached files.
func BenchmarkReconstruct(b *testing.B) {
	sources := benchChain(b, b.TempDir())
	for _, alg := range []string{ChecksumCRC32C, ChecksumNone} {
		b.Run("chain-full+3incr/"+alg, func(b *testing.B) {
			b.SetBytes(benchBlocks * BlockSize)
			for b.Loop() {
				if _, err := Reconstruct(b.Context(), io.Discard, sources, alg); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("copy-full/"+alg, func(b *testing.B) {
			b.SetBytes(benchBlocks * BlockSize)
			buf := make([]byte, runBlocks*BlockSize)
			for b.Loop() {
				cs, _ := NewChecksummer(alg)
				if _, err := io.CopyBuffer(cs, io.NewSectionReader(sources[0].R, 0, sources[0].Size), buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
