package walclient

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellar-backup/cellar/wal"
)

// RestoreWrongWAL is wal-restore's exit status when the WAL it was about
// to hand over is not the restored cluster's (another system identifier,
// or a header that does not match the requested name). PostgreSQL treats
// a restore_command exit status above 125 like a signal: it aborts
// recovery (FATAL) instead of taking the failure for the end of the
// archive and promoting. Statuses 126 and 127 mean "not executable" and
// "not found" to the shell, and 128+N "killed by signal N", so this one
// is kept apart from all of them.
const RestoreWrongWAL = 200

// ErrWrongWAL is wrapped (via *WrongWALError) when a WAL file to be
// restored fails the header checks.
var ErrWrongWAL = errors.New("WAL file does not belong to the restored cluster")

// WrongWALError says which file failed which check. SystemID and Want are
// the system identifiers found in the file's first page and expected (0 =
// unknown).
type WrongWALError struct {
	File     string
	SystemID uint64
	Want     uint64
	Err      error
}

func (e *WrongWALError) Error() string {
	if e.Want != 0 && e.SystemID != e.Want {
		return fmt.Sprintf("%s is from database system %d, but the cluster being restored is %d", e.File, e.SystemID, e.Want)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *WrongWALError) Unwrap() []error { return []error{ErrWrongWAL, e.Err} }

// CheckRestored checks the WAL file about to be handed to PostgreSQL
// under name: for a segment, its first page's long header (magic, the
// system identifier sysID unless 0, a valid xlp_seg_size equal to the
// file's size, the name's timeline or an ancestor, the name's page
// address). History and backup-label files carry no page header and pass.
// A failed check is a *WrongWALError; an I/O error is returned as is.
func CheckRestored(f io.ReaderAt, size int64, name string, sysID uint64) error {
	n, err := wal.ParseName(name)
	if err != nil {
		return err
	}
	if n.Kind != wal.KindSegment {
		return nil
	}
	var head [wal.LongPageHeaderSize]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return &WrongWALError{File: name, Want: sysID, SystemID: sysID, Err: fmt.Errorf("only %d bytes", size)}
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	h, err := wal.ParsePageHeader(head[:])
	if err != nil {
		return &WrongWALError{File: name, Want: sysID, SystemID: sysID, Err: err}
	}
	if err := h.Validate(n, sysID, uint64(h.SegSize)); err != nil {
		return &WrongWALError{File: name, SystemID: h.SystemID, Want: sysID, Err: err}
	}
	if size != int64(h.SegSize) {
		return &WrongWALError{File: name, SystemID: h.SystemID, Want: sysID,
			Err: fmt.Errorf("file is %d bytes, its header says segments are %d", size, h.SegSize)}
	}
	return nil
}

// CheckRestoredFile is CheckRestored for a file on disk (never following
// a symlink).
func CheckRestoredFile(path, name string, sysID uint64) error {
	f, err := openNoFollow(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &WrongWALError{File: name, SystemID: sysID, Want: sysID, Err: fmt.Errorf("%s is not a regular file", path)}
	}
	return CheckRestored(f, fi.Size(), name, sysID)
}

// ControlSystemID returns the system identifier of the cluster in pgdata:
// the first 8 bytes of global/pg_control (ControlFileData starts with
// system_identifier, in the machine's byte order, little-endian on every
// platform PostgreSQL packages are built for).
func ControlSystemID(pgdata string) (uint64, error) {
	path := filepath.Join(pgdata, "global", "pg_control")
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	id := binary.LittleEndian.Uint64(b[:])
	if id == 0 {
		return 0, fmt.Errorf("%s: system identifier is 0", path)
	}
	return id, nil
}

// SpoolDirFor is the default prefetch spool of one restore: a directory
// under root (DefaultSpoolDir) named after the server, the system
// identifier being restored (0 = unknown) and the data directory, so that
// two restores (of different servers, clusters or data directories)
// never share prefetched segments. It lies outside the data directory, so
// no base backup of the restored cluster copies it.
func SpoolDirFor(root, server string, sysID uint64, pgdata string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(pgdata)))
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, server)
	return filepath.Join(root, fmt.Sprintf("%s-%d-%s", safe, sysID, hex.EncodeToString(sum[:8])))
}
