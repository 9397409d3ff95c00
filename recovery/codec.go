package recovery

import (
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/cellar-backup/cellar/catalog"
)

// This is a private copy of the few decoders recovery needs: the archive
// package owns WAL codecs but sits at the same layer, so it cannot be
// imported from here.

// errUnsupportedCompression is wrapped when a stream uses a codec Cellar
// cannot read (xz, snappy, or an unknown name).
var errUnsupportedCompression = errors.New("unsupported compression")

// sniffCodec names the compression of a stream from its first bytes, or ""
// when it is not compressed. WAL pages and tar headers cannot start with
// any of these magics.
func sniffCodec(head []byte) string { return catalog.CompressionFromMagic(head) }

// codecFromSuffix maps a tar file suffix (as pg_basebackup and Cellar name
// them) to a codec name.
func codecFromSuffix(name string) string {
	switch {
	case strings.HasSuffix(name, ".gz"), strings.HasSuffix(name, ".tgz"):
		return "gzip"
	case strings.HasSuffix(name, ".zst"), strings.HasSuffix(name, ".zstd"):
		return "zstd"
	case strings.HasSuffix(name, ".lz4"):
		return "lz4"
	case strings.HasSuffix(name, ".bz2"):
		return "bzip2"
	}
	return ""
}

// decoder returns the plain bytes of r compressed with codec. Close
// releases decoder resources but does not close r.
func decoder(r io.Reader, codec string) (io.ReadCloser, error) {
	switch codec {
	case "", "none", "None":
		return io.NopCloser(r), nil
	case "gzip", "pygzip", "pigz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case "bzip2", "pybzip2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	case "lz4":
		return io.NopCloser(lz4.NewReader(r)), nil
	}
	return nil, fmt.Errorf("compression %q: %w", codec, errUnsupportedCompression)
}

// sniffDecoder detects the codec from the first bytes of r (falling back to
// hint when the stream is too short to tell) and decodes it.
func sniffDecoder(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	head, err := br.Peek(10)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return decoder(br, sniffCodec(head))
}
