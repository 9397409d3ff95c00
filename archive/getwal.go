package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

// ErrWALNotFound is returned (wrapped) when get-wal finds no file for the
// requested name. The CLI maps it to exit code 1; a *wal.NameError (bad
// name) maps to 3.
var ErrWALNotFound = errors.New("WAL file not found")

// NotFoundError names the WAL and server; errors.Is(err, ErrWALNotFound).
type NotFoundError struct {
	WAL, Server string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("WAL file '%s' not found in server '%s'", e.WAL, e.Server)
}

// Is matches ErrWALNotFound.
func (e *NotFoundError) Is(target error) bool { return target == ErrWALNotFound }

// GetOptions are get-wal's output options.
type GetOptions struct {
	// Partial also looks for <name>.partial (get-wal -P), for the last,
	// incomplete segment of a timeline at promotion time.
	Partial bool
	// KeepCompression sends the stored bytes as they are.
	KeepCompression bool
	// Compression re-encodes the plain WAL (gzip, zstd, lz4) for the
	// client; "" sends it plain. bzip2 cannot be written.
	Compression string
}

// candidatePaths lists, in get-wal's search order, the paths where name
// may be found (BARMAN-FACTS §9). The archive path comes again last:
// archive-wal may move the file from incoming/ to wals/ while we look.
func candidatePaths(o *Options, n wal.Name, partial bool) []string {
	name := n.String()
	archived := o.Layout.WALPath(n)
	paths := []string{
		archived,
		filepath.Join(o.Layout.IncomingDir, name),
		filepath.Join(o.Layout.StreamingDir, name),
	}
	if partial && n.Kind == wal.KindSegment {
		p := n.Partial()
		pname := p.String()
		paths = append(paths,
			filepath.Join(o.Layout.StreamingDir, pname),
			filepath.Join(o.Layout.StreamingDir, name),
			o.Layout.WALPath(p),
			filepath.Join(o.Layout.IncomingDir, pname),
		)
	}
	return append(paths, archived)
}

// parseRequested validates a requested WAL name. It returns the
// *wal.NameError unwrapped so the CLI can match it with errors.As.
func parseRequested(name string) (wal.Name, error) {
	n, err := wal.ParseName(name)
	if err != nil {
		return wal.Name{}, err
	}
	if n.String() != name {
		// Lower-case hex would name a different file than the one stored.
		return wal.Name{}, &wal.NameError{Name: name, Reason: "hex digits must be upper case"}
	}
	return n, nil
}

// FindWAL returns the path get-wal would send for name, following the
// search order, or a *NotFoundError.
func FindWAL(opts Options, name string, partial bool) (string, error) {
	n, err := parseRequested(name)
	if err != nil {
		return "", err
	}
	return findWAL(&opts, n, partial)
}

func findWAL(o *Options, n wal.Name, partial bool) (string, error) {
	for _, p := range candidatePaths(o, n, partial) {
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("server %s: get-wal %s: %w", o.Server, n, err)
		}
	}
	return "", &NotFoundError{WAL: n.String(), Server: o.Server}
}

