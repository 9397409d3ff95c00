package incremental

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/cellar-backup/cellar/wal"
)

// maxManifestBytes bounds how much of a manifest is read: a cluster with a
// million files has a manifest of a few hundred MB.
const maxManifestBytes = 1 << 30

// Manifest is what reconstruction needs from a backup_manifest.
type Manifest struct {
	// Name identifies the backup in errors (a backup id or a path).
	Name string
	// Version is PostgreSQL-Backup-Manifest-Version: 1, or 2 from
	// PostgreSQL 17 on.
	Version int
	// SystemIdentifier is the cluster's system identifier (0 in version
	// 1 manifests, which do not carry it).
	SystemIdentifier uint64
	// Files are the backup's files, paths relative to the data directory
	// with "/" separators; INCREMENTAL files keep their INCREMENTAL. name.
	Files []ManifestFile
	// WALRanges are the timelines and LSNs needed to make the backup
	// consistent; the earliest starts at the backup's start LSN.
	WALRanges []WALRange

	byPath map[string]int
}

// ManifestFile is one entry of a manifest's Files.
type ManifestFile struct {
	Path      string
	Size      int64
	Algorithm string // "" when the manifest has no checksum for it
	Checksum  string // hex
}

// WALRange is one entry of a manifest's WAL-Ranges.
type WALRange struct {
	Timeline   uint32
	Start, End wal.LSN
}

type rawManifest struct {
	Version   *int           `json:"PostgreSQL-Backup-Manifest-Version"`
	SystemID  *uint64        `json:"System-Identifier"`
	Files     *[]rawFile     `json:"Files"`
	WALRanges *[]rawWALRange `json:"WAL-Ranges"`
}

type rawFile struct {
	Path        *string `json:"Path"`
	EncodedPath *string `json:"Encoded-Path"`
	Size        *int64  `json:"Size"`
	Algorithm   string  `json:"Checksum-Algorithm"`
	Checksum    string  `json:"Checksum"`
}

type rawWALRange struct {
	Timeline *uint32 `json:"Timeline"`
	Start    string  `json:"Start-LSN"`
	End      string  `json:"End-LSN"`
}

// ParseManifest reads and validates the backup_manifest of the backup name:
// its own SHA-256 checksum, its version, safe and unique paths, sizes,
// checksums and WAL ranges. Errors wrap ErrCorrupt and name the backup.
func ParseManifest(r io.Reader, name string) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read backup_manifest of %s: %w", name, err)
	}
	if len(data) > maxManifestBytes {
		return nil, corruptManifest(name, "larger than %d bytes", maxManifestBytes)
	}
	if err := checkManifestChecksum(data, name); err != nil {
		return nil, err
	}
	var raw rawManifest
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, corruptManifest(name, "not valid JSON: %v", err)
	}
	return raw.validate(name)
}

func corruptManifest(name, format string, args ...any) error {
	return fmt.Errorf("%w: backup_manifest of %s: %s", ErrCorrupt, name, fmt.Sprintf(format, args...))
}

// checkManifestChecksum verifies the SHA-256 the server computes over
// everything before the Manifest-Checksum key's line.
func checkManifestChecksum(data []byte, name string) error {
	key := []byte("\"Manifest-Checksum\"")
	i := bytes.LastIndex(data, key)
	if i < 0 {
		return corruptManifest(name, "no Manifest-Checksum")
	}
	var tail struct {
		Checksum string `json:"Manifest-Checksum"`
	}
	if err := json.Unmarshal(append([]byte("{"), data[i:]...), &tail); err != nil {
		return corruptManifest(name, "unreadable Manifest-Checksum: %v", err)
	}
	sum := sha256.Sum256(data[:i])
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, tail.Checksum) {
		return corruptManifest(name, "checksum mismatch (computed %s, recorded %q): the file is damaged", got, tail.Checksum)
	}
	return nil
}

