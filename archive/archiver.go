package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
	"golang.org/x/sys/unix"
)

// Archiver names as Barman prints them.
const (
	FileArchiverName      = "file archival"
	StreamingArchiverName = "streaming"
)

// Kinds of files in errors/ (the last dot-suffix of their name).
const (
	ErrorKindDuplicate = "duplicate"
	ErrorKindUnknown   = "unknown"
)

// ErrArchiveBusy is matched (with lock.ErrBusy) when another archive-wal
// run holds the server's lock.
var ErrArchiveBusy = errors.New("archive-wal busy")

// BusyError reports that another archive-wal process holds the lock. It
// matches lock.ErrBusy and ErrArchiveBusy.
type BusyError struct {
	Server string
	PID    int
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("Another archive-wal process is already running on server %s", e.Server)
}

// Is matches lock.ErrBusy and ErrArchiveBusy.
func (e *BusyError) Is(target error) bool { return target == lock.ErrBusy || target == ErrArchiveBusy }

// Report says what one ArchiveWAL run did. Names are bare WAL or errors/
// file names.
type Report struct {
	Archived   []string // stored in wals/ and listed in xlog.db
	Dropped    []string // identical copy already archived: source removed
	Duplicates []string // different copy already archived: errors/ names
	Unknown    []string // not a valid WAL file: errors/ names
	Deferred   []string // invalid but recently modified: left for the next run
	HeldBack   []string // newest streaming file left for pg_receivewal
}

// Archiver runs archive-wal for one server. It keeps its compressors
// between files and runs; it is not safe for concurrent use (the
// archive-wal lock serialises runs across processes anyway).
type Archiver struct {
	opts Options
	enc  *Encoders
	buf  []byte
	cmpA []byte
	cmpB []byte
	// decA and decB decode the two sides of a duplicate comparison (decA
	// also already-compressed sources being stored).
	decA, decB Decoders
	// workers are the parallel compressors' encoders and buffers, kept
	// between runs (a zstd encoder costs megabytes to build).
	workers []*worker
	// listed caches the names in xlog.db during one run (nil = not read).
	listed map[string]bool
	// swept records the hash directories cleaned of stale temp files
	// during this Archiver's life.
	swept map[string]bool
}

// NewArchiver validates opts and returns an Archiver.
func NewArchiver(opts Options) (*Archiver, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	return &Archiver{
		opts: opts,
		enc:  NewEncoders(opts.CompressionLevel),
		buf:  make([]byte, 1<<20),
		cmpA: make([]byte, 256<<10),
		cmpB: make([]byte, 256<<10),
	}, nil
}

