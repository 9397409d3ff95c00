package catalog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/renameio/v2"

	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
)

// WALInfo is one xlog.db line: an archived WAL file's name, stored size,
// original mtime (seconds since the epoch) and how it is stored.
// Compression and Encryption are "" for Barman's None.
type WALInfo struct {
	Name        string
	Size        int64
	Time        float64
	Compression string
	Encryption  string
}

// ErrInvalidXLogLine is wrapped by every xlog.db line parse error.
var ErrInvalidXLogLine = errors.New("invalid xlog.db line")

// ParseXLogLine parses one xlog.db line. Like Barman it splits on blanks
// and accepts 3 (no compression), 4 (no encryption) or 5 fields; "None"
// means no compression/encryption. The trailing newline is optional.
func ParseXLogLine(line string) (WALInfo, error) {
	f := strings.Fields(line)
	if len(f) < 3 || len(f) > 5 {
		return WALInfo{}, fmt.Errorf("%w: %q: %d fields", ErrInvalidXLogLine, line, len(f))
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return WALInfo{}, fmt.Errorf("%w: %q: bad size %q", ErrInvalidXLogLine, line, f[1])
	}
	t, err := strconv.ParseFloat(f[2], 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return WALInfo{}, fmt.Errorf("%w: %q: bad time %q", ErrInvalidXLogLine, line, f[2])
	}
	info := WALInfo{Name: f[0], Size: size, Time: t}
	if len(f) > 3 && f[3] != "None" {
		info.Compression = f[3]
	}
	if len(f) > 4 && f[4] != "None" {
		info.Encryption = f[4]
	}
	return info, nil
}

// Line formats w as Barman writes it:
// "name\tsize\ttime\tcompression\tencryption\n", time as Python str(float).
// ModTime is the file's original mtime, which xlog.db keeps as float
// seconds since the epoch.
func (w WALInfo) ModTime() time.Time {
	sec := int64(w.Time)
	return time.Unix(sec, int64((w.Time-float64(sec))*1e9))
}

// Line is the xlog.db line for w, newline included.
func (w WALInfo) Line() string {
	return string(w.appendLine(nil))
}

func (w WALInfo) appendLine(b []byte) []byte {
	return w.appendFields(b, 5)
}

// appendFields appends w's line with n fields: 5, or 4 (Barman before
// 3.13, whose reader rejects a fifth field) when w is not encrypted.
func (w WALInfo) appendFields(b []byte, n int) []byte {
	b = append(b, w.Name...)
	b = append(b, '\t')
	b = strconv.AppendInt(b, w.Size, 10)
	b = append(b, '\t')
	b = append(b, PyFloat(w.Time)...)
	b = append(b, '\t')
	b = append(b, noneIfEmpty(w.Compression)...)
	if n > 4 || w.Encryption != "" {
		b = append(b, '\t')
		b = append(b, noneIfEmpty(w.Encryption)...)
	}
	return append(b, '\n')
}

// formatOfXLogDB is the format of a WAL catalog file, told by its name:
// only Barman 3.13+ names it <server>-xlog.db.
func formatOfXLogDB(path string) Format {
	if filepath.Base(path) == legacyXLogDBName {
		return FormatBarman34
	}
	return FormatBarman317
}

// encodeLines formats infos for the WAL catalog at path. An encrypted WAL
// cannot be listed in a Barman 3.4 catalog, whose lines have no
// encryption field.
func encodeLines(path string, buf []byte, infos []WALInfo) ([]byte, error) {
	f := formatOfXLogDB(path)
	for _, w := range infos {
		if w.Encryption != "" && f == FormatBarman34 {
			return nil, fmt.Errorf("xlog.db %s: %s: encryption %s cannot be stored in a Barman %s catalog", path, w.Name, w.Encryption, f)
		}
		buf = w.appendFields(buf, f.xlogFields())
	}
	return buf, nil
}

func noneIfEmpty(s string) string {
	if s == "" {
		return "None"
	}
	return s
}

