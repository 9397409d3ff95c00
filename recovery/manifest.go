package recovery

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
)

// manifest is the part of a PostgreSQL backup_manifest a delta restore
// uses: each file's size and checksum, keyed by its path relative to PGDATA
// (tablespace files under pg_tblspc/<oid>/).
type manifest map[string]fileSum

func loadManifest(path string) (manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var doc struct {
		Files []struct {
			Path      string `json:"Path"`
			Size      int64  `json:"Size"`
			Algorithm string `json:"Checksum-Algorithm"`
			Checksum  string `json:"Checksum"`
		} `json:"Files"`
	}
	if err := json.NewDecoder(f).Decode(&doc); err != nil {
		return nil, fmt.Errorf("backup manifest %s: %w", path, err)
	}
	m := make(manifest, len(doc.Files))
	for _, e := range doc.Files {
		if e.Algorithm == "" || e.Algorithm == "NONE" {
			continue
		}
		m[e.Path] = fileSum{ok: true, size: e.Size, algorithm: e.Algorithm, checksum: e.Checksum}
	}
	return m, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32cHash produces PostgreSQL's manifest CRC-32C digest: the uint32 in
// little-endian byte order (as pg_checksum_final copies it on x86).
type crc32cHash struct{ sum uint32 }

func (c *crc32cHash) Write(p []byte) (int, error) {
	c.sum = crc32.Update(c.sum, castagnoli, p)
	return len(p), nil
}
func (c *crc32cHash) Sum(b []byte) []byte { return binary.LittleEndian.AppendUint32(b, c.sum) }
func (c *crc32cHash) Reset()              { c.sum = 0 }
func (c *crc32cHash) Size() int           { return 4 }
func (c *crc32cHash) BlockSize() int      { return 1 }

var errUnknownChecksum = errors.New("unknown manifest checksum algorithm")

func newManifestHash(alg string) (hash.Hash, error) {
	switch alg {
	case "CRC32C":
		return &crc32cHash{}, nil
	case "SHA224":
		return sha256.New224(), nil
	case "SHA256":
		return sha256.New(), nil
	case "SHA384":
		return sha512.New384(), nil
	case "SHA512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("%w %q", errUnknownChecksum, alg)
}

// fileChecksum hashes a file with a manifest algorithm (hex digest).
func fileChecksum(path, alg string) (string, error) {
	h, err := newManifestHash(alg)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readAllLimit reads r fully, refusing more than max bytes.
func readAllLimit(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}
