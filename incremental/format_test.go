package incremental

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// encodeIncremental builds an INCREMENTAL file the way the server lays it
// out; data(i) is the content of the i-th listed block (nil data: the
// header alone).
func encodeIncremental(order binary.AppendByteOrder, trunc uint32, blocks []uint32, data func(i int) []byte) []byte {
	var buf bytes.Buffer
	w := func(v uint32) { buf.Write(order.AppendUint32(nil, v)) }
	w(Magic)
	w(uint32(len(blocks)))
	w(trunc)
	for _, b := range blocks {
		w(b)
	}
	if len(blocks) > 0 {
		for buf.Len()%BlockSize != 0 {
			buf.WriteByte(0)
		}
	}
	for i := range blocks {
		if data != nil {
			buf.Write(data(i))
		}
	}
	return buf.Bytes()
}

// page is a recognisable block: every byte is tag, the first 4 bytes are
// the block number.
func page(tag byte, blk uint32) []byte {
	p := bytes.Repeat([]byte{tag}, BlockSize)
	binary.LittleEndian.PutUint32(p, blk)
	return p
}

func pagesOf(tag byte, blocks []uint32) func(int) []byte {
	return func(i int) []byte { return page(tag, blocks[i]) }
}

func TestHeaderLayout(t *testing.T) {
	tests := []struct {
		name     string
		blocks   []uint32
		trunc    uint32
		wantLen  int64
		wantOut  uint32
		wantSize int64
	}{
		{"no blocks", nil, 7, 12, 7, 12},
		{"one block", []uint32{3}, 2, BlockSize, 4, 2 * BlockSize},
		{"blocks below truncation", []uint32{0, 5}, 10, BlockSize, 10, 3 * BlockSize},
		{"list longer than a page", seq(0, 2100), 2100, 2 * BlockSize, 2100, (2 + 2100) * BlockSize},
		{"list exactly fills header", seq(0, 2045), 0, BlockSize, 2045, (1 + 2045) * BlockSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := encodeIncremental(binary.LittleEndian, tt.trunc, tt.blocks, nil)
			r := bytes.NewReader(raw)
			h, err := ReadHeader(r, "f")
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != 0 {
				t.Errorf("ReadHeader left %d header bytes unread", r.Len())
			}
			if h.Len() != tt.wantLen || h.OutputBlocks() != tt.wantOut || h.FileSize() != tt.wantSize || int64(len(raw)) != tt.wantLen {
				t.Errorf("Len %d OutputBlocks %d FileSize %d (header bytes %d), want %d %d %d", h.Len(), h.OutputBlocks(), h.FileSize(), len(raw), tt.wantLen, tt.wantOut, tt.wantSize)
			}
		})
	}
}

func seq(from, n uint32) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = from + uint32(i)
	}
	return s
}

func TestReaderStreamsBlocks(t *testing.T) {
	for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		blocks := []uint32{1, 4, 9}
		raw := encodeIncremental(order, 6, blocks, pagesOf(7, blocks))
		r, err := NewReader(bytes.NewReader(raw), "base/5/INCREMENTAL.16384")
		if err != nil {
			t.Fatal(err)
		}
		if r.Header().TruncationBlocks != 6 || r.Header().Order.String() != order.String() {
			t.Fatalf("header %+v", r.Header())
		}
		for _, want := range blocks {
			b, data, err := r.Next()
			if err != nil || b != want || !bytes.Equal(data, page(7, want)) {
				t.Fatalf("Next = %d, %v; want block %d", b, err, want)
			}
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("after last block: %v, want io.EOF", err)
		}
	}
}

