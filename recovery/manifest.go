package recovery

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/cellar-backup/cellar/catalog"
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