// validate refuses values that would not read back as the same line.
func (w WALInfo) validate() error {
	bad := func(s string) bool {
		return strings.IndexFunc(s, func(r rune) bool { return strings.ContainsRune(" \t\n\r\v\f\u0085\u00a0", r) || r == 0 }) >= 0
	}
	switch {
	case w.Name == "" || bad(w.Name):
		return fmt.Errorf("%w: bad WAL name %q", ErrInvalidXLogLine, w.Name)
	case w.Size < 0:
		return fmt.Errorf("%w: %s: negative size", ErrInvalidXLogLine, w.Name)
	case bad(w.Compression) || w.Compression == "None":
		return fmt.Errorf("%w: %s: bad compression %q", ErrInvalidXLogLine, w.Name, w.Compression)
	case bad(w.Encryption) || w.Encryption == "None":
		return fmt.Errorf("%w: %s: bad encryption %q", ErrInvalidXLogLine, w.Name, w.Encryption)
	case math.IsNaN(w.Time) || math.IsInf(w.Time, 0):
		return fmt.Errorf("%w: %s: time is not finite", ErrInvalidXLogLine, w.Name)
	}
	return nil
}

// XLogEntry is a parsed line and the byte offset where it starts.
type XLogEntry struct {
	WALInfo
	Offset int64
}

// XLogDB is a server's WAL catalog file. Every method takes the blocking
// .<srv>-xlogdb.lock first, so methods must not be called from inside a
// Scan callback (that would wait for itself until ctx ends).
//
// Appends are O(1): one O_APPEND write plus fsync. A crash can leave a
// last line without its newline; readers ignore such a fragment and the
// next append truncates it. Rewrites go to a temp file renamed over the
// catalog, so readers never see a half-written file.
type XLogDB struct {
	layout Layout
	ops    durable.Ops
}

// OpenXLogDB returns the catalog handle of a layout. It does no I/O.
func OpenXLogDB(l Layout) *XLogDB { return &XLogDB{layout: l, ops: durable.OS()} }

// OpenXLogDBWithOps is OpenXLogDB whose deletions and re-indexing
// (Rewrite, Reindex) replace the file through ops (tests inject failures
// with it).
func OpenXLogDBWithOps(l Layout, ops durable.Ops) *XLogDB { return &XLogDB{layout: l, ops: ops} }

// Path returns the catalog path in use (see Layout.XLogDBPath).
func (x *XLogDB) Path() string { return x.layout.XLogDBPath() }

func (x *XLogDB) lock(ctx context.Context) (*lock.Lock, error) {
	lk, err := lock.Acquire(ctx, x.layout.XLogDBLockPath())
	if err != nil {
		return nil, fmt.Errorf("server %s: xlog.db: %w", x.layout.Server, err)
	}
	return lk, nil
}

// withLock runs fn under the xlog.db lock; a missing catalog is rebuilt
// from wals/ first, as Barman does. rebuilt reports whether that happened.
func (x *XLogDB) withLock(ctx context.Context, fn func(path string, rebuilt []WALInfo) error) (err error) {
	lk, err := x.lock(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := lk.Release(); err == nil && rerr != nil {
			err = rerr
		}
	}()
	path := x.layout.XLogDBPath()
	var rebuilt []WALInfo
	if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
		rebuilt, err = x.rebuildLocked(ctx, path)
		if err != nil {
			return err
		}
		if rebuilt == nil {
			rebuilt = []WALInfo{}
		}
	}
	return fn(path, rebuilt)
}

// Append adds lines for infos at the end of the catalog and fsyncs them.
// If the file ends with a torn line (a crash mid-append), the fragment is
// truncated first. When the catalog was missing and had to be rebuilt,
// infos already found on disk by the rebuild are not appended twice.
func (x *XLogDB) Append(ctx context.Context, infos ...WALInfo) error {
	for _, w := range infos {
		if err := w.validate(); err != nil {
			return fmt.Errorf("server %s: xlog.db append: %w", x.layout.Server, err)
		}
	}
	if len(infos) == 0 {
		return nil
	}
	return x.withLock(ctx, func(path string, rebuilt []WALInfo) error {
		if rebuilt != nil {
			seen := make(map[string]bool, len(rebuilt))
			for _, w := range rebuilt {
				seen[w.Name] = true
			}
			infos = slices.DeleteFunc(slices.Clone(infos), func(w WALInfo) bool { return seen[w.Name] })
		}
		buf, err := encodeLines(path, nil, infos)
		if err != nil {
			return err
		}
		return appendDurably(path, buf)
	})
}