// GetWAL writes WAL file name to w (get-wal). Stored files are sent
// decompressed unless g.KeepCompression, then re-encoded if g.Compression
// is set; .partial files are sent raw, as Barman does. Errors: a
// *wal.NameError for a bad name, a *NotFoundError (ErrWALNotFound), or an
// I/O error. A failure after the first byte was written leaves w with a
// truncated copy; callers writing to a file write to a temp file.
func GetWAL(ctx context.Context, opts Options, name string, w io.Writer, g GetOptions) error {
	n, err := parseRequested(name)
	if err != nil {
		return err
	}
	if g.Compression != CompressionNone && !g.KeepCompression {
		if err := ValidateCompression(g.Compression); err != nil {
			return fmt.Errorf("get-wal %s: %w", name, err)
		}
	}
	path, err := findWAL(&opts, n, g.Partial)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Archived between Stat and Open: look again once.
			if path, err = findWAL(&opts, n, g.Partial); err != nil {
				return err
			}
			f, err = os.Open(path)
		}
		if err != nil {
			return fmt.Errorf("server %s: get-wal %s: %w", opts.Server, name, err)
		}
	}
	defer f.Close()
	raw := g.KeepCompression || strings.HasSuffix(path, ".partial")
	if !raw && g.Compression == CompressionNone {
		// A segment stored plain is sent as it is. The magic bytes are
		// read with pread so that the copy starts at offset 0 and the
		// kernel can do it (see sendFile).
		head := make([]byte, sniffLen)
		k, err := f.ReadAt(head, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("server %s: get-wal %s: read %s: %w", opts.Server, name, path, err)
		}
		raw = DetectCompression(head[:k]) == CompressionNone
	}
	if raw {
		if _, err := sendFile(ctx, w, f); err != nil {
			return fmt.Errorf("server %s: get-wal %s: send %s: %w", opts.Server, name, path, err)
		}
		return nil
	}
	buf := make([]byte, 256<<10)
	plain, _, err := SniffDecompressor(f)
	if err != nil {
		return fmt.Errorf("server %s: get-wal %s: read %s: %w", opts.Server, name, path, err)
	}
	defer plain.Close()
	ew, err := NewEncoders(0).Writer(w, g.Compression)
	if err != nil {
		return fmt.Errorf("server %s: get-wal %s: %w", opts.Server, name, err)
	}
	if _, err := copyBuffer(ctx, ew, plain, buf); err != nil {
		return fmt.Errorf("server %s: get-wal %s: send %s: %w", opts.Server, name, path, err)
	}
	if err := ew.Close(); err != nil {
		return fmt.Errorf("server %s: get-wal %s: %w", opts.Server, name, err)
	}
	return nil
}

// sendChunk is how much sendFile copies between two checks of ctx: large
// enough that a 16 MiB segment takes two kernel copies, small enough that
// a cancelled get-wal stops soon.
const sendChunk = 8 << 20

// sendFile copies f (from its current offset) to w, checking ctx between
// chunks. io.CopyN keeps w's ReadFrom in use, so when w is a regular
// *os.File (get-wal -o, wal-restore, stdout redirected to a file) the
// kernel copies with copy_file_range and the bytes never enter this
// process; when w is a pipe (stdout under ssh) sendfile(2) does the same
// (see sendToPipe). Other writers get a plain buffered copy.
func sendFile(ctx context.Context, w io.Writer, f *os.File) (int64, error) {
	n, done, err := sendToPipe(ctx, w, f)
	if done || err != nil {
		return n, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := io.CopyN(w, f, sendChunk)
		n += k
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// sendToPipe sends f to w with sendfile(2) when w is a pipe (get-wal's
// stdout under ssh or a shell pipeline): Go's own zero-copy paths cover
// file-to-file and file-to-socket, not file-to-pipe. done is false when
// w is not a pipe or the kernel refused part way (non-blocking pipe, old
// kernel): the caller copies the rest, from f's offset, after the n bytes
// already sent.
func sendToPipe(ctx context.Context, w io.Writer, f *os.File) (n int64, done bool, err error) {
	out, ok := w.(*os.File)
	if !ok || runtime.GOOS != "linux" {
		return 0, false, nil
	}
	if fi, err := out.Stat(); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		return 0, false, nil
	}
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, false, nil
	}
	oc, err := out.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	ic, err := f.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	off := start
	for {
		if err := ctx.Err(); err != nil {
			return off - start, true, err
		}
		var k int
		var serr error
		cerr := ic.Read(func(in uintptr) bool {
			werr := oc.Write(func(o uintptr) bool {
				k, serr = syscall.Sendfile(int(o), int(in), &off, sendChunk)
				return true
			})
			if serr == nil {
				serr = werr
			}
			return true
		})
		if serr == nil {
			serr = cerr
		}
		switch {
		case errors.Is(serr, syscall.EINTR):
			continue
		case serr != nil || k == 0:
			// k == 0 is EOF. On an error (EAGAIN from a non-blocking pipe,
			// EINVAL from an old kernel) the caller copies the rest the
			// ordinary way from where sendfile stopped.
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				return off - start, true, err
			}
			return off - start, serr == nil, nil
		}
	}
}

