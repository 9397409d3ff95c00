package incremental

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// runBlocks bounds one read: consecutive blocks from the same place in the
// same source are read together, up to this many (1 MiB), which keeps the
// number of reads (syscalls, or range requests on a bucket) low while the
// memory used stays fixed.
const runBlocks = 128

// ErrBrokenChain marks a chain of backups that cannot rebuild a file: no
// full copy to start from, or a backup of the chain that lacks the file.
var ErrBrokenChain = errors.New("broken incremental backup chain")

// Source is one backup's copy of a file, as Reconstruct reads it.
type Source struct {
	// Name identifies the source in errors and logs, for example
	// "backup 20261203T101010 base/5/16384".
	Name string
	// Incremental is true when the data is an INCREMENTAL file and false
	// when it is the full file.
	Incremental bool
	// R reads the data (an *os.File, an *io.SectionReader over a tar
	// member, a ranged object reader ...). Reconstruct reads each part it
	// needs once, in increasing offset order per source, and never past
	// Size.
	R io.ReaderAt
	// Size is the length of the data in bytes (from the manifest or the
	// tar header). An INCREMENTAL file must be exactly as long as its header
	// says.
	Size int64
}

// Result describes a file Reconstruct wrote.
type Result struct {
	// Size is the number of bytes written.
	Size int64
	// Algorithm and Checksum are the manifest checksum of what was
	// written (Checksum is "" for NONE).
	Algorithm string
	Checksum  string
	// FromSource counts the blocks taken from each source, indexed like
	// the sources argument; a full copy counts its whole blocks.
	FromSource []int
	// ZeroBlocks counts the blocks no source had, written as zeros: pages
	// the server added to the relation without WAL-logging them.
	ZeroBlocks int
}

// Reconstruct writes to w the file that sources describe, oldest first and
// newest last, and returns its size and checksum; checksum is the algorithm
// as a manifest names it ("" means CRC32C, PostgreSQL's default).
//
// If the newest source is a full file it is copied as is. Otherwise the
// newest full source is the base and the INCREMENTAL files after it are
// applied, PostgreSQL's way: the output is as long as the newest file's
// OutputBlocks; each block comes from the newest source that has it, where
// older sources count only below the newest truncation block length; blocks
// no source has are zeros. Sources older than the base are not read.
//
// The output is written in block order in one pass; nothing is buffered
// beyond one read of at most 1 MiB and the sources' block lists. A source
// that is shorter than it must be, or a chain without a full copy, fails
// with an error wrapping ErrCorrupt or ErrBrokenChain that names the source.
// On error, w may have received part of the file.
func Reconstruct(ctx context.Context, w io.Writer, sources []Source, checksum string) (Result, error) {
	cs, err := NewChecksummer(orDefault(checksum))
	if err != nil {
		return Result{}, err
	}
	if len(sources) == 0 {
		return Result{}, fmt.Errorf("%w: no sources to reconstruct from", ErrBrokenChain)
	}
	out := &output{w: io.MultiWriter(w, cs)}
	res := Result{FromSource: make([]int, len(sources)), Algorithm: cs.Algorithm()}
	newest := len(sources) - 1
	if !sources[newest].Incremental {
		err = copyWhole(ctx, out, sources[newest])
		res.FromSource[newest] = int(sources[newest].Size / BlockSize)
	} else {
		err = rebuild(ctx, out, sources, &res)
	}
	if err != nil {
		return Result{}, err
	}
	res.Size, res.Checksum = out.n, cs.Sum()
	return res, nil
}

func orDefault(alg string) string {
	if alg == "" {
		return DefaultChecksum
	}
	return alg
}

// output counts what it passes on.
type output struct {
	w io.Writer
	n int64
}

func (o *output) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	o.n += int64(n)
	return n, err
}

// bufferFor sizes the one read buffer: small files (most relation files
// are) get a small one.
func bufferFor(size int64) []byte {
	return make([]byte, max(BlockSize, min(size, runBlocks*BlockSize)))
}

func copyWhole(ctx context.Context, out *output, s Source) error {
	buf := bufferFor(s.Size)
	r := io.NewSectionReader(s.R, 0, s.Size)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write reconstructed file from %s: %w", s.Name, werr)
			}
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return checkCopied(out.n, s)
		case err != nil:
			return fmt.Errorf("read %s: %w", s.Name, err)
		}
	}
}

func checkCopied(n int64, s Source) error {
	if n != s.Size {
		return fmt.Errorf("%w: %s: ended after %d of %d bytes", ErrCorrupt, s.Name, n, s.Size)
	}
	return nil
}

