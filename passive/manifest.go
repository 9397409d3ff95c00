package passive

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
	"path/filepath"
	"strings"

	"github.com/cellar-backup/cellar/catalog"
)

// manifestFile is one Files entry of a PostgreSQL backup_manifest.
type manifestFile struct {
	Path        string `json:"Path"`
	EncodedPath string `json:"Encoded-Path"`
	Size        int64  `json:"Size"`
	Algorithm   string `json:"Checksum-Algorithm"`
	Checksum    string `json:"Checksum"`
}

// verifyManifest checks a synchronised plain backup against its
// backup_manifest (base/<id>/data/backup_manifest, or base/<id>/ for
// Barman's layout): every listed file exists with the listed size and
// checksum. Backups stored as tar archives carry their files inside the
// archives; those were already checked member by member against the
// primary's SHA-256, so only the manifest's own checksum is verified.
func verifyManifest(dir string) error {
	var mpath string
	for _, p := range []string{filepath.Join(dir, "data", "backup_manifest"), filepath.Join(dir, "backup_manifest")} {
		if _, err := os.Stat(p); err == nil {
			mpath = p
			break
		}
	}
	if mpath == "" {
		return nil
	}
	data, err := os.ReadFile(mpath)
	if err != nil {
		return err
	}
	var m struct {
		Version  int            `json:"PostgreSQL-Backup-Manifest-Version"`
		Files    []manifestFile `json:"Files"`
		Checksum string         `json:"Manifest-Checksum"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSyncVerify, mpath, err)
	}
	if i := bytes.LastIndex(data, []byte(`"Manifest-Checksum"`)); i >= 0 {
		sum := sha256.Sum256(data[:i])
		if hex.EncodeToString(sum[:]) != m.Checksum {
			return fmt.Errorf("%w: %s: manifest checksum mismatch", ErrSyncVerify, mpath)
		}
	}
	root := filepath.Dir(mpath)
	if archived, err := hasArchives(root); err != nil || archived {
		return err
	}
	var problems []string
	for _, f := range m.Files {
		name := f.Path
		if f.EncodedPath != "" {
			b, err := hex.DecodeString(f.EncodedPath)
			if err != nil {
				return fmt.Errorf("%w: %s: bad Encoded-Path", ErrSyncVerify, mpath)
			}
			name = string(b)
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%w: %s: unsafe path %q", ErrSyncVerify, mpath, name)
		}
		p := manifestLocate(dir, root, name)
		if err := checkManifestFile(p, f); err != nil {
			problems = append(problems, name+": "+err.Error())
			if len(problems) >= 5 {
				problems = append(problems, "...")
				break
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: backup_manifest: %s", ErrSyncVerify, strings.Join(problems, "; "))
	}
	return nil
}

// manifestLocate maps a manifest path to the backup tree: tablespace files
// (pg_tblspc/<oid>/...) live in base/<id>/<oid>/ in Barman's layout.
func manifestLocate(dir, root, name string) string {
	if rest, ok := strings.CutPrefix(name, "pg_tblspc/"); ok {
		if oid, sub, ok := strings.Cut(rest, "/"); ok {
			p := filepath.Join(dir, oid, filepath.FromSlash(sub))
			if _, err := os.Lstat(p); err == nil {
				return p
			}
		}
	}
	return filepath.Join(root, filepath.FromSlash(name))
}

func hasArchives(root string) (bool, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !e.IsDir() && strings.Contains(e.Name(), ".tar") {
			return true, nil
		}
	}
	return false, nil
}

func checkManifestFile(path string, f manifestFile) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return errors.New("missing")
	}
	if err != nil {
		return err
	}
	if fi.Size() != f.Size {
		return fmt.Errorf("size %d, manifest says %d", fi.Size(), f.Size)
	}
	if f.Algorithm == "" {
		return nil
	}
	h, err := catalog.ManifestHash(f.Algorithm)
	if err != nil {
		return err
	}
	if h == nil { // NONE: the size check above is all there is
		return nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	if _, err := io.Copy(h, fh); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, f.Checksum) {
		return fmt.Errorf("%s checksum %s, manifest says %s", f.Algorithm, got, f.Checksum)
	}
	return nil
}