// Peek lists up to count consecutive WAL segments starting at name that
// exist in the archive (get-wal --peek; barman-wal-restore uses it to
// prefetch in parallel). A missing name ends the list, so the result is
// empty when name itself is missing. Non-segment names list at most
// themselves. Partial files are never listed.
func Peek(opts Options, name string, count int) ([]string, error) {
	n, err := parseRequested(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := 0; i < count; i++ {
		if _, err := findWAL(&opts, n, false); err != nil {
			if errors.Is(err, ErrWALNotFound) {
				break
			}
			return out, err
		}
		out = append(out, n.String())
		if n.Kind != wal.KindSegment {
			break
		}
		next := n.Next(opts.segSize())
		if next == n {
			break
		}
		n = next
	}
	return out, nil
}

// ErrWaitTimeout is returned by WaitForWAL when the timeout expires.
var ErrWaitTimeout = errors.New("timed out waiting for WAL")

// WaitForWAL runs archive-wal until name is archived in wals/ (switch-wal
// --archive), or, with name "", until the newest archived WAL of any
// timeline changes. It polls with exponential backoff (10 ms doubling to
// 1 s) rather than Barman's fixed 0.1 s loop; a busy archive-wal lock means
// another process is archiving, which is just as good. timeout <= 0 waits
// until ctx is done.
func WaitForWAL(ctx context.Context, opts Options, name string, timeout time.Duration) error {
	var target wal.Name
	if name != "" {
		n, err := parseRequested(name)
		if err != nil {
			return err
		}
		target = n
	}
	a, err := NewArchiver(opts)
	if err != nil {
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var before map[uint32]string
	if name == "" {
		if before, err = newestPerTimeline(opts.Layout.WalsDir); err != nil {
			return err
		}
	}
	delay := 10 * time.Millisecond
	for {
		if _, err := a.ArchiveWAL(ctx); err != nil && !errors.Is(err, ErrArchiveBusy) {
			if ctx.Err() == nil {
				return err
			}
		}
		if name != "" {
			if _, err := os.Stat(opts.Layout.WALPath(target)); err == nil {
				return nil
			}
		} else {
			now, err := newestPerTimeline(opts.Layout.WalsDir)
			if err != nil {
				return err
			}
			for tli, w := range now {
				if before[tli] != w {
					return nil
				}
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			what := name
			if what == "" {
				what = "a new WAL file"
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && timeout > 0 {
				return fmt.Errorf("server %s: %s after %s: %w", opts.Server, what, timeout, ErrWaitTimeout)
			}
			return fmt.Errorf("server %s: waiting for %s: %w", opts.Server, what, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}

// newestPerTimeline scans wals/ for the newest segment of each timeline
// (hash directories sort by timeline then log).
func newestPerTimeline(walsDir string) (map[uint32]string, error) {
	out := map[uint32]string{}
	dirs, err := os.ReadDir(walsDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return out, nil
		}
		return nil, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if !d.IsDir() || len(d.Name()) != 16 {
			continue
		}
		tli, ok := parseHexTLI(d.Name()[:8])
		if !ok {
			continue
		}
		if _, seen := out[tli]; seen {
			continue
		}
		files, err := os.ReadDir(filepath.Join(walsDir, d.Name()))
		if err != nil {
			return nil, err
		}
		for j := len(files) - 1; j >= 0; j-- {
			if wal.IsSegmentName(files[j].Name()) {
				out[tli] = files[j].Name()
				break
			}
		}
	}
	return out, nil
}

func parseHexTLI(s string) (uint32, bool) {
	n, err := wal.ParseName(s + ".history")
	if err != nil {
		return 0, false
	}
	return n.TLI, true
}