// ArchiveWAL is one `archive-wal` run: under the non-blocking archive-wal
// lock, the streaming archiver then the file archiver (Barman's order)
// each take one batch in name order. A busy lock returns a *BusyError
// (errors.Is lock.ErrBusy). Invalid files are moved to errors/ and
// reported, not returned as errors; an I/O failure stops the run and is
// returned with the partial Report.
func (a *Archiver) ArchiveWAL(ctx context.Context) (Report, error) {
	var rep Report
	o := &a.opts
	l, err := lock.TryLock(o.Layout.LockPath("archive-wal"))
	if err != nil {
		if errors.Is(err, lock.ErrBusy) {
			be := &BusyError{Server: o.Server}
			var lb *lock.BusyError
			if errors.As(err, &lb) {
				be.PID = lb.PID
			}
			return rep, be
		}
		return rep, fmt.Errorf("server %s: archive-wal: %w", o.Server, err)
	}
	defer l.Release()
	a.listed = nil

	if !o.NoStreamingArchiver {
		if err := a.runBatch(ctx, &rep, StreamingArchiverName, o.Layout.StreamingDir, o.StreamingBatchSize); err != nil {
			return rep, err
		}
	}
	if !o.NoFileArchiver {
		if err := a.runBatch(ctx, &rep, FileArchiverName, o.Layout.IncomingDir, o.ArchiverBatchSize); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// batch is one archiver's selection.
type batch struct {
	files    []string // valid-looking WAL names, in order
	unknown  []string // entries that are not WAL files
	heldBack []string
	total    int // candidates before the batch cap
}

// listBatch reads dir and selects a batch. Hidden files and .tmp files are
// other writers' work in progress and are never touched.
func listBatch(dir string, streaming bool, size int) (batch, error) {
	var b batch
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return b, nil
		}
		return b, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".tmp"):
		case !e.Type().IsRegular():
			// A symlink (to anything, anywhere), a directory, a FIFO...
			// is never a WAL file PostgreSQL sent: it goes to errors/
			// without being opened, and never holds up the real files.
			b.unknown = append(b.unknown, n)
		default:
			names = append(names, n)
		}
	}
	slices.Sort(names)
	slices.Sort(b.unknown)
	if streaming {
		// pg_receivewal writes the current segment as <seg>.partial: hold
		// back the newest .partial (older ones, left by timeline switches
		// or restarts, are archived under their .partial name). Without
		// any .partial the newest segment stays, as in Barman.
		newestPartial, newestSeg := -1, -1
		for i, n := range names {
			if pn, err := wal.ParseName(n); err == nil && pn.String() == n {
				switch pn.Kind {
				case wal.KindPartial:
					newestPartial = i
				case wal.KindSegment:
					newestSeg = i
				}
			}
		}
		hold := newestPartial
		if hold < 0 {
			hold = newestSeg
		}
		if hold >= 0 {
			b.heldBack = append(b.heldBack, names[hold])
			names = slices.Delete(names, hold, hold+1)
		}
	}
	b.total = len(names)
	if size > 0 && len(names) > size {
		names = names[:size]
	}
	for _, n := range names {
		if pn, err := wal.ParseName(n); err != nil || pn.String() != n {
			b.unknown = append(b.unknown, n)
			continue
		}
		b.files = append(b.files, n)
	}
	return b, nil
}

func (a *Archiver) runBatch(ctx context.Context, rep *Report, archiver, dir string, size int) (err error) {
	o := &a.opts
	log := o.logger().With("archiver", archiver)
	b, err := listBatch(dir, archiver == StreamingArchiverName, size)
	if err != nil {
		return fmt.Errorf("server %s: %s: list %s: %w", o.Server, archiver, dir, err)
	}
	rep.HeldBack = append(rep.HeldBack, b.heldBack...)
	out := o.out()
	header := fmt.Sprintf("Processing xlog segments from %s for %s", archiver, o.Server)
	if size > 0 && b.total > size {
		header += fmt.Sprintf(" (batch size: %d)", size)
	}
	if len(b.files) > 0 || o.Verbose {
		fmt.Fprintln(out, header)
	}
	if len(b.files) == 0 && o.Verbose {
		fmt.Fprintln(out, "\tno file found")
	}
	// Removing sources only needs one fsync of the source directory per
	// batch: a source that reappears after a crash is an identical
	// duplicate of its stored copy and is dropped by the next run.
	removed := false
	defer func() {
		if !removed {
			return
		}
		if serr := o.ops().SyncDir(dir); serr != nil && err == nil {
			err = fmt.Errorf("server %s: %s: %w", o.Server, archiver, serr)
		}
	}()
	archive := func(_ int, name string) (fileResult, error) { return a.archiveFile(ctx, dir, name) }
	// With hook scripts, files are archived one by one so that each
	// file's pre scripts really run before any work on it (a pre script
	// may still change or stop it).
	var p *pipeline
	if o.Hooks.Empty() {
		p = a.newPipeline(ctx, dir, b.files)
	}
	if p != nil {
		defer p.stop()
		archive = func(i int, _ string) (fileResult, error) { return p.archive(ctx, i) }
	}
	for i, name := range b.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(out, "\t%s\n", name)
		var hookEnv hooks.Env
		if !o.Hooks.Empty() {
			// Barman runs the pre scripts before anything else is
			// decided about the file, duplicates included. ABORT_STOP
			// ends the run with the file still in its source directory.
			hookEnv = walHookEnv(filepath.Join(dir, name), name)
			if err := o.Hooks.RunPre(ctx, hookEnv); err != nil {
				return fmt.Errorf("server %s: archive %s: %w", o.Server, name, err)
			}
		}
		res, err := archive(i, name)
		if hookEnv != nil {
			o.Hooks.RunPost(ctx, postArchiveEnv(hookEnv, res, err))
		}
		if err != nil {
			return fmt.Errorf("server %s: archive %s: %w", o.Server, name, err)
		}
		switch res.outcome {
		case outArchived:
			rep.Archived = append(rep.Archived, name)
			removed = true
			log.Debug("archived", "wal", name, "compression", res.compression, "size", res.size)
		case outDropped:
			rep.Dropped = append(rep.Dropped, name)
			removed = true
			log.Info("dropped identical duplicate", "wal", name)
		case outDuplicate:
			rep.Duplicates = append(rep.Duplicates, res.errName)
			fmt.Fprintf(out, "\tError: %s is already present in server %s. File moved to errors directory.\n", name, o.Server)
			log.Warn("duplicate WAL with different content moved to errors", "wal", name, "file", res.errName)
		case outUnknown:
			rep.Unknown = append(rep.Unknown, res.errName)
			log.Warn("invalid WAL file moved to errors", "wal", name, "file", res.errName, "err", res.reason)
		case outVanished:
			log.Debug("file vanished before it could be archived", "wal", name)
		case outDeferred:
			rep.Deferred = append(rep.Deferred, name)
			log.Warn("invalid WAL file left in place: it may still be being written", "wal", name, "err", res.reason)
		}
	}
	return a.moveUnknown(rep, archiver, dir, b.unknown)
}

