package recovery

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sink receives the restored tree. Paths are absolute destination paths
// (on the remote host for the ssh sink). Methods are safe for concurrent
// use.
type sink interface {
	// dir creates a directory (and its parents) with mode 0700.
	dir(path string) error
	// file writes a regular file of size bytes from r (mode 0600). It
	// reports whether it wrote anything (a delta restore may keep an
	// identical file). r is always consumed.
	file(path string, size int64, r io.Reader, known fileSum) (bool, error)
	// symlink creates (or replaces) a symbolic link.
	symlink(path, target string) error
	// finish flushes everything to stable storage.
	finish(ctx context.Context) error
}

// fileSum is the backup manifest's record of a file, when there is one.
type fileSum struct {
	ok        bool
	size      int64
	algorithm string
	checksum  string
}

// localSink writes into the local filesystem.
type localSink struct {
	roots []string // destination roots to flush at the end
	uid   int      // owner to give new files, -1 to keep the process's
	gid   int
	delta bool

	mu      sync.Mutex
	written map[string]bool // every path the restore produced (delta cleanup)
	dirs    map[string]bool
}

func newLocalSink(roots []string, uid, gid int, delta bool) *localSink {
	return &localSink{roots: roots, uid: uid, gid: gid, delta: delta, written: map[string]bool{}, dirs: map[string]bool{}}
}

func (s *localSink) mark(path string) {
	s.mu.Lock()
	s.written[path] = true
	s.mu.Unlock()
}

func (s *localSink) chown(path string) error {
	if s.uid < 0 {
		return nil
	}
	if err := os.Lchown(path, s.uid, s.gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

func (s *localSink) dir(path string) error {
	s.mu.Lock()
	done := s.dirs[path]
	s.mu.Unlock()
	if done {
		return nil
	}
	if parent := filepath.Dir(path); parent != path {
		if _, err := os.Lstat(parent); errors.Is(err, fs.ErrNotExist) {
			if err := s.dir(parent); err != nil {
				return err
			}
		}
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && fi.IsDir():
	case err == nil:
		// Delta restore: a file or link where the backup has a directory.
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("replace %s with a directory: %w", path, err)
		}
		fallthrough
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create directory %s: %w", path, err)
		}
		if err := s.chown(path); err != nil {
			return err
		}
	default:
		return fmt.Errorf("stat %s: %w", path, err)
	}
	s.mu.Lock()
	s.dirs[path] = true
	s.written[path] = true
	s.mu.Unlock()
	return nil
}

func (s *localSink) file(path string, size int64, r io.Reader, known fileSum) (bool, error) {
	s.mark(path)
	if s.delta {
		same, err := s.deltaWrite(path, size, r, known)
		if err != nil || same {
			return !same, err
		}
		return true, nil
	}
	// A fresh restore writes in place: the restore as a whole is what must
	// be atomic, and that is marked by the recover info file written last;
	// per-file temp+rename would only double the metadata work.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if size >= 0 && n != size {
		return false, fmt.Errorf("write %s: got %d bytes, expected %d", path, n, size)
	}
	return true, s.chown(path)
}

