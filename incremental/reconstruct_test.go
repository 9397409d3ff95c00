package incremental

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The tests describe each source by a tag byte: block b of the source
// tagged X is page(X, b); zero blocks have tag 0.

func fullSrc(name string, tag byte, nblocks int) Source {
	var raw []byte
	for b := range nblocks {
		raw = append(raw, page(tag, uint32(b))...)
	}
	return Source{Name: name, R: bytes.NewReader(raw), Size: int64(len(raw))}
}

func incrSrc(name string, tag byte, trunc uint32, blocks ...uint32) Source {
	raw := encodeIncremental(binary.LittleEndian, trunc, blocks, pagesOf(tag, blocks))
	return Source{Name: name, Incremental: true, R: bytes.NewReader(raw), Size: int64(len(raw))}
}

// expect builds the expected output from per-block tags.
func expect(tags ...byte) []byte {
	var out []byte
	for b, tag := range tags {
		if tag == 0 {
			out = append(out, make([]byte, BlockSize)...)
		} else {
			out = append(out, page(tag, uint32(b))...)
		}
	}
	return out
}

// tagsOf decodes an output back to tags, for readable failure messages.
func tagsOf(out []byte) string {
	var s []string
	for off := 0; off+BlockSize <= len(out); off += BlockSize {
		blk := out[off : off+BlockSize]
		switch {
		case bytes.Equal(blk, make([]byte, BlockSize)):
			s = append(s, "0")
		default:
			s = append(s, fmt.Sprintf("%c%d", blk[BlockSize-1], binary.LittleEndian.Uint32(blk)))
		}
	}
	return strings.Join(s, " ")
}

func TestReconstructPicksBlocks(t *testing.T) {
	tests := []struct {
		name      string
		sources   []Source
		want      []byte
		wantZeros int
	}{
		{"newest block wins",
			[]Source{fullSrc("full", 'A', 4), incrSrc("i1", 'B', 4, 1, 2), incrSrc("i2", 'C', 4, 2)},
			expect('A', 'B', 'C', 'A'), 0},
		{"truncation shortens",
			[]Source{fullSrc("full", 'A', 6), incrSrc("i1", 'B', 3)},
			expect('A', 'A', 'A'), 0},
		{"older increment's blocks past newest truncation are dropped",
			[]Source{fullSrc("full", 'A', 4), incrSrc("i1", 'B', 4, 3), incrSrc("i2", 'C', 3)},
			expect('A', 'A', 'A'), 0},
		{"extension past truncation zero-fills the gap",
			[]Source{fullSrc("full", 'A', 2), incrSrc("i1", 'B', 2, 4)},
			expect('A', 'A', 0, 0, 'B'), 2},
		{"truncated then re-extended",
			[]Source{fullSrc("full", 'A', 4), incrSrc("i1", 'B', 2, 5)},
			expect('A', 'A', 0, 0, 0, 'B'), 3},
		{"full copy shorter than truncation length",
			[]Source{fullSrc("full", 'A', 2), incrSrc("i1", 'B', 4)},
			expect('A', 'A', 0, 0), 2},
		{"middle increment supplies blocks",
			[]Source{fullSrc("full", 'A', 3), incrSrc("i1", 'B', 5, 3, 4), incrSrc("i2", 'C', 5, 0), incrSrc("i3", 'D', 5, 4)},
			expect('C', 'A', 'A', 'B', 'D'), 0},
		{"newest is a full file",
			[]Source{fullSrc("full", 'A', 4), incrSrc("i1", 'B', 4, 1), fullSrc("full2", 'C', 2)},
			expect('C', 'C'), 0},
		{"sources older than the newest full copy are ignored",
			[]Source{incrSrc("old", 'X', 9, 0, 1), fullSrc("full", 'A', 2), incrSrc("i1", 'B', 2, 1)},
			expect('A', 'B'), 0},
		{"empty result",
			[]Source{fullSrc("full", 'A', 2), incrSrc("i1", 'B', 0)},
			nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := Reconstruct(t.Context(), &out, tt.sources, "")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), tt.want) {
				t.Fatalf("got blocks [%s], want [%s]", tagsOf(out.Bytes()), tagsOf(tt.want))
			}
			if res.Size != int64(len(tt.want)) || res.ZeroBlocks != tt.wantZeros {
				t.Errorf("Size %d ZeroBlocks %d, want %d %d", res.Size, res.ZeroBlocks, len(tt.want), tt.wantZeros)
			}
			want := make([]byte, 4)
			binary.LittleEndian.PutUint32(want, crc32.Checksum(tt.want, crc32.MakeTable(crc32.Castagnoli)))
			if res.Algorithm != "CRC32C" || res.Checksum != hex.EncodeToString(want) {
				t.Errorf("checksum %s %s, want CRC32C %x", res.Algorithm, res.Checksum, want)
			}
		})
	}
}

// TestReconstructMatchesModel compares random chains with a direct model of
// the rule: each block from the newest source that has it, older sources
// only below the newest truncation length.
func TestReconstructMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		sources, want := randomChain(rng)
		var out bytes.Buffer
		res, err := Reconstruct(t.Context(), &out, sources, "sha256")
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("trial %d: got [%s], want [%s]", trial, tagsOf(out.Bytes()), tagsOf(want))
		}
		sum := sha256.Sum256(want)
		if res.Checksum != hex.EncodeToString(sum[:]) {
			t.Fatalf("trial %d: checksum mismatch", trial)
		}
	}
}