// rebuild applies the INCREMENTAL files after the newest full source.
func rebuild(ctx context.Context, out *output, sources []Source, res *Result) error {
	base := len(sources) - 2
	for base >= 0 && sources[base].Incremental {
		base--
	}
	if base < 0 {
		return fmt.Errorf("%w: %s: no older backup of the chain has the full file (the oldest source, %s, is incremental too)",
			ErrBrokenChain, sources[len(sources)-1].Name, sources[0].Name)
	}
	m, err := newBlockMap(sources, base)
	if err != nil {
		return err
	}
	return m.write(ctx, out, res)
}

// blockMap says, block by block in increasing order, where each output
// block comes from.
type blockMap struct {
	sources []Source
	base    int
	incr    []cursor // one per source after base, oldest first
	length  uint32   // output length in blocks
	trunc   uint32   // newest truncation block length
	full    uint32   // whole blocks of the base file
}

// cursor walks one INCREMENTAL file's sorted block list.
type cursor struct {
	src int
	h   Header
	pos int
}

// place is where one output block comes from: a source and an offset in
// it, or src -1 for a zero block.
type place struct {
	src int
	off int64
}

func newBlockMap(sources []Source, base int) (*blockMap, error) {
	m := &blockMap{sources: sources, base: base}
	for i := base + 1; i < len(sources); i++ {
		s := sources[i]
		h, err := ReadHeaderAt(s.R, s.Size, s.Name)
		if err != nil {
			return nil, err
		}
		m.incr = append(m.incr, cursor{src: i, h: h})
	}
	newest := m.incr[len(m.incr)-1].h
	m.length, m.trunc = newest.OutputBlocks(), newest.TruncationBlocks
	m.full = uint32(min(sources[base].Size/BlockSize, SegmentBlocks))
	return m, nil
}

// locate finds block b; calls must come with increasing b.
func (m *blockMap) locate(b uint32) place {
	for i := len(m.incr) - 1; i >= 0; i-- {
		c := &m.incr[i]
		for c.pos < len(c.h.Blocks) && c.h.Blocks[c.pos] < b {
			c.pos++
		}
		newest := i == len(m.incr)-1
		if c.pos < len(c.h.Blocks) && c.h.Blocks[c.pos] == b && (newest || b < m.trunc) {
			return place{src: c.src, off: c.h.BlockOffset(c.pos)}
		}
	}
	if b < m.trunc && b < m.full {
		return place{src: m.base, off: int64(b) * BlockSize}
	}
	return place{src: -1}
}

// write emits the output, merging consecutive blocks read from one source
// at consecutive offsets (or consecutive zero blocks) into one run.
func (m *blockMap) write(ctx context.Context, out *output, res *Result) error {
	buf := bufferFor(int64(m.length) * BlockSize)
	var start place
	n := 0
	flush := func() error {
		err := m.emit(ctx, out, buf, start, n, res)
		n = 0
		return err
	}
	for b := uint32(0); b < m.length; b++ {
		p := m.locate(b)
		if n > 0 && (n*BlockSize == len(buf) || !extends(start, n, p)) {
			if err := flush(); err != nil {
				return err
			}
		}
		if n == 0 {
			start = p
		}
		n++
	}
	if n > 0 {
		return flush()
	}
	return nil
}

func extends(start place, n int, p place) bool {
	if p.src != start.src {
		return false
	}
	return p.src < 0 || p.off == start.off+int64(n)*BlockSize
}

// emit writes one run of n blocks starting at p.
func (m *blockMap) emit(ctx context.Context, out *output, buf []byte, p place, n int, res *Result) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data := buf[:n*BlockSize]
	if p.src < 0 {
		clear(data)
		res.ZeroBlocks += n
	} else {
		if err := readRun(m.sources[p.src], data, p.off); err != nil {
			return err
		}
		res.FromSource[p.src] += n
	}
	if _, err := out.Write(data); err != nil {
		return fmt.Errorf("write file reconstructed from %s: %w", m.sources[len(m.sources)-1].Name, err)
	}
	return nil
}

func readRun(s Source, data []byte, off int64) error {
	if end := off + int64(len(data)); end > s.Size {
		return fmt.Errorf("%w: %s: needs bytes up to offset %d but is only %d bytes long", ErrCorrupt, s.Name, end, s.Size)
	}
	n, err := s.R.ReadAt(data, off)
	if n == len(data) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: short read at offset %d (%d of %d bytes)", ErrCorrupt, s.Name, off, n, len(data))
	}
	return fmt.Errorf("read %s at offset %d: %w", s.Name, off, err)
}

// SeekReaderAt adapts an io.ReadSeeker (a seekable decompressor, a ranged
// object reader ...) to the io.ReaderAt of Source.R. It is not safe for
// concurrent use, which Reconstruct does not need: it reads each source
// from one goroutine, at increasing offsets.
type SeekReaderAt struct {
	RS io.ReadSeeker
}

// ReadAt seeks to off and reads len(p) bytes.
func (s SeekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if _, err := s.RS.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(s.RS, p)
}