// moveUnknown moves the entries that are not WAL files to errors/. One
// that cannot be moved is reported (the run fails) but does not stop the
// others.
func (a *Archiver) moveUnknown(rep *Report, archiver, dir string, unknown []string) error {
	o := &a.opts
	if len(unknown) == 0 {
		return nil
	}
	out, log := o.out(), o.logger().With("archiver", archiver)
	fmt.Fprintf(out, "Some unknown objects have been found while processing xlog segments for %s. Objects moved to errors directory:\n", o.Server)
	var errs []error
	for _, name := range unknown {
		ename, err := moveToErrors(o.ops(), dir, name, o.Layout.ErrorsDir, ErrorKindUnknown, o.now())
		if err != nil {
			errs = append(errs, fmt.Errorf("server %s: %s: %w", o.Server, archiver, err))
			continue
		}
		fmt.Fprintf(out, "\t%s\n", name)
		rep.Unknown = append(rep.Unknown, ename)
		log.Warn("unknown file moved to errors", "file", ename)
	}
	return errors.Join(errs...)
}

type outcome int

const (
	outArchived outcome = iota
	outDropped
	outDuplicate
	outUnknown
	outDeferred
	outVanished
)

type fileResult struct {
	outcome     outcome
	errName     string
	reason      error
	compression string
	size        int64
}

// errInvalid marks validation failures (as opposed to I/O errors).
type invalidError struct{ err error }

func (e *invalidError) Error() string { return e.err.Error() }
func (e *invalidError) Unwrap() error { return e.err }

func invalidf(format string, args ...any) error {
	return &invalidError{fmt.Errorf(format, args...)}
}

// archiveFile handles one file whose name passed wal.ParseName.
func (a *Archiver) archiveFile(ctx context.Context, dir, name string) (fileResult, error) {
	o := &a.opts
	n, err := wal.ParseName(name)
	if err != nil { // listBatch filtered these; stay defensive
		return a.reject(dir, name, err, false)
	}
	if err := n.ValidateFor(o.segSize()); err != nil {
		return a.reject(dir, name, err, false)
	}
	src := filepath.Join(dir, n.String())
	fi, err := os.Lstat(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Vanished (another tool removed it): nothing to do.
			return fileResult{outcome: outVanished, reason: err}, nil
		}
		return fileResult{}, err
	}
	if !fi.Mode().IsRegular() {
		return a.reject(dir, name, fmt.Errorf("%s is not a regular file", src), false)
	}
	dst := o.Layout.WALPath(n)
	if _, err := os.Lstat(dst); err == nil {
		return a.duplicate(ctx, dir, n, src, dst, fi)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fileResult{}, err
	}
	res, err := a.store(ctx, n, src, dst, fi)
	if err != nil {
		var inv *invalidError
		if errors.As(err, &inv) {
			return a.reject(dir, name, err, time.Since(fi.ModTime()) < o.settle())
		}
		return fileResult{}, err
	}
	if err := a.appendXLog(ctx, n, res.size, fi.ModTime(), res.compression); err != nil {
		return fileResult{}, err
	}
	if err := o.ops().Remove(src); err != nil {
		return fileResult{}, fmt.Errorf("remove archived source %s: %w", src, err)
	}
	return res, nil
}

