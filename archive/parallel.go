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
	"sync"
	"syscall"
	"time"

	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/wal"
)

// Parallel compression for archive-wal.
//
// Compressing a 16 MiB segment takes tens of milliseconds of CPU; the
// commit (fsync, rename, fsync dir, xlog.db line, source removal) is
// mostly waiting on the disk. So workers compress up to Options.Parallel
// files at once, each into its own pending file in wals/<hash>/, and the
// run's goroutine commits them strictly in name order with exactly the
// per-file steps of the sequential path. A pending file is a hidden temp
// file that the next run sweeps: a kill at any point leaves each WAL in
// its source directory, or stored and catalogued, or stored but not yet
// catalogued (repaired by the next run as an identical duplicate), as
// before.
//
// Workers only ever do the common case: a plain file with a valid WAL
// name, no stored copy yet, to be compressed. Anything else (duplicates,
// already compressed sources, a source that vanished, I/O errors) is
// handed back and goes through archiveFile unchanged, so those outcomes
// and messages are the sequential ones.

// worker is one compressor's private state; a worker goroutine owns it
// during a run.
type worker struct {
	enc *Encoders
	buf []byte
}

// job is one file of a parallel batch. The worker fills the result fields
// before closing done; the committer reads them only after.
type job struct {
	name     string
	n        wal.Name
	src, dst string
	done     chan struct{}

	// seq means "archive sequentially": not eligible, or handed back.
	seq bool
	// fi is the source as the worker found it (mtime for xlog.db and for
	// the settle check).
	fi   fs.FileInfo
	pf   *durable.PendingFile
	size int64
	err  error // validation failure (*invalidError) or cancellation
	// fatal is an I/O error of the dispatch (creating the wals/
	// directory) that ends the run when the committer reaches the job.
	fatal error
}

// pipeline dispatches a batch's files to workers ahead of the commit
// cursor. Only the run's goroutine calls its methods.
type pipeline struct {
	a      *Archiver
	dir    string
	files  []string
	jobs   []*job
	next   int // next file to dispatch
	window int // dispatched but not yet committed, at most
	work   chan *job
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// parallel is the number of compressing workers for this run.
func (o *Options) parallel() int {
	if o.Parallel > 0 {
		return o.Parallel
	}
	return runtime.GOMAXPROCS(0)
}

// newPipeline starts the workers, or returns nil when the batch is best
// archived sequentially: nothing to compress, one worker, or one file.
func (a *Archiver) newPipeline(ctx context.Context, dir string, files []string) *pipeline {
	n := a.opts.parallel()
	if a.opts.Compression == CompressionNone || n <= 1 || len(files) <= 1 {
		return nil
	}
	n = min(n, len(files))
	for len(a.workers) < n {
		e := NewEncoders(a.opts.CompressionLevel)
		e.single = true
		a.workers = append(a.workers, &worker{enc: e, buf: make([]byte, 1<<20)})
	}
	// Twice as many files in flight as workers keeps every worker busy
	// while the committer waits on fsyncs; each costs only a pending
	// file on disk.
	window := 2 * n
	wctx, cancel := context.WithCancel(ctx)
	p := &pipeline{
		a:      a,
		dir:    dir,
		files:  files,
		jobs:   make([]*job, len(files)),
		window: window,
		work:   make(chan *job, window),
		cancel: cancel,
	}
	for _, w := range a.workers[:n] {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := range p.work {
				a.prepare(wctx, w, j)
				close(j.done)
			}
		}()
	}
	return p
}

// fill dispatches files up to the window ahead of file i.
func (p *pipeline) fill(i int) {
	for p.next < len(p.files) && p.next < i+p.window {
		j := p.dispatch(p.files[p.next])
		p.jobs[p.next] = j
		p.next++
		if j.seq {
			close(j.done)
			continue
		}
		p.work <- j // never blocks: the channel holds a whole window
	}
}

// dispatch prepares a job on the run's goroutine. The destination
// directory is created and swept of stale temp files here, before any
// worker may create a pending file in it: sweepTemps would otherwise see
// a live pending file as a killed run's leftover.
func (p *pipeline) dispatch(name string) *job {
	o := &p.a.opts
	j := &job{name: name, done: make(chan struct{}), seq: true}
	n, err := wal.ParseName(name)
	if err != nil || n.String() != name || n.ValidateFor(o.segSize()) != nil {
		return j
	}
	j.n = n
	j.src = filepath.Join(p.dir, name)
	j.dst = o.Layout.WALPath(n)
	if err := o.ops().MkdirAll(filepath.Dir(j.dst), 0o700); err != nil {
		j.fatal = err
		return j
	}
	p.a.sweepTemps(filepath.Dir(j.dst))
	j.seq = false
	return j
}

