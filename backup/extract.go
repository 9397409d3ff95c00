package backup

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// extractor writes one archive as a plain directory tree (Barman's plain
// layout). With prev set (reuse_backup=link) a file whose bytes equal the
// previous backup's file at the same path becomes a hard link to it: the
// incoming data is compared chunk by chunk and nothing is written until the
// first difference.
type extractor struct {
	c      *copier
	dest   string // base/<id>/data or base/<id>/<oid>
	prev   string // same directory in the previous backup, or ""
	prefix string // manifest path prefix
	base   bool   // the main data directory archive
}

func (x *extractor) extract(r io.Reader) error {
	if err := x.c.mkdir(x.dest); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive for %s: %w", x.dest, err)
		}
		name, err := checkName(hdr.Name)
		if err != nil {
			return err
		}
		target := filepath.Join(x.dest, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := x.c.mkdir(target); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := x.c.mkdir(filepath.Dir(target)); err != nil {
				return err
			}
			if err := x.file(name, target, hdr.Size, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := x.symlink(name, target, hdr.Linkname); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: member %q of unsupported type %q", ErrUnsafePath, hdr.Name, hdr.Typeflag)
		}
	}
}

// symlink accepts only pg_tblspc/<oid> links of the main archive, and points
// them at the tablespace's copy in this backup, as pg_basebackup's
// --tablespace-mapping does for Barman.
func (x *extractor) symlink(name, target, _ string) error {
	dir, oidText, ok := strings.Cut(name, "/")
	if !x.base || !ok || dir != "pg_tblspc" {
		return fmt.Errorf("%w: symlink %q", ErrUnsafePath, name)
	}
	if _, err := parseOID(oidText); err != nil {
		return fmt.Errorf("%w: symlink %q", ErrUnsafePath, name)
	}
	if err := x.c.mkdir(filepath.Dir(target)); err != nil {
		return err
	}
	abs, err := filepath.Abs(filepath.Join(x.c.dir, oidText))
	if err != nil {
		return err
	}
	if err := os.Symlink(abs, target); err != nil {
		return fmt.Errorf("create tablespace link %s: %w", target, err)
	}
	return nil
}

func (x *extractor) file(name, target string, size int64, r io.Reader) error {
	c := x.c
	h := c.newHash()
	var label *bytes.Buffer
	if x.base && name == "backup_label" {
		label = &bytes.Buffer{}
		r = io.TeeReader(r, label)
	}
	var n int64
	var err error
	linked := false
	if x.prev != "" {
		n, linked, err = x.reuse(filepath.Join(x.prev, filepath.FromSlash(name)), target, size, r, h)
	} else {
		n, err = x.write(target, r, h)
	}
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: got %d bytes, tar header says %d", target, n, size)
	}
	if label != nil {
		c.label = label.Bytes()
	}
	c.copied += n
	if linked {
		c.linked += n
	}
	c.record(x.prefix+name, n, h)
	return nil
}

// write creates target from r; the syncer fsyncs and closes it.
func (x *extractor) write(target string, r io.Reader, h hash.Hash) (int64, error) {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", target, err)
	}
	n, err := x.c.copyMember(f, r, h)
	if err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", target, err)
	}
	x.c.sync.add(f)
	return n, nil
}

// reuse links target to prev when the incoming data equals prev's bytes.
func (x *extractor) reuse(prev, target string, size int64, r io.Reader, h hash.Hash) (int64, bool, error) {
	fi, err := os.Lstat(prev)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		n, err := x.write(target, r, h)
		return n, false, err
	}
	pf, err := os.Open(prev)
	if err != nil {
		n, err := x.write(target, r, h)
		return n, false, err
	}
	defer pf.Close()
	buf := x.c.buf
	pbuf := make([]byte, len(buf))
	var matched int64
	for {
		k, rerr := io.ReadFull(r, buf)
		if k > 0 {
			chunk := buf[:k]
			h.Write(chunk)
			pk, _ := io.ReadFull(pf, pbuf[:k])
			if pk != k || !bytes.Equal(pbuf[:k], chunk) {
				// First difference: write the equal prefix from prev, this
				// chunk, then the rest of the stream.
				f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return 0, false, fmt.Errorf("create %s: %w", target, err)
				}
				if _, err := io.Copy(f, io.NewSectionReader(pf, 0, matched)); err != nil {
					f.Close()
					return 0, false, fmt.Errorf("copy reused prefix into %s: %w", target, err)
				}
				if _, err := f.Write(chunk); err != nil {
					f.Close()
					return 0, false, fmt.Errorf("write %s: %w", target, err)
				}
				n := matched + int64(k)
				if !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
					m, err := x.c.copyMember(f, r, h)
					if err != nil {
						f.Close()
						return 0, false, fmt.Errorf("write %s: %w", target, err)
					}
					n += m
				}
				x.c.sync.add(f)
				return n, false, nil
			}
			matched += int64(k)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return 0, false, fmt.Errorf("read %s: %w", target, rerr)
		}
	}
	if matched != size {
		return 0, false, fmt.Errorf("%s: got %d bytes, tar header says %d", target, matched, size)
	}
	if err := os.Link(prev, target); err != nil {
		return 0, false, fmt.Errorf("link %s to %s: %w", target, prev, err)
	}
	return matched, true, nil
}