// reject moves an invalid file to errors/…unknown, or leaves it in place
// when it may still be being written.
func (a *Archiver) reject(dir, name string, reason error, fresh bool) (fileResult, error) {
	if fresh {
		return fileResult{outcome: outDeferred, reason: reason}, nil
	}
	ename, err := moveToErrors(a.opts.ops(), dir, name, a.opts.Layout.ErrorsDir, ErrorKindUnknown, a.opts.now())
	if err != nil {
		return fileResult{}, err
	}
	return fileResult{outcome: outUnknown, errName: ename, reason: reason}, nil
}

// duplicate handles a source whose name is already archived. Contents are
// compared decompressed and byte by byte (never Barman's size+mtime
// shortcut).
func (a *Archiver) duplicate(ctx context.Context, dir string, n wal.Name, src, dst string, srcInfo fs.FileInfo) (fileResult, error) {
	same, storedComp, err := a.sameContent(src, dst)
	if err != nil {
		return fileResult{}, err
	}
	if !same {
		ename, err := moveToErrors(a.opts.ops(), dir, n.String(), a.opts.Layout.ErrorsDir, ErrorKindDuplicate, a.opts.now())
		if err != nil {
			return fileResult{}, err
		}
		return fileResult{outcome: outDuplicate, errName: ename}, nil
	}
	// A crash between storing and removing the source lands here: make
	// sure the stored copy is durable and catalogued before dropping the
	// source.
	dfi, err := os.Stat(dst)
	if err != nil {
		return fileResult{}, err
	}
	if err := durable.SyncFile(dst); err != nil {
		return fileResult{}, err
	}
	if err := a.opts.ops().SyncDir(filepath.Dir(dst)); err != nil {
		return fileResult{}, err
	}
	listed, err := a.xlogHas(ctx, n)
	if err != nil {
		return fileResult{}, err
	}
	if !listed {
		if err := a.appendXLog(ctx, n, dfi.Size(), srcInfo.ModTime(), storedComp); err != nil {
			return fileResult{}, err
		}
	}
	if err := a.opts.ops().Remove(src); err != nil {
		return fileResult{}, fmt.Errorf("remove duplicate source %s: %w", src, err)
	}
	return fileResult{outcome: outDropped}, nil
}

// sameContent compares the decompressed content of two files.
func (a *Archiver) sameContent(src, dst string) (bool, string, error) {
	fa, err := openSource(src)
	if err != nil {
		var inv *invalidError
		if errors.As(err, &inv) {
			return false, "", nil // unreadable: cannot be proven identical
		}
		return false, "", err
	}
	defer fa.Close()
	fb, err := os.Open(dst)
	if err != nil {
		return false, "", err
	}
	defer fb.Close()
	ra, _, err := a.decA.Sniff(fa)
	if err != nil {
		// An unreadable source cannot be proven identical.
		return false, "", nil
	}
	defer ra.Close()
	rb, comp, err := a.decB.Sniff(fb)
	if err != nil {
		return false, "", fmt.Errorf("read stored %s: %w", dst, err)
	}
	defer rb.Close()
	same, err := equalStreams(ra, rb, a.cmpA, a.cmpB)
	if err != nil {
		var rerr *sideError
		if errors.As(err, &rerr) && rerr.side == 0 {
			return false, comp, nil // corrupt source: not identical
		}
		return false, comp, fmt.Errorf("compare %s with stored %s: %w", src, dst, err)
	}
	return same, comp, nil
}

type sideError struct {
	side int
	err  error
}

func (e *sideError) Error() string { return e.err.Error() }
func (e *sideError) Unwrap() error { return e.err }