// prepare runs on a worker: compress and validate j's source into a
// pending file, fsynced and with the source's mtime, ready to commit.
func (a *Archiver) prepare(ctx context.Context, w *worker, j *job) {
	if err := ctx.Err(); err != nil {
		j.err = err
		return
	}
	fi, err := os.Lstat(j.src)
	if err != nil || !fi.Mode().IsRegular() {
		j.seq = true
		return
	}
	if _, err := os.Lstat(j.dst); !errors.Is(err, fs.ErrNotExist) {
		j.seq = true // stored already (a duplicate), or unreadable
		return
	}
	f, err := os.OpenFile(j.src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		j.seq = true
		return
	}
	defer f.Close()
	head := w.buf[:sniffLen]
	hn, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		j.seq = true
		return
	}
	if DetectCompression(head[:hn]) != CompressionNone {
		j.seq = true // stored as it is, after a decompressing check
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		j.seq = true
		return
	}
	pf, err := durable.NewPendingFile(j.dst, 0o600)
	if err != nil {
		j.seq = true
		return
	}
	ok := false
	defer func() {
		if !ok {
			pf.Cleanup()
		}
	}()
	cw := &countWriter{w: pf}
	v := a.newValidator(j.n)
	err = compressInto(ctx, w.enc, w.buf, cw, f, a.opts.Compression, v)
	if err == nil {
		err = v.done()
	}
	if err != nil {
		var inv *invalidError
		if errors.As(err, &inv) || ctx.Err() != nil {
			j.fi, j.err = fi, err
			return
		}
		j.seq = true
		return
	}
	// Set the mtime and flush the data here, in parallel, so that the
	// commit's fsync finds nothing left to write.
	if err := os.Chtimes(pf.Name(), fi.ModTime(), fi.ModTime()); err != nil {
		j.seq = true
		return
	}
	if err := pf.Sync(); err != nil {
		j.seq = true
		return
	}
	ok = true
	j.fi, j.pf, j.size = fi, pf, cw.n
}

// archive is archiveFile for file i of the batch, committing the worker's
// pending file when there is one.
func (p *pipeline) archive(ctx context.Context, i int) (fileResult, error) {
	a := p.a
	p.fill(i)
	j := p.jobs[i]
	<-j.done
	if j.fatal != nil {
		return fileResult{}, j.fatal
	}
	if j.err != nil {
		var inv *invalidError
		if errors.As(j.err, &inv) {
			return a.reject(p.dir, j.name, j.err, time.Since(j.fi.ModTime()) < a.opts.settle())
		}
		if err := ctx.Err(); err != nil {
			return fileResult{}, err
		}
		j.seq = true // cancelled only by stop: not expected here
	}
	if j.seq {
		return a.archiveFile(ctx, p.dir, j.name)
	}
	pf := j.pf
	j.pf = nil
	defer pf.Cleanup()
	// The source must still be the file that was compressed: if it was
	// replaced or rewritten since, start again from the current one.
	if cur, err := os.Lstat(j.src); err != nil || !os.SameFile(cur, j.fi) || cur.Size() != j.fi.Size() || !cur.ModTime().Equal(j.fi.ModTime()) {
		return a.archiveFile(ctx, p.dir, j.name)
	}
	if err := commitPending(a.opts.ops(), pf, j.src, j.dst); err != nil {
		return fileResult{}, err
	}
	comp := a.opts.Compression
	if err := a.appendXLog(ctx, j.n, j.size, j.fi.ModTime(), comp); err != nil {
		return fileResult{}, err
	}
	if err := a.opts.ops().Remove(j.src); err != nil {
		return fileResult{}, fmt.Errorf("remove archived source %s: %w", j.src, err)
	}
	return fileResult{outcome: outArchived, compression: comp, size: j.size}, nil
}

// stop cancels and waits for the workers, then removes the pending files
// that were not committed (an early error ended the batch).
func (p *pipeline) stop() {
	p.cancel()
	close(p.work)
	p.wg.Wait()
	for _, j := range p.jobs {
		if j != nil && j.pf != nil {
			j.pf.Cleanup()
			j.pf = nil
		}
	}
}
