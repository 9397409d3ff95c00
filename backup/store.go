package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/cellar-backup/cellar/internal/durable"
)

// Compression values for Options.Compression (Barman's backup_compression).
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionLZ4  = "lz4"
	CompressionZstd = "zstd"
)

// ErrUnsafePath reports a tar member that would land outside the backup.
var ErrUnsafePath = errors.New("unsafe path in backup archive")

// compressionSuffix is pg_basebackup's file suffix for a compression.
func compressionSuffix(c string) (string, error) {
	switch c {
	case "", CompressionNone:
		return "", nil
	case CompressionGzip:
		return ".gz", nil
	case CompressionLZ4:
		return ".lz4", nil
	case CompressionZstd:
		return ".zst", nil
	}
	return "", fmt.Errorf("unknown backup compression %q (want none, gzip, lz4 or zstd)", c)
}

// copier stores one BASE_BACKUP stream under base/<id>/: plain (data/ and
// <oid>/, Barman's layout) or as compressed tar files in data/, named as
// pg_basebackup -Ft names them. It checksums every regular file as it
// passes, for the manifest check at the end of the stream.
type copier struct {
	dir         string // base/<id>
	compression string // none = plain layout
	server      bool   // the server compresses: store its archive bytes as they come
	checksumAlg string
	prevDir     string // previous backup's base/<id> for reuse_backup=link ("" = off)
	workers     int

	sums     []FileSum
	label    []byte // backup_label content
	manifest []byte
	archives int   // archives begun
	copied   int64 // regular-file bytes received
	linked   int64 // bytes reused through hard links

	buf  []byte // member copies (the checking goroutine's, in server mode)
	rbuf []byte // network reads in server mode
	sync *syncer
	dirs map[string]bool // created directories, fsynced at the end
	ops  durable.Ops     // the directory fsyncs (the run's Options.Ops)
}

func newCopier(dir, compression, checksumAlg, prevDir string) (*copier, error) {
	if _, err := compressionSuffix(compression); err != nil {
		return nil, err
	}
	w := runtime.GOMAXPROCS(0)
	return &copier{
		dir: dir, compression: compression, checksumAlg: checksumAlg, prevDir: prevDir,
		workers: w,
		buf:     make([]byte, 1<<20),
		sync:    newSyncer(w),
		dirs:    map[string]bool{},
		ops:     durable.OS(),
	}, nil
}

func (c *copier) plain() bool { return c.compression == "" || c.compression == CompressionNone }

// run consumes the copy stream: each archive, then the manifest.
func (c *copier) run(s *stream) (err error) {
	defer func() {
		if serr := c.sync.wait(); err == nil {
			err = serr
		}
	}()
	for {
		f, err := s.nextSection()
		if err != nil {
			return err
		}
		if f == nil {
			return nil
		}
		switch f.Type {
		case FrameArchive:
			if err := c.archive(f.Name, s); err != nil {
				return err
			}
		case FrameManifest:
			var b bytes.Buffer
			if _, err := io.Copy(&b, s); err != nil {
				return fmt.Errorf("receive backup_manifest: %w", err)
			}
			c.manifest = b.Bytes()
		}
	}
}

// archive stores one archive ("base.tar" or "<oid>.tar", with the
// compressor's suffix when the server compresses).
func (c *copier) archive(name string, r io.Reader) error {
	c.archives++
	oid, suffix, ok := splitArchiveName(name)
	if !ok {
		return fmt.Errorf("%w: archive %q", ErrProtocol, name)
	}
	want := ""
	if c.server {
		want, _ = compressionSuffix(c.compression)
	}
	if suffix != want {
		return fmt.Errorf("%w: archive %q, expected the %q suffix (backup compression %s on the %s)",
			ErrProtocol, name, want, c.compression, map[bool]string{true: "server", false: "client"}[c.server])
	}
	// Manifest paths are relative to PGDATA; tablespace archives hold paths
	// relative to the tablespace location.
	prefix := ""
	if oid != 0 {
		prefix = "pg_tblspc/" + strconv.FormatUint(uint64(oid), 10) + "/"
	}
	if c.plain() {
		dest := filepath.Join(c.dir, "data")
		if oid != 0 {
			dest = filepath.Join(c.dir, strconv.FormatUint(uint64(oid), 10))
		}
		prev := ""
		if c.prevDir != "" {
			prev = filepath.Join(c.prevDir, filepath.Base(dest))
		}
		x := &extractor{c: c, dest: dest, prev: prev, prefix: prefix, base: oid == 0}
		return x.extract(r)
	}
	if c.server {
		return c.serverArchive(name, prefix, oid == 0, r)
	}
	return c.tarArchive(name, prefix, oid == 0, r)
}

// sumWriter feeds the manifest checksum.
func (c *copier) newHash() hash.Hash {
	h, _ := newChecksum(c.checksumAlg) // validated by Command.SQL
	return h
}

func (c *copier) record(p string, size int64, h hash.Hash) {
	sum := ""
	if h != nil {
		sum = hex.EncodeToString(h.Sum(nil))
	}
	c.sums = append(c.sums, FileSum{Path: p, Size: size, Checksum: sum})
}

// checkName cleans a tar member name and rejects anything that could escape
// the destination.
func checkName(name string) (string, error) {
	clean := path.Clean(strings.TrimSuffix(name, "/"))
	if name == "" || clean == "." || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(clean, 0) {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, name)
	}
	return clean, nil
}

