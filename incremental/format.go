package incremental

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// The INCREMENTAL file format, as PostgreSQL 17 writes it: three 32-bit
// words (magic number, number of blocks, truncation block length) in the
// server's byte order, then one 32-bit relative block number per block,
// then, if there is at least one block, zero padding up to a multiple of
// BlockSize, then the blocks in the order of the list. A file without blocks
// is exactly 12 bytes.
const (
	// Magic is the first word of every INCREMENTAL file.
	Magic uint32 = 0xd3ae1f0d
	// BlockSize is PostgreSQL's page size (BLCKSZ) of a standard build.
	BlockSize = 8192
	// SegmentBlocks is the number of blocks of a full 1 GiB relation
	// segment file (RELSEG_SIZE): no INCREMENTAL file can describe more.
	SegmentBlocks = 131072
	// Prefix starts the base name of an incremental file.
	Prefix = "INCREMENTAL."

	fixedHeaderLen = 12
)

// ErrCorrupt marks an INCREMENTAL file, manifest or chain that breaks the
// format's rules. Errors wrapping it name the file.
var ErrCorrupt = errors.New("corrupt incremental backup data")

// Header is the decoded header of an INCREMENTAL file.
type Header struct {
	// TruncationBlocks is the truncation block length: the reconstructed
	// file has at least this many blocks, and blocks at or past it come
	// only from this file (older backups' copies were truncated away).
	TruncationBlocks uint32
	// Blocks are the relative block numbers this file carries, strictly
	// increasing, in the order their data follows the header.
	Blocks []uint32
	// Order is the byte order the server wrote the file in.
	Order binary.ByteOrder
}

// Len is the length of the header including its padding: the offset of the
// first block's data.
func (h Header) Len() int64 {
	n := int64(fixedHeaderLen + 4*len(h.Blocks))
	if len(h.Blocks) > 0 && n%BlockSize != 0 {
		n += BlockSize - n%BlockSize
	}
	return n
}

// FileSize is the exact length of a well-formed file with this header.
func (h Header) FileSize() int64 {
	return h.Len() + int64(len(h.Blocks))*BlockSize
}

// OutputBlocks is the length in blocks of the file reconstructed from a
// chain whose newest member has this header: the truncation block length,
// extended to hold every block the file carries.
func (h Header) OutputBlocks() uint32 {
	n := h.TruncationBlocks
	if k := len(h.Blocks); k > 0 && h.Blocks[k-1] >= n {
		n = h.Blocks[k-1] + 1
	}
	return n
}

// BlockOffset is where the data of Blocks[i] starts in the file.
func (h Header) BlockOffset(i int) int64 {
	return h.Len() + int64(i)*BlockSize
}

// ParseName splits a backup-relative path: for ".../INCREMENTAL.<name>" it
// returns ".../<name>" and true, for anything else the path and false.
func ParseName(p string) (full string, incremental bool) {
	dir, base := path.Split(p)
	bare, ok := strings.CutPrefix(base, Prefix)
	if !ok || bare == "" {
		return p, false
	}
	return dir + bare, true
}

// IncrementalName is the path under which an incremental backup stores the
// increment of the relation file at p.
func IncrementalName(p string) string {
	dir, base := path.Split(p)
	return dir + Prefix + base
}

// ReadHeader reads and validates the header of the INCREMENTAL file name
// from r, consuming the padding too, so r is left at the first block.
func ReadHeader(r io.Reader, name string) (Header, error) {
	var fixed [fixedHeaderLen]byte
	if err := readFull(r, fixed[:], name, "header"); err != nil {
		return Header{}, err
	}
	h, n, err := decodeFixed(fixed[:], name)
	if err != nil {
		return Header{}, err
	}
	list := make([]byte, 4*int(n))
	if err := readFull(r, list, name, "block list"); err != nil {
		return Header{}, err
	}
	if err := h.decodeBlocks(list, name); err != nil {
		return Header{}, err
	}
	pad := make([]byte, h.Len()-int64(fixedHeaderLen+len(list)))
	if err := readFull(r, pad, name, "header padding"); err != nil {
		return Header{}, err
	}
	return h, nil
}