func TestReaderRejectsBadInput(t *testing.T) {
	good := encodeIncremental(binary.LittleEndian, 6, []uint32{1, 4}, pagesOf(7, []uint32{1, 4}))
	le := func(vals ...uint32) []byte {
		var b bytes.Buffer
		for _, v := range vals {
			_ = binary.Write(&b, binary.LittleEndian, v)
		}
		return b.Bytes()
	}
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"empty", nil, "truncated in the header"},
		{"bad magic", le(0x12345678, 0, 0), "bad magic number 0x12345678"},
		{"too many blocks", le(Magic, SegmentBlocks+1, 0), "block count 131073 exceeds"},
		{"truncation too long", le(Magic, 0, SegmentBlocks+1), "truncation block length 131073 exceeds"},
		{"short block list", le(Magic, 3, 0, 1), "truncated in the block list"},
		{"block past segment", le(Magic, 1, 0, SegmentBlocks), "block number 131072"},
		{"unsorted", le(Magic, 2, 0, 5, 4), "not strictly increasing"},
		{"duplicate", le(Magic, 2, 0, 5, 5), "not strictly increasing"},
		{"no padding", le(Magic, 1, 0, 5), "truncated in the header padding"},
		{"short block", good[:len(good)-1], "truncated in the data of block 4"},
		{"trailing data", append(append([]byte{}, good...), 0), "data after the last of its 2 blocks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readAll(tt.raw)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "base/1/INCREMENTAL.2") {
				t.Fatalf("err = %v, want ErrCorrupt naming the file with %q", err, tt.want)
			}
		})
	}
}

func readAll(raw []byte) error {
	r, err := NewReader(bytes.NewReader(raw), "base/1/INCREMENTAL.2")
	if err != nil {
		return err
	}
	for {
		if _, _, err := r.Next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func TestReadHeaderAtChecksSize(t *testing.T) {
	raw := encodeIncremental(binary.LittleEndian, 2, []uint32{0}, pagesOf(1, []uint32{0}))
	for _, size := range []int64{int64(len(raw)) - 1, int64(len(raw)) + BlockSize} {
		_, err := ReadHeaderAt(bytes.NewReader(raw), size, "x")
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "x:") {
			t.Errorf("size %d: err = %v, want ErrCorrupt naming x", size, err)
		}
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		in, full string
		incr     bool
	}{
		{"base/5/INCREMENTAL.16384", "base/5/16384", true},
		{"base/5/INCREMENTAL.16384.1", "base/5/16384.1", true},
		{"INCREMENTAL.x", "x", true},
		{"base/5/16384", "base/5/16384", false},
		{"base/5/INCREMENTAL.", "base/5/INCREMENTAL.", false},
		{"INCREMENTAL.dir/file", "INCREMENTAL.dir/file", false},
	}
	for _, tt := range tests {
		full, incr := ParseName(tt.in)
		if full != tt.full || incr != tt.incr {
			t.Errorf("ParseName(%q) = %q, %v; want %q, %v", tt.in, full, incr, tt.full, tt.incr)
		}
		if incr && IncrementalName(full) != tt.in {
			t.Errorf("IncrementalName(%q) = %q, want %q", full, IncrementalName(full), tt.in)
		}
	}
}

// FuzzReader: any input is read to the end or rejected with ErrCorrupt,
// never a panic, and whatever is accepted has exactly the announced size.
func FuzzReader(f *testing.F) {
	f.Add(encodeIncremental(binary.LittleEndian, 3, nil, nil))
	f.Add(encodeIncremental(binary.LittleEndian, 6, []uint32{1, 4}, pagesOf(7, []uint32{1, 4})))
	f.Add(encodeIncremental(binary.BigEndian, 0, []uint32{2}, pagesOf(9, []uint32{2})))
	f.Add([]byte{0x0d, 0x1f, 0xae, 0xd3, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte("INCREMENTAL"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := NewReader(bytes.NewReader(raw), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("header error not ErrCorrupt: %v", err)
			}
			return
		}
		err = readAll(raw)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error not ErrCorrupt: %v", err)
		}
		if err == nil && r.Header().FileSize() != int64(len(raw)) {
			t.Fatalf("accepted %d bytes, header announces %d", len(raw), r.Header().FileSize())
		}
	})
}
