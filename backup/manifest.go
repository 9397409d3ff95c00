package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strconv"

	"github.com/cellar-backup/cellar/catalog"
)

// ErrManifest reports a backup whose received files do not match the
// server's backup_manifest.
var ErrManifest = errors.New("backup manifest mismatch")

// newChecksum returns the hash for a manifest checksum algorithm ("" is
// PostgreSQL's default, CRC32C), or nil for NONE.
func newChecksum(alg string) (hash.Hash, error) {
	if alg == "" {
		alg = "CRC32C"
	}
	return catalog.ManifestHash(alg)
}

// FileSum is what was received for one regular file of the backup: its path
// as the manifest names it (relative to PGDATA, tablespace files under
// pg_tblspc/<oid>/), size and checksum (hex).
type FileSum struct {
	Path     string
	Size     int64
	Checksum string
}

// Manifest is the part of a PostgreSQL backup_manifest Cellar uses.
type Manifest struct {
	Version int `json:"PostgreSQL-Backup-Manifest-Version"`
	// SystemID is the cluster's system identifier, in manifests of
	// version 2 (PostgreSQL 17+); 0 in version 1.
	SystemID uint64         `json:"System-Identifier"`
	Files    []ManifestFile `json:"Files"`
	// WALRanges and Manifest-Checksum are checked in ParseManifest.
	WALRanges []struct {
		Timeline uint32 `json:"Timeline"`
		StartLSN string `json:"Start-LSN"`
		EndLSN   string `json:"End-LSN"`
	} `json:"WAL-Ranges"`
	Checksum string `json:"Manifest-Checksum"`
}

// ManifestFile is one entry of Files.
type ManifestFile struct {
	Path        string `json:"Path"`
	EncodedPath string `json:"Encoded-Path"`
	Size        int64  `json:"Size"`
	Algorithm   string `json:"Checksum-Algorithm"`
	Checksum    string `json:"Checksum"`
}

// Name is the file's path, decoding Encoded-Path (used for non-UTF-8 names).
func (f ManifestFile) Name() (string, error) {
	if f.EncodedPath != "" {
		b, err := hex.DecodeString(f.EncodedPath)
		if err != nil {
			return "", fmt.Errorf("%w: bad Encoded-Path %q", ErrManifest, f.EncodedPath)
		}
		return string(b), nil
	}
	return f.Path, nil
}

// ParseManifest parses a backup_manifest and checks its own SHA-256
// checksum, which covers every byte before the "Manifest-Checksum" line.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	switch m.Version {
	case 1:
	case 2:
		if m.SystemID == 0 {
			return nil, fmt.Errorf("%w: version 2 manifest without System-Identifier", ErrManifest)
		}
	default:
		return nil, fmt.Errorf("%w: unsupported manifest version %d (Cellar knows 1 and 2)", ErrManifest, m.Version)
	}
	i := bytes.LastIndex(data, []byte(`"Manifest-Checksum"`))
	if i < 0 {
		return nil, fmt.Errorf("%w: no Manifest-Checksum", ErrManifest)
	}
	sum := sha256.Sum256(data[:i])
	if got := hex.EncodeToString(sum[:]); got != m.Checksum {
		return nil, fmt.Errorf("%w: manifest checksum %s, computed %s", ErrManifest, m.Checksum, got)
	}
	return &m, nil
}

// CheckSystemID checks a version 2 manifest's System-Identifier against
// the server's (decimal text, as IDENTIFY_SYSTEM gives it): a manifest of
// another cluster must not pass as this backup's. Version 1 manifests carry
// no identifier and pass.
func (m *Manifest) CheckSystemID(sysid string) error {
	if m.Version < 2 {
		return nil
	}
	if want := strconv.FormatUint(m.SystemID, 10); want != sysid {
		return fmt.Errorf("%w: manifest System-Identifier %s, server system identifier %s", ErrManifest, want, sysid)
	}
	return nil
}

// Lookup returns the manifest's files by path.
func (m *Manifest) Lookup() (map[string]ManifestFile, error) {
	out := make(map[string]ManifestFile, len(m.Files))
	for _, f := range m.Files {
		name, err := f.Name()
		if err != nil {
			return nil, err
		}
		out[name] = f
	}
	return out, nil
}

// Verify checks that the received files are exactly the manifest's files,
// with equal sizes and checksums. The first few problems are reported.
func (m *Manifest) Verify(got []FileSum) error {
	want, err := m.Lookup()
	if err != nil {
		return err
	}
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < 5 {
			problems = append(problems, fmt.Sprintf(format, args...))
		} else if len(problems) == 5 {
			problems = append(problems, "...")
		}
	}
	seen := make(map[string]bool, len(got))
	for _, g := range got {
		if g.Path == "backup_manifest" {
			continue
		}
		seen[g.Path] = true
		w, ok := want[g.Path]
		if !ok {
			add("%s: received but not in manifest", g.Path)
			continue
		}
		if w.Size != g.Size {
			add("%s: size %d, manifest says %d", g.Path, g.Size, w.Size)
			continue
		}
		if w.Algorithm != "" && w.Algorithm != "NONE" && g.Checksum != "" && w.Checksum != g.Checksum {
			add("%s: %s checksum %s, manifest says %s", g.Path, w.Algorithm, g.Checksum, w.Checksum)
		}
	}
	var missing []string
	for p := range want {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	for _, p := range missing {
		add("%s: in manifest but not received", p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrManifest, joinProblems(problems))
	}
	return nil
}

func joinProblems(p []string) string {
	var b bytes.Buffer
	for i, s := range p {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s)
	}
	return b.String()
}