// copyMember copies a member's data to w, hashing it.
func (c *copier) copyMember(w io.Writer, r io.Reader, h hash.Hash) (int64, error) {
	var n int64
	for {
		k, err := r.Read(c.buf)
		if k > 0 {
			chunk := c.buf[:k]
			if h != nil {
				h.Write(chunk)
			}
			if _, werr := w.Write(chunk); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// tarArchive re-writes an archive as a (compressed) tar file in data/.
// Compression runs in the compressor's own goroutines (zstd and lz4
// concurrency options, an async stage for gzip), so the network reader and
// the compressor overlap.
func (c *copier) tarArchive(name, prefix string, base bool, r io.Reader) error {
	suffix, _ := compressionSuffix(c.compression)
	dataDir := filepath.Join(c.dir, "data")
	if err := c.mkdir(dataDir); err != nil {
		return err
	}
	p := filepath.Join(dataDir, name+suffix)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := c.compressor(bw)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if err := c.walkTar(name, prefix, base, r, tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compress %s: %w", p, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return f.Close()
}

// walkTar reads one uncompressed archive, checksumming every regular file
// for the manifest check and keeping backup_label; with tw set it also
// re-writes the archive there.
func (c *copier) walkTar(name, prefix string, base bool, r io.Reader, tw *tar.Writer) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		clean, err := checkName(hdr.Name)
		if err != nil {
			return err
		}
		var w io.Writer = io.Discard
		if tw != nil {
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("write %s member %s: %w", name, hdr.Name, err)
			}
			w = tw
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		h := c.newHash()
		var label bytes.Buffer
		if base && clean == "backup_label" {
			w = io.MultiWriter(w, &label)
		}
		n, err := c.copyMember(w, tr, h)
		if err != nil {
			return fmt.Errorf("copy %s member %s: %w", name, hdr.Name, err)
		}
		if n != hdr.Size {
			return fmt.Errorf("%s member %s: got %d bytes, tar header says %d", name, hdr.Name, n, hdr.Size)
		}
		if label.Len() > 0 {
			c.label = label.Bytes()
		}
		c.copied += n
		c.record(prefix+clean, n, h)
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (c *copier) compressor(w io.Writer) (io.WriteCloser, error) {
	switch c.compression {
	case CompressionGzip:
		// klauspost's gzip is single-threaded; an async stage lets it run
		// beside the network reader.
		// BestSpeed: gzip at the default level costs several times the
		// CPU for a few percent of size; lz4 and zstd are the better codecs
		// when size matters.
		gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		return newAsyncWriter(gz), nil
	case CompressionLZ4:
		lw := lz4.NewWriter(w)
		if err := lw.Apply(lz4.ConcurrencyOption(c.workers)); err != nil {
			return nil, err
		}
		return lw, nil
	case CompressionZstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(c.workers), zstd.WithEncoderLevel(zstd.SpeedDefault))
	}
	return nopCloser{w}, nil
}

// asyncWriter hands buffers to one goroutine that writes them to w, so the
// producer and a single-threaded compressor run in parallel.
type asyncWriter struct {
	w    io.WriteCloser
	ch   chan []byte
	free chan []byte
	done chan struct{}
	err  error
}

func newAsyncWriter(w io.WriteCloser) *asyncWriter {
	a := &asyncWriter{w: w, ch: make(chan []byte, 4), free: make(chan []byte, 5), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for b := range a.ch {
			if a.err == nil {
				_, a.err = a.w.Write(b)
			}
			// Never block here: Write allocates when the free list is
			// momentarily empty, so it can hold more buffers than fit.
			select {
			case a.free <- b[:0]:
			default:
			}
		}
		if a.err == nil {
			a.err = a.w.Close()
		}
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	select {
	case <-a.done:
		return 0, a.err
	default:
	}
	var b []byte
	select {
	case b = <-a.free:
	default:
		b = make([]byte, 0, 1<<20)
	}
	a.ch <- append(b, p...)
	return len(p), nil
}

func (a *asyncWriter) Close() error {
	close(a.ch)
	<-a.done
	return a.err
}

func (c *copier) mkdir(dir string) error {
	if c.dirs[dir] {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	c.dirs[dir] = true
	return nil
}

// finish fsyncs every directory created (deepest first, then base/<id>'s
// parent chain through durable.SyncDir).
func (c *copier) syncDirs() error {
	for d := range c.dirs {
		if err := c.ops.SyncDir(d); err != nil {
			return err
		}
	}
	return c.ops.SyncDir(c.dir)
}

// syncer fsyncs and closes finished files on worker goroutines, so a backup
// of many small files does not wait for each fsync in turn.
type syncer struct {
	ch   chan *os.File
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	once sync.Once
}

func newSyncer(workers int) *syncer {
	s := &syncer{ch: make(chan *os.File, 64)}
	for range max(workers, 2) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for f := range s.ch {
				err := f.Sync()
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					s.mu.Lock()
					if s.err == nil {
						s.err = fmt.Errorf("fsync %s: %w", f.Name(), err)
					}
					s.mu.Unlock()
				}
			}
		}()
	}
	return s
}

func (s *syncer) add(f *os.File) { s.ch <- f }

func (s *syncer) wait() error {
	s.once.Do(func() { close(s.ch) })
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