func appendDurably(path string, buf []byte) (err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("xlog.db %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("xlog.db %s: %w", path, cerr)
		}
	}()
	if err := repairTornTail(f); err != nil {
		return fmt.Errorf("xlog.db %s: repair torn line: %w", path, err)
	}
	if len(buf) == 0 {
		return nil
	}
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("xlog.db %s: append: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("xlog.db %s: fsync: %w", path, err)
	}
	return nil
}

// repairTornTail truncates a trailing fragment without newline: it is a
// line whose append never completed (never reported as done), so dropping
// it restores the previous state.
func repairTornTail(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	cut := int64(0)
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for end := size; end > 0; {
		start := max(end-chunk, 0)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			cut = start + int64(i) + 1
			break
		}
		end = start
	}
	if err := f.Truncate(cut); err != nil {
		return err
	}
	return f.Sync()
}

// lineError names the file and line of a bad catalog line.
func lineError(path string, lineNo int, err error) error {
	return fmt.Errorf("xlog.db %s line %d: %w", path, lineNo, err)
}

// scanFile streams complete lines from r, starting at byte offset base.
func scanFile(path string, r io.Reader, base int64, fn func(XLogEntry) error) error {
	return ScanXLogLines(path, r, base, func(e XLogEntry, _ []byte) error { return fn(e) })
}

// ScanXLogLines calls fn for every complete, non-blank line of the xlog.db
// at path read from r, which is positioned at byte offset base, with the
// parsed entry (its Offset counts from the file's start) and the raw line,
// newline included; the line is only valid during the call. A fragment
// without newline at the end is a torn or unfinished append and is left
// out. It takes no lock: appends are whole lines and rewrites rename a
// new file, so an open file always reads as complete lines and maybe a
// fragment. fn's error stops the scan and is returned as is.
func ScanXLogLines(path string, r io.Reader, base int64, fn func(e XLogEntry, line []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	off := base
	lineNo := 0
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Overlong line: accumulate it.
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("xlog.db %s: read: %w", path, err)
		}
		lineNo++
		start := off
		off += int64(len(line))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		info, perr := ParseXLogLine(string(line))
		if perr != nil {
			if base != 0 {
				// Line numbers would count from base, not the file's start.
				return fmt.Errorf("xlog.db %s at byte %d: %w", path, start, perr)
			}
			return lineError(path, lineNo, perr)
		}
		if err := fn(XLogEntry{WALInfo: info, Offset: start}, line); err != nil {
			return err
		}
	}
}

// Scan calls fn for every complete line, in file order, holding the lock
// throughout. A torn last line is ignored. fn's error stops the scan and
// is returned as is.
func (x *XLogDB) Scan(ctx context.Context, fn func(WALInfo) error) error {
	return x.withLock(ctx, func(path string, _ []WALInfo) error {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("xlog.db %s: %w", path, err)
		}
		defer f.Close()
		return scanFile(path, f, 0, func(e XLogEntry) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(e.WALInfo)
		})
	})
}

// ErrBadOffset reports a ReadFrom offset that is not the start of a line.
var ErrBadOffset = errors.New("offset is not the start of an xlog.db line")

