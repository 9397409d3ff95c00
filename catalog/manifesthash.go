package catalog

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"strings"
)

// ErrUnknownManifestChecksum is wrapped when a backup_manifest names a
// checksum algorithm PostgreSQL does not define.
var ErrUnknownManifestChecksum = errors.New("unknown manifest checksum algorithm")

// ManifestHash returns the hash for a backup_manifest Checksum-Algorithm
// (CRC32C, SHA224, SHA256, SHA384, SHA512; case-insensitive), or nil for
// NONE. Its digest is laid out as PostgreSQL writes it in the manifest, so
// hex.EncodeToString(h.Sum(nil)) compares directly with the Checksum field.
// The backup, recovery and passive packages all verify files with it.
func ManifestHash(alg string) (hash.Hash, error) {
	switch strings.ToUpper(alg) {
	case "NONE":
		return nil, nil
	case "CRC32C":
		return &crc32c{}, nil
	case "SHA224":
		return sha256.New224(), nil
	case "SHA256":
		return sha256.New(), nil
	case "SHA384":
		return sha512.New384(), nil
	case "SHA512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownManifestChecksum, alg)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is CRC-32C with PostgreSQL's manifest digest layout: the uint32 in
// little-endian byte order (pg_checksum_final copies it from memory on x86).
type crc32c struct{ sum uint32 }

func (c *crc32c) Write(p []byte) (int, error) {
	c.sum = crc32.Update(c.sum, castagnoli, p)
	return len(p), nil
}
func (c *crc32c) Sum(b []byte) []byte { return binary.LittleEndian.AppendUint32(b, c.sum) }
func (c *crc32c) Reset()              { c.sum = 0 }
func (c *crc32c) Size() int           { return 4 }
func (c *crc32c) BlockSize() int      { return 1 }