// equalStreams compares two readers to EOF.
func equalStreams(a, b io.Reader, ba, bb []byte) (bool, error) {
	for {
		na, ea := io.ReadFull(a, ba)
		if ea != nil && !errors.Is(ea, io.EOF) && !errors.Is(ea, io.ErrUnexpectedEOF) {
			return false, &sideError{0, ea}
		}
		nb, eb := io.ReadFull(b, bb[:len(ba)])
		if eb != nil && !errors.Is(eb, io.EOF) && !errors.Is(eb, io.ErrUnexpectedEOF) {
			return false, &sideError{1, eb}
		}
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea != nil || eb != nil {
			return ea != nil && eb != nil, nil
		}
	}
}

// validator receives the plain bytes of a file and checks size and (for
// segments) the first page header.
type validator struct {
	n       wal.Name
	limit   int64
	head    [wal.LongPageHeaderSize]byte
	count   int64
	sysID   uint64
	segSize uint64
	checked bool
}

var errTooLarge = errors.New("file larger than expected")

func (v *validator) Write(p []byte) (int, error) {
	if v.count < int64(len(v.head)) {
		copy(v.head[v.count:], p)
	}
	v.count += int64(len(p))
	if v.count > v.limit {
		return 0, invalidf("%s: %w: more than %d bytes", v.n, errTooLarge, v.limit)
	}
	if !v.checked && v.count >= int64(len(v.head)) && v.needsHeader() {
		v.checked = true
		if err := v.checkHeader(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (v *validator) needsHeader() bool {
	return v.n.Kind == wal.KindSegment || v.n.Kind == wal.KindPartial
}

func (v *validator) checkHeader() error {
	h, err := wal.ParsePageHeader(v.head[:])
	if err != nil {
		return invalidf("%s: %w", v.n, err)
	}
	if err := h.Validate(v.n, v.sysID, v.segSize); err != nil {
		return &invalidError{err}
	}
	return nil
}

// done runs the final checks once the whole file went through: the
// totals, and the header when the file was too short to check it early.
func (v *validator) done() error {
	if err := v.finish(); err != nil {
		return err
	}
	if v.needsHeader() && !v.checked {
		return v.checkHeader()
	}
	return nil
}

// finish checks the totals once the whole file went through.
func (v *validator) finish() error {
	switch v.n.Kind {
	case wal.KindSegment:
		if uint64(v.count) != v.segSize {
			return invalidf("%s: segment is %d bytes, want %d (wal_segment_size)", v.n, v.count, v.segSize)
		}
	case wal.KindPartial:
		if v.count < wal.LongPageHeaderSize {
			return invalidf("%s: partial segment is only %d bytes", v.n, v.count)
		}
	default:
		if v.count == 0 {
			return invalidf("%s: empty file", v.n)
		}
	}
	return nil
}

// maxTextFile bounds .history and .backup files, which are small text.
const maxTextFile = 16 << 20

func (a *Archiver) newValidator(n wal.Name) *validator {
	o := &a.opts
	v := &validator{n: n, sysID: o.SystemID, segSize: o.segSize(), limit: maxTextFile}
	if v.needsHeader() {
		v.limit = int64(o.segSize())
	}
	return v
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// store validates src while copying it (compressed per Options, or as is
// when it already is compressed) into a pending file next to dst, then
// commits it durably. Validation failures are *invalidError and leave
// nothing behind.
func (a *Archiver) store(ctx context.Context, n wal.Name, src, dst string, fi fs.FileInfo) (fileResult, error) {
	o := &a.opts
	if err := o.ops().MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fileResult{}, err
	}
	a.sweepTemps(filepath.Dir(dst))
	f, err := openSource(src)
	if err != nil {
		return fileResult{}, err
	}
	defer f.Close()
	head := a.buf[:sniffLen]
	hn, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fileResult{}, err
	}
	srcComp := DetectCompression(head[:hn])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fileResult{}, err
	}

	if srcComp == CompressionNone && o.Compression == CompressionNone {
		if res, ok, err := a.storeByLink(n, f, src, dst, fi); ok || err != nil {
			return res, err
		}
	}
	pf, err := durable.NewPendingFile(dst, 0o600)
	if err != nil {
		return fileResult{}, err
	}
	defer pf.Cleanup()
	cw := &countWriter{w: pf}
	v := a.newValidator(n)
	comp := o.Compression
	if srcComp == CompressionNone && comp == CompressionNone {
		// Plain to plain: check the header, then let the kernel copy
		// (copy_file_range, a reflink on file systems that have them).
		// The size check counts what was actually copied, so a file still
		// growing is caught like a short one.
		hn, err := io.ReadFull(f, v.head[:])
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return fileResult{}, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fileResult{}, err
		}
		if v.needsHeader() && hn == len(v.head) {
			v.checked = true
			if err := v.checkHeader(); err != nil {
				return fileResult{}, err
			}
		}
		n, err := io.Copy(pf.File, io.LimitReader(f, v.limit+1))
		if err != nil {
			return fileResult{}, err
		}
		if n > v.limit {
			return fileResult{}, invalidf("%s: %w: more than %d bytes", v.n, errTooLarge, v.limit)
		}
		v.count, cw.n = n, n
	} else if srcComp == CompressionNone {
		if err := compressInto(ctx, a.enc, a.buf, cw, f, comp, v); err != nil {
			return fileResult{}, err
		}
	} else {
		// Already compressed (barman-wal-archive -z, or a put-wal client
		// compressing before sending): store the bytes as they are and
		// validate the decompressed stream.
		comp = srcComp
		dec, err := a.decA.Reader(io.TeeReader(f, cw), srcComp)
		if err != nil {
			return fileResult{}, invalidf("%s: %w", n, err)
		}
		_, err = copyBuffer(ctx, v, dec, a.buf)
		dec.Close()
		if err != nil {
			var inv *invalidError
			if errors.As(err, &inv) || errors.Is(err, ctx.Err()) {
				return fileResult{}, err
			}
			return fileResult{}, invalidf("%s: decompress %s: %w", n, srcComp, err)
		}
		// Bytes after the end of the compressed stream would be stored
		// but never restored: refuse them.
		if extra, err := io.Copy(io.Discard, f); err != nil {
			return fileResult{}, err
		} else if extra > 0 {
			return fileResult{}, invalidf("%s: %d bytes after the end of the %s stream", n, extra, srcComp)
		}
	}
	if err := v.done(); err != nil {
		return fileResult{}, err
	}
	// Keep the original mtime on the stored file: rebuild-xlogdb reads it.
	if err := os.Chtimes(pf.Name(), fi.ModTime(), fi.ModTime()); err != nil {
		return fileResult{}, err
	}
	if err := commitPending(o.ops(), pf, src, dst); err != nil {
		return fileResult{}, err
	}
	return fileResult{outcome: outArchived, compression: comp, size: cw.n}, nil
}

