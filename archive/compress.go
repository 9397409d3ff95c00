package archive

import (
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/cellar-backup/cellar/catalog"
)

// Compression names as Barman writes them in xlog.db and accepts in the
// `compression` option. The empty string means "no compression"; xlog.db
// spells it None (CompressionField converts).
const (
	CompressionNone   = ""
	CompressionGzip   = "gzip"
	CompressionBzip2  = "bzip2"
	CompressionZstd   = "zstd"
	CompressionLZ4    = "lz4"
	CompressionXZ     = "xz"
	CompressionSnappy = "snappy"
)

// ErrUnsupportedCompression is wrapped when a compression can be detected
// but Cellar cannot produce (bzip2, xz, snappy) or read (xz, snappy) it.
var ErrUnsupportedCompression = errors.New("unsupported compression")

// sniffLen is how many leading bytes DetectCompression needs at most.
const sniffLen = 10

// DetectCompression names the compression of a stream from its first bytes
// (at least sniffLen for a sure answer), or returns CompressionNone. A WAL
// segment starts with XLOG_PAGE_MAGIC (0xD1xx little-endian), which none of
// the magics below can match, so a plain segment is never misdetected.
func DetectCompression(head []byte) string {
	return catalog.CompressionFromMagic(head)
}

// ValidateCompression reports whether Cellar can write name (the
// `compression` option): none, gzip, zstd or lz4. bzip2 is read-only.
func ValidateCompression(name string) error {
	switch name {
	case CompressionNone, CompressionGzip, CompressionZstd, CompressionLZ4:
		return nil
	case CompressionBzip2, CompressionXZ, CompressionSnappy:
		return fmt.Errorf("compression %q: %w: Cellar reads it but cannot write it (use gzip, zstd or lz4)", name, ErrUnsupportedCompression)
	}
	return fmt.Errorf("compression %q: %w (use gzip, zstd or lz4)", name, ErrUnsupportedCompression)
}

// CompressionField is the xlog.db spelling of a compression name.
func CompressionField(name string) string {
	if name == CompressionNone {
		return "None"
	}
	return name
}

// NewDecompressor returns a reader of the plain bytes of r, which is
// compressed with name. Close releases decoder resources; it does not close
// r. A process decoding many files should keep a Decoders instead.
func NewDecompressor(r io.Reader, name string) (io.ReadCloser, error) {
	var d Decoders
	rc, err := d.Reader(r, name)
	if err != nil {
		return nil, err
	}
	return &ownedReader{ReadCloser: rc, d: &d}, nil
}

// ownedReader frees a one-shot Decoders on Close.
type ownedReader struct {
	io.ReadCloser
	d *Decoders
}

func (o *ownedReader) Close() error {
	err := o.ReadCloser.Close()
	o.d.Close()
	return err
}

// zstdDecoderOptions decode synchronously in the caller's goroutine. The
// library default starts min(GOMAXPROCS, 4) block decoders, each with its
// own buffers, plus a goroutine per stream: for one 16 MiB segment that
// set-up costs more CPU than it saves (measured on 2 cores: synchronous
// decoding of a segment is as fast in wall time and cheaper in CPU, and a
// reused decoder allocates ~150 KiB per file instead of ~4.7 MiB).
// Low-memory mode (the default) stays on: turning it off preallocates
// larger block buffers and measured slower.
func zstdDecoderOptions() []zstd.DOption {
	return []zstd.DOption{zstd.WithDecoderConcurrency(1)}
}

// Decoders holds reusable decompressors, the reading counterpart of
// Encoders: a zstd decoder is reset per file instead of rebuilt, which
// matters when one process reads many files (archive-wal comparing
// duplicates, wal-restore prefetching). A Decoders decodes one stream at
// a time and is not safe for concurrent use; the reader returned by Reader
// is valid until the next call to Reader or Close.
type Decoders struct {
	zs *zstd.Decoder
	gz *gzip.Reader
}

// Reader returns a reader of the plain bytes of r, which is compressed
// with name. Its Close releases the reference to r (it does not close r)
// and keeps the decoder for the next file.
func (d *Decoders) Reader(r io.Reader, name string) (io.ReadCloser, error) {
	switch name {
	case CompressionNone:
		return io.NopCloser(r), nil
	case CompressionGzip:
		if d.gz == nil {
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, fmt.Errorf("gzip: %w", err)
			}
			d.gz = zr
			return zr, nil
		}
		if err := d.gz.Reset(r); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return d.gz, nil
	case CompressionBzip2:
		return io.NopCloser(bzip2.NewReader(r)), nil
	case CompressionZstd:
		if d.zs == nil {
			zr, err := zstd.NewReader(nil, zstdDecoderOptions()...)
			if err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
			d.zs = zr
		}
		if err := d.zs.Reset(r); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zstdReader{d.zs}, nil
	case CompressionLZ4:
		return io.NopCloser(lz4.NewReader(r)), nil
	}
	return nil, fmt.Errorf("decompress %q: %w", name, ErrUnsupportedCompression)
}