// ReadHeaderAt reads the header of the INCREMENTAL file name of size bytes
// through ra and checks that size is exactly what the header announces.
func ReadHeaderAt(ra io.ReaderAt, size int64, name string) (Header, error) {
	h, err := ReadHeader(io.NewSectionReader(ra, 0, size), name)
	if err != nil {
		return Header{}, err
	}
	if want := h.FileSize(); size != want {
		return Header{}, fmt.Errorf("%w: %s: %d bytes, but its header announces %d blocks (%d bytes)",
			ErrCorrupt, name, size, len(h.Blocks), want)
	}
	return h, nil
}

// decodeFixed checks the magic number (which also tells the byte order) and
// the two counts.
func decodeFixed(b []byte, name string) (Header, uint32, error) {
	var order binary.ByteOrder
	switch {
	case binary.LittleEndian.Uint32(b) == Magic:
		order = binary.LittleEndian
	case binary.BigEndian.Uint32(b) == Magic:
		order = binary.BigEndian
	default:
		return Header{}, 0, fmt.Errorf("%w: %s: bad magic number 0x%08x (an INCREMENTAL file starts with 0x%08x)",
			ErrCorrupt, name, binary.LittleEndian.Uint32(b), Magic)
	}
	n, trunc := order.Uint32(b[4:]), order.Uint32(b[8:])
	if n > SegmentBlocks {
		return Header{}, 0, fmt.Errorf("%w: %s: block count %d exceeds the %d blocks of a relation segment",
			ErrCorrupt, name, n, SegmentBlocks)
	}
	if trunc > SegmentBlocks {
		return Header{}, 0, fmt.Errorf("%w: %s: truncation block length %d exceeds the %d blocks of a relation segment",
			ErrCorrupt, name, trunc, SegmentBlocks)
	}
	return Header{TruncationBlocks: trunc, Order: order}, n, nil
}

// decodeBlocks fills h.Blocks from the raw list. PostgreSQL sorts the list,
// and reconstruction relies on that to stream, so disorder is corruption.
func (h *Header) decodeBlocks(list []byte, name string) error {
	h.Blocks = make([]uint32, len(list)/4)
	for i := range h.Blocks {
		b := h.Order.Uint32(list[4*i:])
		if b >= SegmentBlocks {
			return fmt.Errorf("%w: %s: block number %d (entry %d) is past the %d blocks of a relation segment",
				ErrCorrupt, name, b, i, SegmentBlocks)
		}
		if i > 0 && b <= h.Blocks[i-1] {
			return fmt.Errorf("%w: %s: block list not strictly increasing (entry %d is %d after %d)",
				ErrCorrupt, name, i, b, h.Blocks[i-1])
		}
		h.Blocks[i] = b
	}
	return nil
}

func readFull(r io.Reader, buf []byte, name, what string) error {
	n, err := io.ReadFull(r, buf)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %s: truncated in the %s (read %d of %d bytes)", ErrCorrupt, name, what, n, len(buf))
	default:
		return fmt.Errorf("read %s of %s: %w", what, name, err)
	}
}

// Reader reads an INCREMENTAL file as a stream: the header first, then one
// block at a time, for a backup taker that checks (or stores) the file as
// it arrives. It reads no further than the file's announced end plus one
// byte, to detect trailing data.
type Reader struct {
	r    io.Reader
	name string
	h    Header
	next int
	buf  []byte
}

// NewReader reads and validates the header of the INCREMENTAL file name.
func NewReader(r io.Reader, name string) (*Reader, error) {
	h, err := ReadHeader(r, name)
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, name: name, h: h, buf: make([]byte, BlockSize)}, nil
}

// Header is the file's header.
func (r *Reader) Header() Header { return r.h }

// Next returns the next block's relative number and data. The data is valid
// until the next call. After the last block it checks that the file ends
// there and returns io.EOF.
func (r *Reader) Next() (uint32, []byte, error) {
	if r.next == len(r.h.Blocks) {
		return 0, nil, r.checkEnd()
	}
	b := r.h.Blocks[r.next]
	if err := readFull(r.r, r.buf, r.name, fmt.Sprintf("data of block %d", b)); err != nil {
		return 0, nil, err
	}
	r.next++
	return b, r.buf, nil
}

func (r *Reader) checkEnd() error {
	var one [1]byte
	n, err := io.ReadFull(r.r, one[:])
	if n > 0 {
		return fmt.Errorf("%w: %s: data after the last of its %d blocks", ErrCorrupt, r.name, len(r.h.Blocks))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", r.name, err)
	}
	return io.EOF
}