// openSource opens a file to archive without following a symlink. A file
// this user may not read (another user's file with a private mode) or a
// symlink swapped in since the directory was listed can never be archived:
// that is a validation failure (the file goes to errors/), not an I/O
// error that would stop the run and hold up every file behind it.
func openSource(src string) (*os.File, error) {
	f, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ELOOP):
		return nil, invalidf("%s cannot be read by the archiver: %w", src, err)
	case err != nil:
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, invalidf("%s is not a regular file", src)
	}
	return f, nil
}

// compressInto validates the plain bytes of f on their way into a comp
// encoder writing to w. The caller still calls v.done.
func compressInto(ctx context.Context, enc *Encoders, buf []byte, w io.Writer, f io.Reader, comp string, v *validator) error {
	ew, err := enc.Writer(w, comp)
	if err != nil {
		return err
	}
	_, err = copyBuffer(ctx, ew, io.TeeReader(f, v), buf)
	if cerr := ew.Close(); err == nil {
		err = cerr
	}
	return err
}

// commitPending makes a fully written pending file the stored dst: fsync,
// rename, fsync of the directory (ops.Rename). The caller's deferred
// Cleanup then only closes the file.
func commitPending(ops durable.Ops, pf *durable.PendingFile, src, dst string) error {
	// The archive-wal lock makes us the only writer of wals/, and dst was
	// absent a moment ago; re-check so a stored file is never replaced.
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s appeared while archiving %s", dst, src)
	}
	if err := pf.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", pf.Name(), err)
	}
	if err := ops.Rename(pf.Name(), dst); err != nil {
		return fmt.Errorf("store %s: %w", dst, err)
	}
	return nil
}

