package backup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// DefaultZstdDetail is the COMPRESSION_DETAIL sent for server-side zstd when
// Options.CompressionDetail is empty: the server compresses on two threads
// besides the one reading files, which is what lets it keep up with the
// disk.
const DefaultZstdDetail = "workers=2"

// serverArchive stores an archive the server already compressed: its bytes
// go to data/<name> (base.tar.lz4, <oid>.tar.zst, ... the names
// pg_basebackup -Ft gives them and recovery looks for) unchanged, while a
// goroutine decompresses a copy and walks the tar, so every file is still
// checksummed against backup_manifest before the backup counts as taken.
func (c *copier) serverArchive(name, prefix string, base bool, r io.Reader) error {
	dataDir := filepath.Join(c.dir, "data")
	if err := c.mkdir(dataDir); err != nil {
		return err
	}
	p := filepath.Join(dataDir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	defer f.Close()
	v := startVerifier(func(zr io.Reader) error {
		dec, err := c.decompressor(zr)
		if err != nil {
			return fmt.Errorf("decompress %s: %w", name, err)
		}
		defer dec.Close()
		cr := &countReader{r: dec}
		if err := c.walkTar(name, prefix, base, cr, nil); err != nil {
			return err
		}
		// Read the compressed stream to its end: the decoder checks the
		// frame trailer (content checksum, gzip CRC) only there.
		if _, err := io.Copy(io.Discard, cr); err != nil {
			return fmt.Errorf("decompress %s: %w", name, err)
		}
		// A tar the server writes ends with two zero blocks; an empty
		// stream is a truncated one that the tar reader takes for a clean
		// end.
		if cr.n < 1024 {
			return fmt.Errorf("%w: %s decompresses to %d bytes, shorter than a tar", ErrProtocol, name, cr.n)
		}
		return nil
	})
	if c.rbuf == nil {
		c.rbuf = make([]byte, 1<<20)
	}
	for {
		// Fill whole buffers: the server sends ~32 kB frames, and one
		// write and one hand-off per MB costs far less.
		n, rerr := io.ReadFull(r, c.rbuf)
		if n > 0 {
			chunk := c.rbuf[:n]
			if _, err := f.Write(chunk); err != nil {
				v.abort()
				return fmt.Errorf("write %s: %w", p, err)
			}
			if err := v.write(chunk); err != nil {
				v.abort()
				return fmt.Errorf("check %s: %w", p, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			v.abort()
			return rerr
		}
	}
	if err := v.close(); err != nil {
		return fmt.Errorf("check %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return f.Close()
}

func (c *copier) decompressor(r io.Reader) (io.ReadCloser, error) {
	switch c.compression {
	case CompressionLZ4:
		return io.NopCloser(lz4.NewReader(r)), nil
	case CompressionZstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case CompressionGzip:
		return gzip.NewReader(r)
	}
	return nil, fmt.Errorf("no decompressor for %q", c.compression)
}

// verifier runs consume on its own goroutine over the bytes handed to write,
// so the network reader and the file writer never wait for decompression
// and checksums (and vice versa) beyond a few buffered MB.
type verifier struct {
	ch   chan []byte
	free chan []byte
	done chan struct{}
	err  error // consume's result; read after done is closed
}

// errTrailing reports compressed archive bytes after the end of the
// compressed stream.
var errTrailing = errors.New("data after the end of the compressed archive")

func startVerifier(consume func(io.Reader) error) *verifier {
	v := &verifier{ch: make(chan []byte, 4), free: make(chan []byte, 6), done: make(chan struct{})}
	go func() {
		defer close(v.done)
		cr := &chanReader{v: v}
		v.err = consume(cr)
		if v.err == nil {
			// Anything the decoder did not want is garbage the server
			// would never send.
			if n, _ := io.Copy(io.Discard, cr); n > 0 {
				v.err = fmt.Errorf("%w: %d bytes", errTrailing, n)
			}
		}
	}()
	return v
}

// write hands a copy of p to the consumer. It fails as soon as the
// consumer has failed.
func (v *verifier) write(p []byte) error {
	var b []byte
	select {
	case b = <-v.free:
	default:
		b = make([]byte, 0, len(p))
	}
	b = append(b[:0], p...)
	select {
	case v.ch <- b:
		return nil
	case <-v.done:
		if v.err != nil {
			return v.err
		}
		return fmt.Errorf("%w (the archive went on after its end)", errTrailing)
	}
}

// close ends the input and waits for the consumer's verdict.
func (v *verifier) close() error {
	close(v.ch)
	<-v.done
	return v.err
}

// abort ends the input after a failure of the writing side; the consumer's
// own error (an unexpected EOF) is moot.
func (v *verifier) abort() {
	close(v.ch)
	<-v.done
}

// chanReader is the consumer's io.Reader over the verifier's channel;
// finished buffers go back to the free list.
type chanReader struct {
	v   *verifier
	cur []byte // unread part of buf
	buf []byte
}

func (r *chanReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.buf != nil {
			select {
			case r.v.free <- r.buf[:0]:
			default:
			}
			r.buf = nil
		}
		b, ok := <-r.v.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur, r.buf = b, b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
