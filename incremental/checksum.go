package incremental

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"strings"
)

// Checksum algorithm names as a backup_manifest spells them
// ("Checksum-Algorithm").
const (
	ChecksumNone   = "NONE"
	ChecksumCRC32C = "CRC32C"
	ChecksumSHA224 = "SHA224"
	ChecksumSHA256 = "SHA256"
	ChecksumSHA384 = "SHA384"
	ChecksumSHA512 = "SHA512"
)

// DefaultChecksum is PostgreSQL's default manifest checksum.
const DefaultChecksum = ChecksumCRC32C

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksummer computes a file's manifest checksum while it is written.
type Checksummer struct {
	alg string
	h   hash.Hash
}

// NewChecksummer returns a Checksummer for a manifest algorithm name
// (case-insensitive; "" means NONE).
func NewChecksummer(alg string) (*Checksummer, error) {
	alg = strings.ToUpper(alg)
	var h hash.Hash
	switch alg {
	case "", ChecksumNone:
		alg = ChecksumNone
	case ChecksumCRC32C:
		h = crc32.New(castagnoli)
	case ChecksumSHA224:
		h = sha256.New224()
	case ChecksumSHA256:
		h = sha256.New()
	case ChecksumSHA384:
		h = sha512.New384()
	case ChecksumSHA512:
		h = sha512.New()
	default:
		return nil, fmt.Errorf("unknown manifest checksum algorithm %q (want NONE, CRC32C, SHA224, SHA256, SHA384 or SHA512)", alg)
	}
	return &Checksummer{alg: alg, h: h}, nil
}

// Algorithm is the manifest name of the algorithm.
func (c *Checksummer) Algorithm() string { return c.alg }

// Write adds p to the checksum; it never fails.
func (c *Checksummer) Write(p []byte) (int, error) {
	if c.h == nil {
		return len(p), nil
	}
	return c.h.Write(p)
}

// Sum is the checksum of everything written so far, hex-encoded as in a
// manifest's "Checksum" field ("" for NONE). PostgreSQL stores a CRC32C as
// the bytes of the integer in memory, so the hex is of its little-endian
// form on the little-endian machines it runs on.
func (c *Checksummer) Sum() string {
	if c.h == nil {
		return ""
	}
	if c.alg == ChecksumCRC32C {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], c.h.(hash.Hash32).Sum32())
		return hex.EncodeToString(b[:])
	}
	return hex.EncodeToString(c.h.Sum(nil))
}