// deltaWrite makes path hold r's content while rewriting as little as
// possible. A manifest checksum lets an identical file be recognised
// without comparing; otherwise the file is compared block by block with
// the stream and rewritten from the first difference on. It returns true
// when the file was already identical.
func (s *localSink) deltaWrite(path string, size int64, r io.Reader, known fileSum) (bool, error) {
	fi, err := os.Lstat(path)
	if err == nil && !fi.Mode().IsRegular() {
		if err := os.RemoveAll(path); err != nil {
			return false, fmt.Errorf("replace %s: %w", path, err)
		}
		fi, err = nil, fs.ErrNotExist
	}
	if errors.Is(err, fs.ErrNotExist) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return false, fmt.Errorf("create %s: %w", path, err)
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, fmt.Errorf("write %s: %w", path, err)
		}
		return false, s.chown(path)
	} else if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	// Only a cryptographic manifest checksum proves equality: CRC-32C is
	// fooled by files that embed their own CRC (every valid pg_control has
	// the same whole-file CRC-32C), so CRC manifests fall back to comparing
	// with the backup's bytes.
	if known.ok && strings.HasPrefix(known.algorithm, "SHA") && fi.Size() == known.size && size == known.size {
		if sum, err := fileChecksum(path, known.algorithm); err == nil && sum == known.checksum {
			_, err := io.Copy(io.Discard, r)
			return true, err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	const block = 128 << 10
	in, cur := make([]byte, block), make([]byte, block)
	var off int64
	for {
		n, rerr := io.ReadFull(r, in)
		if n > 0 {
			m, _ := io.ReadFull(f, cur[:n])
			if m != n || !bytes.Equal(in[:n], cur[:n]) {
				// First difference: write this block and the rest.
				if _, err := f.WriteAt(in[:n], off); err != nil {
					return false, fmt.Errorf("write %s: %w", path, err)
				}
				off += int64(n)
				if _, err := f.Seek(off, io.SeekStart); err != nil {
					return false, fmt.Errorf("seek %s: %w", path, err)
				}
				w, err := io.Copy(f, r)
				if err != nil {
					return false, fmt.Errorf("write %s: %w", path, err)
				}
				off += w
				if err := f.Truncate(off); err != nil {
					return false, fmt.Errorf("truncate %s: %w", path, err)
				}
				return false, f.Close()
			}
			off += int64(n)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				break
			}
			return false, fmt.Errorf("read source of %s: %w", path, rerr)
		}
	}
	if fi.Size() == off {
		return true, nil
	}
	if err := f.Truncate(off); err != nil {
		return false, fmt.Errorf("truncate %s: %w", path, err)
	}
	return false, f.Close()
}

func (s *localSink) symlink(path, target string) error {
	s.mark(path)
	if cur, err := os.Readlink(path); err == nil && cur == target {
		return nil
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if err := os.Symlink(target, path); err != nil {
		return fmt.Errorf("symlink %s -> %s: %w", path, target, err)
	}
	return s.chown(path)
}

// cleanup removes, under each root, whatever the restore did not produce
// (delta restore). keep reports paths that must survive although not
// written (none today; kept for clarity at the call site).
func (s *localSink) cleanup(ctx context.Context, roots []string) (int, error) {
	removed := 0
	for _, root := range roots {
		var extra []string
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if p == root {
				return nil
			}
			if !s.written[p] {
				extra = append(extra, p)
				if d.IsDir() {
					return fs.SkipDir
				}
			}
			return nil
		})
		if err != nil {
			return removed, fmt.Errorf("delta restore: scan %s: %w", root, err)
		}
		for _, p := range extra {
			if err := os.RemoveAll(p); err != nil {
				return removed, fmt.Errorf("delta restore: remove %s: %w", p, err)
			}
			removed++
		}
	}
	return removed, nil
}

// finish flushes the filesystems holding the roots: one syncfs per root
// makes every file and directory entry durable without an fsync per file.
func (s *localSink) finish(ctx context.Context) error {
	for _, root := range s.roots {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := os.Open(root)
		if err != nil {
			return fmt.Errorf("sync %s: %w", root, err)
		}
		err = unix.Syncfs(int(f.Fd()))
		f.Close()
		if err != nil {
			return fmt.Errorf("syncfs %s: %w", root, err)
		}
	}
	return nil
}

