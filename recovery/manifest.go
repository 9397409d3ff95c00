package recovery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cellar-backup/cellar/catalog"
)

// ManifestName is the file, next to PGDATA's copy (plain) or the tar files,
// where PostgreSQL's backup manifest is stored.
const ManifestName = "backup_manifest"

// maxManifestSize bounds what is read as a manifest: about 200 bytes per
// file, so this allows millions of files while refusing to load a runaway
// file into memory.
const maxManifestSize = 1 << 30

// manifest is what a restore checks against: each file of the backup_manifest
// with its size and checksum, keyed by its path relative to PGDATA
// (tablespace files under pg_tblspc/<oid>/).
type manifest map[string]fileSum

// hasChecksums reports whether any file carries a checksum (a manifest made
// with --manifest-checksums=NONE proves sizes only).
func (m manifest) hasChecksums() bool {
	for _, s := range m {
		if s.checksum != "" {
			return true
		}
	}
	return false
}

// manifestDoc is the JSON of a backup_manifest, version 1 or 2.
type manifestDoc struct {
	Version int `json:"PostgreSQL-Backup-Manifest-Version"`
	Files   []struct {
		Path        string `json:"Path"`
		EncodedPath string `json:"Encoded-Path"`
		Size        *int64 `json:"Size"`
		Algorithm   string `json:"Checksum-Algorithm"`
		Checksum    string `json:"Checksum"`
	} `json:"Files"`
	Checksum string `json:"Manifest-Checksum"`
}

// loadManifest reads and checks the backup_manifest at p. A missing file
// is returned as fs.ErrNotExist; any other problem wraps ErrBackupDamaged.
func loadManifest(p string) (manifest, error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrBackupDamaged, err)
	}
	defer f.Close()
	data, err := readAllLimit(f, maxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrBackupDamaged, p, err)
	}
	m, err := parseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBackupDamaged, p, err)
	}
	return m, nil
}

// parseManifest parses a backup_manifest and checks it: its own SHA-256
// (over every byte before the "Manifest-Checksum" key), then every entry
// (a safe relative path, listed once, a size, a known algorithm and a hex
// checksum when there is one).
func parseManifest(data []byte) (manifest, error) {
	var doc manifestDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a backup manifest: %w", err)
	}
	// Version 2 (PostgreSQL 17+) adds System-Identifier, which the checks
	// here do not need.
	if doc.Version != 1 && doc.Version != 2 {
		return nil, fmt.Errorf("unsupported manifest version %d", doc.Version)
	}
	if err := checkManifestChecksum(data, doc.Checksum); err != nil {
		return nil, err
	}
	m := make(manifest, len(doc.Files))
	for i, e := range doc.Files {
		name, sum, err := manifestEntry(e.Path, e.EncodedPath, e.Size, e.Algorithm, e.Checksum)
		if err != nil {
			return nil, fmt.Errorf("file entry %d: %w", i+1, err)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("file %q listed twice", name)
		}
		m[name] = sum
	}
	return m, nil
}

func checkManifestChecksum(data []byte, want string) error {
	i := bytes.LastIndex(data, []byte(`"Manifest-Checksum"`))
	if i < 0 {
		return errors.New("no Manifest-Checksum")
	}
	sum := sha256.Sum256(data[:i])
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, want) {
		return fmt.Errorf("manifest checksum %s, computed %s: the manifest itself is damaged", want, got)
	}
	return nil
}

// manifestEntry validates one Files entry and returns its path and sum.
func manifestEntry(p, encoded string, size *int64, alg, sum string) (string, fileSum, error) {
	if encoded != "" {
		b, err := hex.DecodeString(encoded)
		if err != nil {
			return "", fileSum{}, fmt.Errorf("bad Encoded-Path %q", encoded)
		}
		p = string(b)
	}
	if !filepath.IsLocal(p) || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return "", fileSum{}, fmt.Errorf("unsafe path %q", p)
	}
	if size == nil || *size < 0 {
		return "", fileSum{}, fmt.Errorf("%s: missing or negative Size", p)
	}
	alg = strings.ToUpper(alg)
	if alg == "" {
		alg = "NONE"
	}
	if _, err := catalog.ManifestHash(alg); err != nil {
		return "", fileSum{}, fmt.Errorf("%s: %w", p, err)
	}
	if alg == "NONE" {
		sum = ""
	} else if _, err := hex.DecodeString(sum); err != nil || sum == "" {
		return "", fileSum{}, fmt.Errorf("%s: bad %s checksum %q", p, alg, sum)
	}
	return p, fileSum{ok: true, size: *size, algorithm: alg, checksum: strings.ToLower(sum)}, nil
}

// fileChecksum hashes a file with a manifest algorithm (hex digest).
func fileChecksum(path, alg string) (string, error) {
	h, err := catalog.ManifestHash(alg)
	if err != nil {
		return "", err
	}
	if h == nil {
		return "", fmt.Errorf("checksum %s: algorithm %s has no digest", path, alg)
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
