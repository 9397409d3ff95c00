package passive

import (
	"archive/tar"
	"bufio"
	"context"
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
	"github.com/cellar-backup/cellar/wal"
)

// Tar stream of a backup (primary -> passive):
//
//	meta/backup.info   the primary's backup.info, byte for byte
//	base/<rel>         every directory, file and symlink of base/<id>/
//	                   (except backup.info and .backup.lock); files the
//	                   passive already has (same size and SHA-256) are
//	                   listed only in meta/files
//	meta/files         JSON []FileState of the complete tree, last
const (
	entryBackupInfo = "meta/backup.info"
	entryFileList   = "meta/files"
	entryBasePrefix = "base/"
)

// FileState describes one entry of a backup directory.
type FileState struct {
	Path   string `json:"path"`
	Type   string `json:"type"` // file, dir or symlink
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Mode   uint32 `json:"mode,omitempty"`
	MTime  int64  `json:"mtime,omitempty"` // Unix nanoseconds
	Target string `json:"target,omitempty"`
}

// sendExcluded are base/<id>/ entries never copied (Barman excludes them
// from its rsync too): the legacy backup.info travels as meta/backup.info.
func sendExcluded(rel string) bool {
	return rel == "backup.info" || rel == ".backup.lock"
}

// ReadHaveList decodes the passive's list of files it already holds.
func ReadHaveList(r io.Reader) ([]FileState, error) {
	var have []FileState
	data, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("read file list: %w", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(data, &have); err != nil {
		return nil, fmt.Errorf("decode file list: %w", err)
	}
	return have, nil
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SendBackup writes the tar stream of backup id (primary side of
// sync-backup). Files listed in have with an equal size and SHA-256 are not
// sent again, which makes an interrupted sync resumable.
func SendBackup(ctx context.Context, layout catalog.Layout, id string, have []FileState, w io.Writer) error {
	if err := catalog.ParseBackupID(id); err != nil {
		return fmt.Errorf("server %s: %w", layout.Server, err)
	}
	infoPath := layout.BackupInfoPath(id)
	infoData, err := os.ReadFile(infoPath)
	if err != nil {
		return fmt.Errorf("server %s: backup %s: %w", layout.Server, id, err)
	}
	b, err := catalog.ParseBackupInfo(infoData, infoPath)
	if err != nil {
		return fmt.Errorf("server %s: backup %s: %w", layout.Server, id, err)
	}
	if b.Status != catalog.StatusDone {
		return fmt.Errorf("server %s: backup %s is %s, not DONE", layout.Server, id, b.Status)
	}
	haveBy := make(map[string]FileState, len(have))
	for _, h := range have {
		haveBy[h.Path] = h
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	tw := tar.NewWriter(bw)
	if err := tw.WriteHeader(&tar.Header{Name: entryBackupInfo, Mode: 0o600, Size: int64(len(infoData)), Typeflag: tar.TypeReg, ModTime: b.EndTime}); err != nil {
		return err
	}
	if _, err := tw.Write(infoData); err != nil {
		return err
	}
	root := layout.BackupDirPath(id)
	var list []FileState
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, werr error) error {
		if werr != nil {
			return werr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if sendExcluded(rel) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := FileState{Path: rel, Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UnixNano()}
		hdr := &tar.Header{Name: entryBasePrefix + rel, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			st.Type = "dir"
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			st.Type, st.Target = "symlink", target
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			st.Type, st.Size = "file", fi.Size()
			if h, ok := haveBy[rel]; ok && h.Type == "file" && h.Size == fi.Size() {
				sum, err := sha256File(path)
				if err != nil {
					return err
				}
				if sum == h.SHA256 {
					st.SHA256 = sum
					break
				}
			}
			sum, err := sendFile(tw, hdr, path, fi.Size())
			if err != nil {
				return err
			}
			st.SHA256 = sum
		default:
			// Sockets, fifos, devices: never part of a backup.
			return nil
		}
		list = append(list, st)
		return nil
	})
	if err != nil {
		return fmt.Errorf("server %s: backup %s: send: %w", layout.Server, id, err)
	}
	data, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: entryFileList, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func sendFile(tw *tar.Writer, hdr *tar.Header, path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr.Typeflag, hdr.Size = tar.TypeReg, size
	if err := tw.WriteHeader(hdr); err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.CopyN(io.MultiWriter(tw, h), f, size)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s: shrank while sending (%d of %d bytes)", path, n, size)
		}
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SendWALs writes a tar stream of the named archived WAL files (primary
// side of sync-wals), each entry named after the WAL file, in order.
func SendWALs(ctx context.Context, layout catalog.Layout, names []string, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	tw := tar.NewWriter(bw)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := wal.ParseName(name)
		if err != nil {
			return fmt.Errorf("server %s: sync-wals-send: %w", layout.Server, err)
		}
		path := layout.WALPath(n)
		fi, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("server %s: WAL %s: %w", layout.Server, name, err)
		}
		hdr := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
		if _, err := sendFile(tw, hdr, path, fi.Size()); err != nil {
			return fmt.Errorf("server %s: WAL %s: %w", layout.Server, name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// ReadWALNames reads WAL names, one per line, skipping blank lines.
func ReadWALNames(r io.Reader) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			names = append(names, s)
		}
	}
	return names, sc.Err()
}