// ReadFrom returns the complete lines starting at byte offset, each with
// its own offset (the passive node's last_position is the offset of the
// last line it read). offset must be 0, the file size, or just after a
// newline.
func (x *XLogDB) ReadFrom(ctx context.Context, offset int64) ([]XLogEntry, error) {
	var out []XLogEntry
	err := x.withLock(ctx, func(path string, _ []WALInfo) error {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("xlog.db %s: %w", path, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("xlog.db %s: %w", path, err)
		}
		if offset < 0 || offset > fi.Size() {
			return fmt.Errorf("xlog.db %s: offset %d outside 0..%d: %w", path, offset, fi.Size(), ErrBadOffset)
		}
		if offset > 0 {
			var b [1]byte
			if _, err := f.ReadAt(b[:], offset-1); err != nil {
				return fmt.Errorf("xlog.db %s: %w", path, err)
			}
			if b[0] != '\n' {
				return fmt.Errorf("xlog.db %s: offset %d: %w", path, offset, ErrBadOffset)
			}
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return fmt.Errorf("xlog.db %s: %w", path, err)
		}
		return scanFile(path, f, offset, func(e XLogEntry) error {
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// newPending creates the temp file for a rewrite in the catalog's own
// directory (so the rename stays on one file system and one directory
// fsync covers it), mode 0600 whatever the umask.
func newPending(path string) (*renameio.PendingFile, error) {
	t, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(0o600))
	if err != nil {
		return nil, fmt.Errorf("xlog.db %s: create temp: %w", path, err)
	}
	return t, nil
}

func commitPending(path string, t *renameio.PendingFile) error {
	if err := t.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("xlog.db %s: replace: %w", path, err)
	}
	return durable.SyncDir(filepath.Dir(path))
}

// Rewrite keeps the lines for which keep returns true and replaces the
// catalog atomically. Kept lines are copied byte for byte, except that a
// Barman 3.4 catalog (wals/xlog.db) gets its five-field lines back in four
// fields. It returns how
// many lines were dropped; when none were (and no torn fragment or blank
// line is pending) the file is left untouched.
func (x *XLogDB) Rewrite(ctx context.Context, keep func(WALInfo) bool) (removed int, err error) {
	err = x.withLock(ctx, func(path string, _ []WALInfo) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("xlog.db %s: %w", path, err)
		}
		var out bytes.Buffer
		out.Grow(len(data))
		dirty := len(data) > 0 && data[len(data)-1] != '\n'
		legacy := formatOfXLogDB(path) == FormatBarman34
		err = scanFile(path, bytes.NewReader(data), 0, func(e XLogEntry) error {
			end := e.Offset + int64(bytes.IndexByte(data[e.Offset:], '\n')) + 1
			line := data[e.Offset:end]
			switch {
			case !keep(e.WALInfo):
				removed++
			case legacy && e.Encryption == "" && len(bytes.Fields(line)) > 4:
				// A five-field line (written by an older Cellar) that
				// Barman 3.4 cannot parse: rewritten in its format.
				out.Write(e.appendFields(nil, 4))
			default:
				out.Write(line)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if removed == 0 && !dirty && out.Len() == len(data) {
			return nil
		}
		return x.replaceFile(path, out.Bytes())
	})
	return removed, err
}

func (x *XLogDB) replaceFile(path string, data []byte) error {
	if err := x.ops.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("xlog.db %s: %w", path, err)
	}
	return nil
}

// Reindex lists the given files, which exist in wals/ but which the
// catalog does not list (a deletion interrupted between rewriting the
// catalog and removing them), and returns how many it added. Names already
// listed are skipped, so running it twice adds nothing. The catalog is
// replaced whole, with the new lines at its end.
func (x *XLogDB) Reindex(ctx context.Context, infos []WALInfo) (added int, err error) {
	for _, w := range infos {
		if err := w.validate(); err != nil {
			return 0, fmt.Errorf("server %s: xlog.db reindex: %w", x.layout.Server, err)
		}
	}
	err = x.withLock(ctx, func(path string, _ []WALInfo) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("xlog.db %s: %w", path, err)
		}
		listed := map[string]bool{}
		if err := scanFile(path, bytes.NewReader(data), 0, func(e XLogEntry) error {
			listed[e.Name] = true
			return nil
		}); err != nil {
			return err
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = data[:bytes.LastIndexByte(data, '\n')+1] // drop a torn fragment
		}
		var fresh []WALInfo
		for _, w := range infos {
			if !listed[w.Name] {
				listed[w.Name] = true
				fresh = append(fresh, w)
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		buf, err := encodeLines(path, slices.Clone(data), fresh)
		if err != nil {
			return err
		}
		added = len(fresh)
		return x.replaceFile(path, buf)
	})
	return added, err
}

func writeCatalog(path string, data []byte) error {
	if err := durable.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	t, err := newPending(path)
	if err != nil {
		return err
	}
	defer t.Cleanup()
	if _, err := t.Write(data); err != nil {
		return fmt.Errorf("xlog.db %s: write temp: %w", path, err)
	}
	return commitPending(path, t)
}

// Replace atomically replaces the whole catalog with infos.
func (x *XLogDB) Replace(ctx context.Context, infos []WALInfo) error {
	for _, w := range infos {
		if err := w.validate(); err != nil {
			return fmt.Errorf("server %s: xlog.db replace: %w", x.layout.Server, err)
		}
	}
	lk, err := x.lock(ctx)
	if err != nil {
		return err
	}
	defer lk.Release()
	path := x.layout.XLogDBPath()
	buf, err := encodeLines(path, nil, infos)
	if err != nil {
		return fmt.Errorf("server %s: xlog.db replace: %w", x.layout.Server, err)
	}
	return writeCatalog(path, buf)
}

// Rebuild regenerates the catalog from the files in wals/ (Barman's
// rebuild-xlogdb): segments and .backup files in hash directories,
// .history files at the root, in name order; .partial and anything else
// is skipped. Size and mtime come from the files, compression from their
// magic bytes.
func (x *XLogDB) Rebuild(ctx context.Context) error {
	lk, err := x.lock(ctx)
	if err != nil {
		return err
	}
	defer lk.Release()
	_, err = x.rebuildLocked(ctx, x.layout.XLogDBPath())
	return err
}

func (x *XLogDB) rebuildLocked(ctx context.Context, path string) ([]WALInfo, error) {
	infos, err := ScanWALsDir(ctx, x.layout.WalsDir)
	if err != nil {
		return nil, fmt.Errorf("server %s: rebuild xlog.db: %w", x.layout.Server, err)
	}
	buf, err := encodeLines(path, nil, infos)
	if err != nil {
		return nil, fmt.Errorf("server %s: rebuild xlog.db: %w", x.layout.Server, err)
	}
	if err := writeCatalog(path, buf); err != nil {
		return nil, fmt.Errorf("server %s: rebuild xlog.db: %w", x.layout.Server, err)
	}
	return infos, nil
}

// WALPathsInDir lists the paths of the archived WAL files under walsDir
// that ScanWALsDir would catalog, without opening them. A missing
// directory is empty.
func WALPathsInDir(ctx context.Context, walsDir string) ([]string, error) {
	root, err := os.ReadDir(walsDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range root {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		full := filepath.Join(walsDir, e.Name())
		switch {
		case e.IsDir() && isHashDir(e.Name()):
			sub, err := os.ReadDir(full)
			if err != nil {
				return nil, err
			}
			for _, f := range sub {
				if n, perr := wal.ParseName(f.Name()); perr == nil && !f.IsDir() && (n.Kind == wal.KindSegment || n.Kind == wal.KindBackup) {
					out = append(out, filepath.Join(full, f.Name()))
				}
			}
		case wal.IsHistoryName(e.Name()) && e.Type().IsRegular():
			out = append(out, full)
		}
	}
	return out, nil
}

// ScanWALsDir lists the archived WAL files under walsDir as rebuild-xlogdb
// sees them. A missing directory is empty.
func ScanWALsDir(ctx context.Context, walsDir string) ([]WALInfo, error) {
	root, err := os.ReadDir(walsDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []WALInfo
	for _, e := range root { // os.ReadDir sorts by name
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		full := filepath.Join(walsDir, name)
		if e.IsDir() {
			if !isHashDir(name) {
				continue
			}
			sub, err := os.ReadDir(full)
			if err != nil {
				return nil, err
			}
			for _, s := range sub {
				n, perr := wal.ParseName(s.Name())
				if perr != nil || s.IsDir() || (n.Kind != wal.KindSegment && n.Kind != wal.KindBackup) {
					continue
				}
				info, err := walInfoFromFile(filepath.Join(full, s.Name()))
				if err != nil {
					return nil, err
				}
				out = append(out, info)
			}
			continue
		}
		if wal.IsHistoryName(name) && e.Type().IsRegular() {
			info, err := walInfoFromFile(full)
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
	}
	return out, nil
}

func isHashDir(name string) bool {
	if len(name) != 16 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// WALInfoFromFile builds a catalog entry from an archived file: stored
// size, mtime as Python's st_mtime float, compression sniffed from the
// content (encryption is not detected and left empty).
func WALInfoFromFile(path string) (WALInfo, error) { return walInfoFromFile(path) }

func walInfoFromFile(path string) (WALInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return WALInfo{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return WALInfo{}, err
	}
	comp, err := SniffCompression(f)
	if err != nil {
		return WALInfo{}, fmt.Errorf("sniff %s: %w", path, err)
	}
	mt := fi.ModTime()
	return WALInfo{
		Name:        filepath.Base(path),
		Size:        fi.Size(),
		Time:        float64(mt.Unix()) + float64(mt.Nanosecond())*1e-9,
		Compression: comp,
	}, nil
}