// sshSink streams the tree as one tar through the remote ssh command,
// which extracts it relative to / on the remote host.
type sshSink struct {
	mu    sync.Mutex
	tw    *tar.Writer
	stdin io.WriteCloser
	cmd   *exec.Cmd
	errb  *bytes.Buffer
	dirs  map[string]bool
	now   time.Time
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sshCommand builds the local command running remoteCmd through the user's
// ssh command line (which may carry options, hence sh -c). It runs in its
// own process group so that cancelling kills ssh itself, not only the
// shell: an orphaned ssh would keep the remote extraction running.
func sshCommand(ctx context.Context, sshCmd, remoteCmd string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "sh", "-c", sshCmd+" "+shellQuote(remoteCmd))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// killGroup kills the process group cmd leads.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// runSSH runs remoteCmd and returns its combined output.
func runSSH(ctx context.Context, sshCmd, remoteCmd string) (string, error) {
	out, err := sshCommand(ctx, sshCmd, remoteCmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("remote command %q through %q: %w: %s", remoteCmd, sshCmd, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func newSSHSink(ctx context.Context, sshCmd string, roots []string) (*sshSink, error) {
	var mk strings.Builder
	mk.WriteString("mkdir -p")
	for _, r := range roots {
		mk.WriteString(" " + shellQuote(r))
	}
	mk.WriteString(" && chmod 0700")
	for _, r := range roots {
		mk.WriteString(" " + shellQuote(r))
	}
	// --no-same-owner: files belong to the ssh user (PostgreSQL's owner),
	// not to whoever runs cellar.
	remote := mk.String() + " && tar -x --no-same-owner --no-overwrite-dir -C / -f - && sync"
	cmd := sshCommand(ctx, sshCmd, remote)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	errb := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = errb, errb
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %q: %w", sshCmd, err)
	}
	s := &sshSink{tw: tar.NewWriter(stdin), stdin: stdin, cmd: cmd, errb: errb, dirs: map[string]bool{}, now: time.Now()}
	// The roots and their ancestors exist (mkdir -p above) and must never
	// appear in the tar: extracting a directory entry resets the mode of an
	// existing directory, and an ancestor may be /tmp or /var.
	for _, r := range roots {
		for p := filepath.Clean(r); ; p = filepath.Dir(p) {
			s.dirs[p] = true
			if p == "/" || p == "." {
				break
			}
		}
	}
	return s, nil
}

func tarName(path string) string { return strings.TrimPrefix(filepath.Clean(path), "/") }

func (s *sshSink) dir(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dirLocked(path)
}

func (s *sshSink) dirLocked(path string) error {
	if s.dirs[path] || path == "/" || path == "." {
		return nil
	}
	if err := s.dirLocked(filepath.Dir(path)); err != nil {
		return err
	}
	s.dirs[path] = true
	return s.wrap(s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: tarName(path) + "/", Mode: 0o700, ModTime: s.now}))
}

func (s *sshSink) wrap(err error) error {
	if err != nil {
		return fmt.Errorf("stream to remote host: %w (%s)", err, strings.TrimSpace(s.errb.String()))
	}
	return nil
}

func (s *sshSink) file(path string, size int64, r io.Reader, _ fileSum) (bool, error) {
	if size < 0 {
		// The tar header needs the size first: buffer unknown-size data
		// (only small generated files have no size).
		b, err := io.ReadAll(r)
		if err != nil {
			return false, err
		}
		r, size = bytes.NewReader(b), int64(len(b))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.dirLocked(filepath.Dir(path)); err != nil {
		return false, err
	}
	if err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: tarName(path), Mode: 0o600, Size: size, ModTime: s.now}); err != nil {
		return false, s.wrap(err)
	}
	n, err := io.Copy(s.tw, r)
	if err != nil {
		return false, s.wrap(err)
	}
	if n != size {
		return false, fmt.Errorf("stream %s: got %d bytes, expected %d", path, n, size)
	}
	return true, nil
}

func (s *sshSink) symlink(path, target string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.dirLocked(filepath.Dir(path)); err != nil {
		return err
	}
	return s.wrap(s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: tarName(path), Linkname: target, Mode: 0o777, ModTime: s.now}))
}

func (s *sshSink) finish(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.tw.Close()
	err = errors.Join(err, s.stdin.Close())
	if werr := s.cmd.Wait(); werr != nil {
		return fmt.Errorf("remote extraction failed: %w: %s", werr, strings.TrimSpace(s.errb.String()))
	}
	return s.wrap(err)
}

// abort stops the remote extraction after a failure.
func (s *sshSink) abort() {
	_ = s.stdin.Close()
	_ = killGroup(s.cmd)
	_ = s.cmd.Wait()
}
