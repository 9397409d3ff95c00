package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/cellar-backup/cellar/wal"
)

// ErrInvalidWAL is wrapped when archive_command (wal-archive, put-wal)
// refuses a WAL file: a segment of the wrong size or with a page header
// that does not match its name or the server, a .partial without a valid
// header, or an empty history or backup file. Refusing makes PostgreSQL
// keep the file and retry, instead of recycling the only good copy of a
// segment the archiver would later move to errors/.
var ErrInvalidWAL = errors.New("invalid WAL file")

// CheckWAL validates the plain content of the WAL file named n read from
// r, as archive_command accepts it: a segment must be exactly as long as
// its long header's xlp_seg_size, a valid segment size, and its header
// must match the name (timeline, page address) and sysID (skipped when
// 0); a .partial must start with such a header and be at most one
// segment; history and backup files must not be empty. Failures wrap
// ErrInvalidWAL; read errors are returned as they are.
func CheckWAL(r io.Reader, n wal.Name, sysID uint64) error {
	v := &validator{n: n, sysID: sysID, segSize: wal.DefaultSegmentSize, limit: maxTextFile}
	var head [wal.LongPageHeaderSize]byte
	hn, err := io.ReadFull(r, head[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if v.needsHeader() {
		seg, err := headerSegSize(head[:hn], n)
		if err != nil {
			return err
		}
		v.segSize, v.limit = seg, int64(seg)
	}
	if _, err := v.Write(head[:hn]); err != nil {
		return strictErr(err)
	}
	if _, err := io.Copy(v, r); err != nil {
		var inv *invalidError
		if errors.As(err, &inv) {
			return strictErr(err)
		}
		return err
	}
	return strictErr(v.done())
}

// headerSegSize is the segment size a segment's own first page declares,
// which its length must match.
func headerSegSize(head []byte, n wal.Name) (uint64, error) {
	h, err := wal.ParsePageHeader(head)
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %w", n, ErrInvalidWAL, err)
	}
	if !h.Long {
		return 0, fmt.Errorf("%s: %w: first page has no long header", n, ErrInvalidWAL)
	}
	if err := wal.ValidateSegmentSize(uint64(h.SegSize)); err != nil {
		return 0, fmt.Errorf("%s: %w: page header: %w", n, ErrInvalidWAL, err)
	}
	return uint64(h.SegSize), nil
}

func strictErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidWAL, err)
}

// CheckWALFile is CheckWAL for a plain file on disk (archive_command's
// %p), never following a symlink at its last component.
func CheckWALFile(path string, n wal.Name, sysID uint64) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return CheckWAL(f, n, sysID)
}

// checkStoredMember validates a received put-wal member (plain or
// compressed by the sender) in the temp file f.
func checkStoredMember(f *os.File, n wal.Name, sysID uint64) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r, _, err := SniffDecompressor(f)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", n, ErrInvalidWAL, err)
	}
	defer r.Close()
	return CheckWAL(r, n, sysID)
}