func (raw *rawManifest) validate(name string) (*Manifest, error) {
	if raw.Version == nil || (*raw.Version != 1 && *raw.Version != 2) {
		return nil, corruptManifest(name, "PostgreSQL-Backup-Manifest-Version must be 1 or 2")
	}
	m := &Manifest{Name: name, Version: *raw.Version, byPath: map[string]int{}}
	if raw.SystemID != nil {
		m.SystemIdentifier = *raw.SystemID
	}
	if raw.Files == nil || raw.WALRanges == nil || len(*raw.WALRanges) == 0 {
		return nil, corruptManifest(name, "Files and a non-empty WAL-Ranges are required")
	}
	for i, f := range *raw.Files {
		mf, err := f.validate(name, i)
		if err != nil {
			return nil, err
		}
		if _, dup := m.byPath[mf.Path]; dup {
			return nil, corruptManifest(name, "file %q listed twice", mf.Path)
		}
		m.byPath[mf.Path] = len(m.Files)
		m.Files = append(m.Files, mf)
	}
	for i, w := range *raw.WALRanges {
		r, err := w.validate(name, i)
		if err != nil {
			return nil, err
		}
		m.WALRanges = append(m.WALRanges, r)
	}
	return m, nil
}

func (f rawFile) validate(name string, i int) (ManifestFile, error) {
	p, err := f.path(name, i)
	if err != nil {
		return ManifestFile{}, err
	}
	if f.Size == nil || *f.Size < 0 {
		return ManifestFile{}, corruptManifest(name, "file %q has no valid Size", p)
	}
	mf := ManifestFile{Path: p, Size: *f.Size, Algorithm: strings.ToUpper(f.Algorithm), Checksum: strings.ToLower(f.Checksum)}
	if mf.Algorithm != "" {
		if _, err := NewChecksummer(mf.Algorithm); err != nil {
			return ManifestFile{}, corruptManifest(name, "file %q: %v", p, err)
		}
		if _, err := hex.DecodeString(mf.Checksum); err != nil || (mf.Checksum == "") != (mf.Algorithm == ChecksumNone) {
			return ManifestFile{}, corruptManifest(name, "file %q: bad %s checksum %q", p, mf.Algorithm, f.Checksum)
		}
	}
	return mf, nil
}

// path decodes Path or Encoded-Path (hex, for names that are not UTF-8) and
// refuses anything that could leave the data directory.
func (f rawFile) path(name string, i int) (string, error) {
	var p string
	switch {
	case f.Path != nil && f.EncodedPath == nil:
		p = *f.Path
	case f.EncodedPath != nil && f.Path == nil:
		b, err := hex.DecodeString(*f.EncodedPath)
		if err != nil {
			return "", corruptManifest(name, "file entry %d: bad Encoded-Path %q", i, *f.EncodedPath)
		}
		p = string(b)
	default:
		return "", corruptManifest(name, "file entry %d needs exactly one of Path and Encoded-Path", i)
	}
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.ContainsRune(p, 0) {
		return "", corruptManifest(name, "file entry %d: unsafe path %q", i, p)
	}
	return p, nil
}

func (w rawWALRange) validate(name string, i int) (WALRange, error) {
	start, err1 := wal.ParseLSN(w.Start)
	end, err2 := wal.ParseLSN(w.End)
	if w.Timeline == nil || *w.Timeline == 0 || err1 != nil || err2 != nil || end < start {
		return WALRange{}, corruptManifest(name, "WAL-Ranges entry %d is invalid (timeline, Start-LSN %q, End-LSN %q)", i, w.Start, w.End)
	}
	return WALRange{Timeline: *w.Timeline, Start: start, End: end}, nil
}

// File returns the entry for path p.
func (m *Manifest) File(p string) (ManifestFile, bool) {
	i, ok := m.byPath[p]
	if !ok {
		return ManifestFile{}, false
	}
	return m.Files[i], true
}

// StartLSN is where the backup's WAL starts (its checkpoint's redo point):
// the earliest start of its WAL ranges.
func (m *Manifest) StartLSN() wal.LSN {
	start := m.WALRanges[0].Start
	for _, r := range m.WALRanges[1:] {
		start = min(start, r.Start)
	}
	return start
}