// storeByLink stores an uncompressed file without copying it: after the
// header and size checks, the data is fsynced and hard-linked into wals/
// (link(2) never replaces an existing name, so a stored WAL can never be
// overwritten), and the directory is fsynced. Barman renames; a link keeps
// the source in place until the caller has appended the xlog.db line, so a
// crash in between still leaves the file in incoming/. ok is false when a
// link is impossible (another file system, or the source is still being
// written), and the caller falls back to copying.
func (a *Archiver) storeByLink(n wal.Name, f *os.File, src, dst string, fi fs.FileInfo) (fileResult, bool, error) {
	v := a.newValidator(n)
	if fi.Size() > v.limit {
		return fileResult{}, false, nil // the copy path reports it
	}
	hn, err := f.ReadAt(v.head[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fileResult{}, false, err
	}
	if v.needsHeader() {
		if hn < len(v.head) {
			return fileResult{}, false, nil
		}
		v.checked = true
		if err := v.checkHeader(); err != nil {
			return fileResult{}, false, err
		}
	}
	v.count = fi.Size()
	if err := v.finish(); err != nil {
		return fileResult{}, false, nil // let the copy path count and report
	}
	// A file still growing (a non-atomic cp into incoming/) must not be
	// linked: its inode would keep changing after it was stored.
	if cur, err := f.Stat(); err != nil || cur.Size() != fi.Size() || !cur.ModTime().Equal(fi.ModTime()) {
		return fileResult{}, false, nil
	}
	if err := f.Sync(); err != nil {
		return fileResult{}, false, nil
	}
	if err := a.opts.ops().Link(src, dst); err != nil {
		switch {
		case errors.Is(err, fs.ErrExist):
			return fileResult{}, false, fmt.Errorf("%s appeared while archiving %s", dst, src)
		case linkUnsupported(err):
			return fileResult{}, false, nil // copy instead
		}
		return fileResult{}, false, fmt.Errorf("store %s: %w", dst, err)
	}
	// The stored file follows Cellar's modes, whoever wrote the source.
	if err := os.Chmod(dst, 0o600); err != nil {
		return fileResult{}, true, err
	}
	if err := a.opts.ops().SyncDir(filepath.Dir(dst)); err != nil {
		return fileResult{}, true, err
	}
	return fileResult{outcome: outArchived, compression: CompressionNone, size: fi.Size()}, true, nil
}

// linkUnsupported reports a link(2) failure that copying avoids: another
// file system, a file system without hard links, the link count limit, or
// protected_hardlinks refusing a file owned by another user.
func linkUnsupported(err error) bool {
	for _, e := range []error{syscall.EXDEV, syscall.EPERM, syscall.EMLINK, syscall.ENOTSUP, syscall.EOPNOTSUPP} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// sweepTemps removes pending files that a killed archive-wal left in a
// wals/ directory: renameio names them "." + target name + random digits.
// Only archive-wal writes there and we hold its lock, so any such file is
// stale. Failures are harmless (the file is only wasted space).
func (a *Archiver) sweepTemps(dir string) {
	if a.swept == nil {
		a.swept = map[string]bool{}
	}
	if a.swept[dir] {
		return
	}
	a.swept[dir] = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, ".") || len(name) < 1+16+1 {
			continue
		}
		rest := name[1:]
		for _, l := range []int{40, 32, 24, 16} { // .backup, .partial, segment, .history
			if len(rest) > l && wal.IsAnyWALName(rest[:l]) && isDigits(rest[l:]) {
				if err := os.Remove(filepath.Join(dir, name)); err == nil {
					a.opts.logger().Debug("removed stale temp file", "file", filepath.Join(dir, name))
				}
				break
			}
		}
	}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// copyBuffer is io.CopyBuffer that checks ctx between chunks, so a
// cancelled run stops within one chunk.
func copyBuffer(ctx context.Context, dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if nw != nr {
				return n, io.ErrShortWrite
			}
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// moveToErrors moves dir/name into errorsDir as <name>.<stamp>.<kind>,
// never replacing an existing file, and fsyncs both directories. The
// entry itself is moved, whatever it is (a symlink stays a symlink, its
// target is never opened), so that a file the archiver cannot or must not
// read still leaves incoming/. name is a directory entry read from dir
// (one path component); it is re-checked here so that no caller can make
// it escape dir.
func moveToErrors(ops durable.Ops, dir, name, errorsDir, kind string, now time.Time) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("refusing to move %q: not a plain file name", name)
	}
	src := filepath.Join(dir, name)
	if _, err := os.Lstat(src); err != nil {
		return "", err
	}
	if err := ops.MkdirAll(errorsDir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", errorsDir, err)
	}
	for attempt := 0; attempt < 1000; attempt++ {
		ename := errorsName(name, kind, now, attempt)
		err := renameNoReplace(src, filepath.Join(errorsDir, ename))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("move %s to %s: %w", src, errorsDir, err)
		}
		if err := ops.SyncDir(errorsDir); err != nil {
			return "", err
		}
		return ename, ops.SyncDir(dir)
	}
	return "", fmt.Errorf("move %s to %s: too many entries named %s", src, errorsDir, name)
}

