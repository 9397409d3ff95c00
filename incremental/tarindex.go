package incremental

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// TarIndex says where the members of an uncompressed tar archive (a
// backup's base.tar) lie, so that each file of a backup can be a Source
// without extracting it: R = io.NewSectionReader(archive, m.Offset, m.Size).
type TarIndex struct {
	// Files are the regular files by cleaned member name.
	Files map[string]TarMember
	// Dirs are the directory members, in archive order.
	Dirs []string
}

// TarMember is one regular file's data inside the archive.
type TarMember struct {
	Offset, Size int64
}

// IndexTar reads the archive name once from r, from its first byte, and
// indexes it. Member names must be relative paths inside the archive's
// root, and unique; sparse members, whose data is not stored contiguously,
// are refused. Errors wrap ErrCorrupt and name the archive and member.
func IndexTar(r io.Reader, name string) (*TarIndex, error) {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	idx := &TarIndex{Files: map[string]TarMember{}}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return idx, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: tar archive %s: %v", ErrCorrupt, name, err)
		}
		if err := idx.add(h, cr.n, name); err != nil {
			return nil, err
		}
	}
}

func (idx *TarIndex) add(h *tar.Header, offset int64, name string) error {
	member := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
	if member == "" || member == "." || path.IsAbs(member) || path.Clean(member) != member || member == ".." || strings.HasPrefix(member, "../") {
		return fmt.Errorf("%w: tar archive %s: unsafe member name %q", ErrCorrupt, name, h.Name)
	}
	switch h.Typeflag {
	case tar.TypeDir:
		idx.Dirs = append(idx.Dirs, member)
	case tar.TypeGNUSparse:
		return fmt.Errorf("%w: tar archive %s: member %s is sparse", ErrCorrupt, name, member)
	case tar.TypeReg:
		if isSparse(h) {
			return fmt.Errorf("%w: tar archive %s: member %s is sparse", ErrCorrupt, name, member)
		}
		if _, dup := idx.Files[member]; dup {
			return fmt.Errorf("%w: tar archive %s: member %s appears twice", ErrCorrupt, name, member)
		}
		idx.Files[member] = TarMember{Offset: offset, Size: h.Size}
	}
	return nil
}

func isSparse(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// countingReader tells how far tar.Reader has read: right after Next, that
// is where the member's data starts, since tar.Reader reads headers in whole
// blocks and nothing ahead of them.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Section returns the data of the member memberPath of the archive ra, for
// a Source's R.
func (idx *TarIndex) Section(ra io.ReaderAt, memberPath string) (*io.SectionReader, bool) {
	m, ok := idx.Files[memberPath]
	if !ok {
		return nil, false
	}
	return io.NewSectionReader(ra, m.Offset, m.Size), true
}