func randomChain(rng *rand.Rand) ([]Source, []byte) {
	fullLen := rng.IntN(40)
	sources := []Source{fullSrc("full", 'A', fullLen)}
	var lists [][]uint32
	var trunc uint32
	for i := range 1 + rng.IntN(4) {
		var blocks []uint32
		for b := range uint32(48) {
			if rng.IntN(6) == 0 {
				blocks = append(blocks, b)
			}
		}
		trunc = uint32(rng.IntN(44))
		lists = append(lists, blocks)
		sources = append(sources, incrSrc(fmt.Sprintf("i%d", i+1), byte('B'+i), trunc, blocks...))
	}
	length := trunc
	if last := lists[len(lists)-1]; len(last) > 0 && last[len(last)-1] >= length {
		length = last[len(last)-1] + 1
	}
	tags := make([]byte, length)
	for b := range tags {
		tags[b] = pgModel(uint32(b), fullLen, lists, trunc)
	}
	return sources, expect(tags...)
}

// pgModel finds block b by scanning the increments' lists newest first,
// then the full file.
func pgModel(b uint32, fullLen int, lists [][]uint32, trunc uint32) byte {
	for i := len(lists) - 1; i >= 0; i-- {
		if i < len(lists)-1 && b >= trunc {
			break
		}
		if slices.Contains(lists[i], b) {
			return byte('B' + i)
		}
	}
	if b < trunc && int(b) < fullLen {
		return 'A'
	}
	return 0
}

func TestReconstructErrors(t *testing.T) {
	corrupt := incrSrc("backup 2 base/5/INCREMENTAL.16384", 'B', 4, 1)
	corrupt.R = bytes.NewReader(append([]byte{0xde, 0xad, 0xbe, 0xef}, make([]byte, corrupt.Size-4)...))
	short := incrSrc("backup 2 base/5/INCREMENTAL.16384", 'B', 4, 1)
	short.Size -= 100
	lying := fullSrc("backup 1 base/5/16384", 'A', 4)
	lying.R = bytes.NewReader(make([]byte, 3*BlockSize))
	tests := []struct {
		name    string
		sources []Source
		is      error
		want    string
	}{
		{"no sources", nil, ErrBrokenChain, "no sources"},
		{"no full copy", []Source{incrSrc("backup 1 base/5/INCREMENTAL.16384", 'A', 4), incrSrc("backup 2 base/5/INCREMENTAL.16384", 'B', 4)},
			ErrBrokenChain, "backup 1 base/5/INCREMENTAL.16384, is incremental"},
		{"corrupted parent", []Source{fullSrc("backup 1 base/5/16384", 'A', 4), corrupt, incrSrc("backup 3", 'C', 4, 2)},
			ErrCorrupt, "backup 2 base/5/INCREMENTAL.16384: bad magic number 0xefbeadde"},
		{"parent missing its last block", []Source{fullSrc("backup 1 base/5/16384", 'A', 4), short, incrSrc("backup 3", 'C', 4, 2)},
			ErrCorrupt, "backup 2 base/5/INCREMENTAL.16384: 16284 bytes, but its header announces 1 blocks (16384 bytes)"},
		{"full copy shorter than its size", []Source{lying, incrSrc("backup 2", 'B', 4, 0)},
			ErrCorrupt, "backup 1 base/5/16384: short read at offset 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Reconstruct(t.Context(), &bytes.Buffer{}, tt.sources, "")
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.is, tt.want)
			}
		})
	}
}

func TestReconstructRejectsUnknownChecksum(t *testing.T) {
	_, err := Reconstruct(t.Context(), &bytes.Buffer{}, []Source{fullSrc("f", 'A', 1)}, "MD5")
	if err == nil || !strings.Contains(err.Error(), `"MD5"`) {
		t.Fatalf("err = %v", err)
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after < len(p) {
		return 0, errors.New("disk full")
	}
	f.after -= len(p)
	return len(p), nil
}

func TestReconstructStopsOnWriteErrorAndCancel(t *testing.T) {
	chain := func() []Source {
		return []Source{fullSrc("full", 'A', 300), incrSrc("i1", 'B', 300, 10, 200)}
	}
	_, err := Reconstruct(t.Context(), &failWriter{after: 20 * BlockSize}, chain(), "")
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "i1") {
		t.Fatalf("write error: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Reconstruct(ctx, &bytes.Buffer{}, chain(), ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestChecksummerAlgorithms(t *testing.T) {
	data := []byte("123456789")
	tests := map[string]string{
		// CRC-32C check value 0xe3069283, stored little-endian.
		"CRC32C": "839206e3",
		"sha256": "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
		"NONE":   "",
		"":       "",
	}
	for alg, want := range tests {
		c, err := NewChecksummer(alg)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(data)
		if got := c.Sum(); got != want {
			t.Errorf("%s: %s, want %s", alg, got, want)
		}
	}
	for _, alg := range []string{"SHA224", "SHA384", "SHA512"} {
		c, err := NewChecksummer(alg)
		if err != nil || c.Sum() == "" {
			t.Errorf("%s: %v", alg, err)
		}
	}
}

func TestReconstructFromSeekers(t *testing.T) {
	sources := []Source{fullSrc("full", 'A', 3), incrSrc("i1", 'B', 3, 1)}
	for i := range sources {
		sources[i].R = SeekReaderAt{RS: io.NewSectionReader(sources[i].R, 0, sources[i].Size)}
	}
	var out bytes.Buffer
	if _, err := Reconstruct(t.Context(), &out, sources, ""); err != nil {
		t.Fatal(err)
	}
	if want := expect('A', 'B', 'A'); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("got [%s], want [%s]", tagsOf(out.Bytes()), tagsOf(want))
	}
}