// renameNoReplace renames oldpath to newpath unless newpath exists
// (fs.ErrExist). On a file system without RENAME_NOREPLACE it checks
// first: the archive-wal lock makes us errors/'s only renamer, and
// put-wal only ever links new names there.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	if _, err := os.Lstat(newpath); err == nil {
		return fmt.Errorf("%s: %w", newpath, fs.ErrExist)
	}
	return os.Rename(oldpath, newpath)
}

// ArchiverErrors counts the files in the errors directory by kind (the
// last dot-suffix: duplicate, unknown, ...), for check_archiver_errors.
func ArchiverErrors(l catalog.Layout) (map[string]int, error) {
	entries, err := os.ReadDir(l.ErrorsDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return map[string]int{}, nil
		}
		return nil, err
	}
	out := map[string]int{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		kind := "unknown_failure"
		if i := strings.LastIndexByte(e.Name(), '.'); i >= 0 {
			kind = e.Name()[i+1:]
		}
		out[kind]++
	}
	return out, nil
}

// walHookEnv is the archive hooks' environment for the source file path
// (BARMAN_FILE stays the source path in both phases, as in Barman). A file
// that cannot be read gets an empty size and compression.
func walHookEnv(path, name string) hooks.Env {
	var size int64
	var mtime time.Time
	if fi, err := os.Lstat(path); err == nil {
		size, mtime = fi.Size(), fi.ModTime()
	}
	comp := ""
	if f, err := openSource(path); err == nil {
		comp, _ = catalog.SniffCompression(f)
		f.Close()
	}
	return hooks.WALEnv(name, path, size, mtime, comp, "")
}

// postArchiveEnv updates the pre environment with what archiving did: the
// stored size and compression, and BARMAN_ERROR for a failure or a
// rejected file.
func postArchiveEnv(pre hooks.Env, res fileResult, err error) hooks.Env {
	env := pre.Merge(nil)
	switch {
	case err != nil:
		env["BARMAN_ERROR"] = err.Error()
	case res.outcome == outArchived:
		env["BARMAN_SIZE"] = strconv.FormatInt(res.size, 10)
		env["BARMAN_COMPRESSION"] = res.compression
	case res.outcome == outDuplicate:
		env["BARMAN_ERROR"] = "duplicate WAL file with different content moved to " + res.errName
	case res.outcome == outUnknown:
		env["BARMAN_ERROR"] = fmt.Sprintf("invalid WAL file moved to %s: %v", res.errName, res.reason)
	case res.outcome == outDeferred:
		env["BARMAN_ERROR"] = fmt.Sprintf("invalid WAL file left in place: %v", res.reason)
	case res.outcome == outVanished:
		env["BARMAN_ERROR"] = "file vanished before it could be archived"
	}
	return env
}