// Close frees the decoders' resources. The Decoders stays usable: the
// next Reader call builds new ones.
func (d *Decoders) Close() {
	if d.zs != nil {
		d.zs.Close()
		d.zs = nil
	}
	d.gz = nil
}

// zstdReader is a reset-able zstd stream: Close drops the input so the
// decoder can be reused (zstd.Decoder.IOReadCloser would close it for
// good).
type zstdReader struct{ d *zstd.Decoder }

func (z zstdReader) Read(p []byte) (int, error) { return z.d.Read(p) }

// WriteTo lets io.Copy skip the intermediate buffer.
func (z zstdReader) WriteTo(w io.Writer) (int64, error) { return z.d.WriteTo(w) }

func (z zstdReader) Close() error {
	// Reset(nil) only releases the reader; it reports
	// ErrDecoderNilInput to later reads, never an error here.
	_ = z.d.Reset(nil)
	return nil
}

// SniffDecompressor detects the compression of r from its first bytes and
// returns the plain stream plus the detected name.
func SniffDecompressor(r io.Reader) (io.ReadCloser, string, error) {
	var d Decoders
	rc, name, err := d.Sniff(r)
	if err != nil {
		return nil, name, err
	}
	return &ownedReader{ReadCloser: rc, d: &d}, name, nil
}

// Sniff is SniffDecompressor with d's reusable decoders; the reader is
// valid until the next call on d.
func (d *Decoders) Sniff(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(sniffLen)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", err
	}
	name := DetectCompression(head)
	rc, err := d.Reader(br, name)
	if err != nil {
		return nil, name, err
	}
	return rc, name, nil
}

// Encoders holds reusable compressors. Creating a zstd encoder allocates
// megabytes of tables, so an Archiver keeps one Encoders for its whole run
// and resets the encoder per file. An Encoders is not safe for concurrent
// use: give each goroutine its own.
type Encoders struct {
	level int // 0 = library default
	// single keeps each encoder in the calling goroutine (parallel
	// archive-wal workers: the parallelism is across files).
	single bool
	gz     *gzip.Writer
	zs     *zstd.Encoder
	lz     *lz4.Writer
}

// NewEncoders returns an empty set; encoders are created on first use.
// level is the compression level for gzip (1-9) and zstd (1-22, mapped to
// the nearest klauspost speed); 0 selects the fastest setting, which suits
// WAL (mostly page images and zero padding).
func NewEncoders(level int) *Encoders { return &Encoders{level: level} }

// Writer returns a compressor writing name-compressed bytes to w. The
// caller must Close it to flush; closing does not close w. The returned
// writer is only valid until the next call to Writer.
func (e *Encoders) Writer(w io.Writer, name string) (io.WriteCloser, error) {
	switch name {
	case CompressionNone:
		return nopWriteCloser{w}, nil
	case CompressionGzip:
		if e.gz == nil {
			lvl := gzip.BestSpeed
			if e.level > 0 {
				lvl = min(e.level, gzip.BestCompression)
			}
			gz, err := gzip.NewWriterLevel(w, lvl)
			if err != nil {
				return nil, fmt.Errorf("gzip: %w", err)
			}
			e.gz = gz
			return gz, nil
		}
		e.gz.Reset(w)
		return e.gz, nil
	case CompressionZstd:
		if e.zs == nil {
			lvl := zstd.SpeedFastest
			if e.level > 0 {
				// compression_level is a zstd level (1-22), as Barman
				// passes it to python-zstandard.
				lvl = zstd.EncoderLevelFromZstd(e.level)
			}
			opts := []zstd.EOption{zstd.WithEncoderLevel(lvl), zstd.WithEncoderCRC(true)}
			if e.single {
				opts = append(opts, zstd.WithEncoderConcurrency(1))
			}
			zs, err := zstd.NewWriter(w, opts...)
			if err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
			e.zs = zs
			return zs, nil
		}
		e.zs.Reset(w)
		return e.zs, nil
	case CompressionLZ4:
		if e.lz == nil {
			e.lz = lz4.NewWriter(w)
			if err := e.lz.Apply(lz4.ConcurrencyOption(1), lz4.ChecksumOption(true)); err != nil {
				return nil, fmt.Errorf("lz4: %w", err)
			}
			return e.lz, nil
		}
		e.lz.Reset(w)
		return e.lz, nil
	}
	return nil, ValidateCompression(name)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// ReadFrom lets io.Copy use the underlying writer's fast path (an
// *os.File's copy_file_range) when no compression is applied.
func (n nopWriteCloser) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := n.Writer.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{n.Writer}, r)
}
