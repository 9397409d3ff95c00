package catalog

import (
	"bytes"
	"errors"
	"io"
)

// compressionMagic maps the leading bytes of a compressed WAL file to the
// compression name Barman records in xlog.db.
var compressionMagic = []struct {
	magic []byte
	name  string
}{
	{[]byte{0x1f, 0x8b}, "gzip"},
	{[]byte("BZh"), "bzip2"},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd"},
	{[]byte{0x04, 0x22, 0x4d, 0x18}, "lz4"},
	{[]byte{0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00}, "xz"},
	{[]byte("\xff\x06\x00\x00sNaPpY"), "snappy"},
}

// sniffLen is the longest magic above.
const sniffLen = 10

// SniffCompression reads the first bytes of r and names its compression
// (gzip, bzip2, zstd, lz4, xz, snappy), or returns "" for anything else,
// including a plain WAL segment and a file shorter than every magic.
func SniffCompression(r io.Reader) (string, error) {
	buf := make([]byte, sniffLen)
	n, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return CompressionFromMagic(buf[:n]), nil
}

// CompressionFromMagic names the compression of a stream from its first
// bytes (gzip, bzip2, zstd, lz4, xz, snappy), or "" when none matches. The
// magics are disjoint, and none can match a WAL segment's XLOG_PAGE_MAGIC.
// archive-wal, rebuild-xlogdb and recover all detect compression with it.
func CompressionFromMagic(head []byte) string {
	for _, m := range compressionMagic {
		if bytes.HasPrefix(head, m.magic) {
			return m.name
		}
	}
	return ""
}
