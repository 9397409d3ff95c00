package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/wal"
)

// Checksum member names of the put-wal tar protocol (barman-wal-archive).
const (
	SHA256SumsName = "SHA256SUMS"
	MD5SumsName    = "MD5SUMS"
)

// ErrChecksum is wrapped when a put-wal stream's checksums are missing,
// unpaired or wrong. Nothing is stored in that case.
var ErrChecksum = errors.New("put-wal checksum mismatch")

// ErrBadTar is wrapped when a put-wal stream is not an acceptable tar:
// a member that is not a regular file, a path with a directory, a name
// that is not a WAL name, or a malformed checksum file.
var ErrBadTar = errors.New("invalid put-wal stream")

// maxSumsSize bounds the checksum member read into memory.
const maxSumsSize = 1 << 20

// maxPutFiles bounds how many WAL members one put-wal stream may carry, so
// a hostile stream cannot fill incoming/ with temp files.
const maxPutFiles = 1024

// PutResult says what PutWAL did with each WAL member.
type PutResult struct {
	Stored     []string // new files in incoming/
	Skipped    []string // identical copy already in incoming/
	Duplicates []string // different copy already present: stored in errors/ under these names
}

// PutWAL reads a put-wal tar stream (what `cellar wal-archive` and Barman's
// barman-wal-archive send over ssh): WAL member(s) plus a SHA256SUMS or
// MD5SUMS member. Every WAL member is hashed while it is written to a
// hidden temp file in incoming/ (the archiver ignores dot files); only when
// the whole stream is read and every checksum pairs up and matches are the
// files made visible, each durably and without overwriting anything: an
// existing identical incoming/<name> is kept (the retry of an
// archive_command that succeeded remotely), a different one makes the new
// file go to errors/<name>.<stamp>.duplicate, which is still a success, as
// in Barman. On any error nothing is left behind.
func PutWAL(ctx context.Context, opts Options, r io.Reader) (PutResult, error) {
	if err := opts.check(); err != nil {
		return PutResult{}, err
	}
	// Temp files of killed senders (kill -9 of wal-archive or put-wal)
	// would otherwise stay in incoming/ forever.
	for _, name := range SweepOwnedTemps(opts.Layout.IncomingDir) {
		opts.logger().Info("put-wal: removed temp file of a killed sender", "file", name)
	}
	return putWAL(ctx, opts.Layout.IncomingDir, opts.Layout.ErrorsDir, opts.SystemID, opts.now(), r)
}

type putMember struct {
	name  string
	n     wal.Name
	f     *os.File // the owned temp file, open (and locked) until published
	tmp   string
	sha   []byte
	md    []byte
	mtime time.Time
}

func putWAL(ctx context.Context, incoming, errorsDir string, sysID uint64, now time.Time, r io.Reader) (res PutResult, err error) {
	var members []*putMember
	defer func() {
		for _, m := range members {
			if m.tmp != "" {
				_ = os.Remove(m.tmp)
			}
			if m.f != nil {
				m.f.Close()
			}
		}
	}()
	var sumsName string
	var sumsData []byte
	seen := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("put-wal: read tar: %w", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg {
			return res, fmt.Errorf("put-wal: member %q: %w: not a regular file", h.Name, ErrBadTar)
		}
		if strings.Contains(name, "/") || name == "" {
			return res, fmt.Errorf("put-wal: member %q: %w: must be a bare file name", h.Name, ErrBadTar)
		}
		if seen[name] {
			return res, fmt.Errorf("put-wal: member %q: %w: appears twice", h.Name, ErrBadTar)
		}
		seen[name] = true
		if name == SHA256SumsName || name == MD5SumsName {
			if sumsName != "" {
				return res, fmt.Errorf("put-wal: %w: both %s and %s present", ErrBadTar, sumsName, name)
			}
			sumsName = name
			sumsData, err = io.ReadAll(io.LimitReader(tr, maxSumsSize+1))
			if err != nil {
				return res, fmt.Errorf("put-wal: read %s: %w", name, err)
			}
			if len(sumsData) > maxSumsSize {
				return res, fmt.Errorf("put-wal: %s: %w: larger than %d bytes", name, ErrBadTar, maxSumsSize)
			}
			continue
		}
		n, err := wal.ParseName(name)
		if err != nil {
			return res, fmt.Errorf("put-wal: member %q: %w: %w", h.Name, ErrBadTar, err)
		}
		if len(members) >= maxPutFiles {
			return res, fmt.Errorf("put-wal: %w: more than %d files", ErrBadTar, maxPutFiles)
		}
		m := &putMember{name: name, n: n, mtime: h.ModTime}
		members = append(members, m)
		if err := m.receive(incoming, tr); err != nil {
			return res, err
		}
	}
	if sumsName == "" {
		return res, fmt.Errorf("put-wal: %w: no %s or %s member", ErrChecksum, SHA256SumsName, MD5SumsName)
	}
	sums, err := parseSums(sumsName, sumsData)
	if err != nil {
		return res, err
	}
	if len(members) == 0 {
		return res, fmt.Errorf("put-wal: %w: no WAL file in the stream", ErrBadTar)
	}
	for _, m := range members {
		want, ok := sums[m.name]
		if !ok {
			return res, fmt.Errorf("put-wal: %s: %w: no checksum in %s", m.name, ErrChecksum, sumsName)
		}
		delete(sums, m.name)
		got := m.sha
		if sumsName == MD5SumsName {
			got = m.md
		}
		if !bytes.Equal(got, want) {
			return res, fmt.Errorf("put-wal: %s: %w: got %x, %s says %x", m.name, ErrChecksum, got, sumsName, want)
		}
	}
	for name := range sums {
		return res, fmt.Errorf("put-wal: %s: %w: listed in %s but not sent", name, ErrChecksum, sumsName)
	}
	for _, m := range members {
		if err := checkStoredMember(m.f, m.n, sysID); err != nil {
			return res, fmt.Errorf("put-wal: refusing %w", err)
		}
	}
	// Everything verified: publish.
	for _, m := range members {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		dst := filepath.Join(incoming, m.name)
		err := os.Link(m.tmp, dst)
		switch {
		case err == nil:
			res.Stored = append(res.Stored, m.name)
		case errors.Is(err, fs.ErrExist):
			same, herr := fileHasSHA256(dst, m.sha)
			if herr != nil {
				return res, fmt.Errorf("put-wal: compare with existing %s: %w", dst, herr)
			}
			if same {
				res.Skipped = append(res.Skipped, m.name)
				break
			}
			ename, lerr := linkIntoErrors(m.tmp, errorsDir, m.name, "duplicate", now)
			if lerr != nil {
				return res, fmt.Errorf("put-wal: %s: %w", m.name, lerr)
			}
			res.Duplicates = append(res.Duplicates, ename)
		default:
			return res, fmt.Errorf("put-wal: store %s: %w", dst, err)
		}
		if err := os.Remove(m.tmp); err != nil {
			return res, fmt.Errorf("put-wal: remove temp %s: %w", m.tmp, err)
		}
		m.tmp = ""
	}
	if err := durable.SyncDir(incoming); err != nil {
		return res, fmt.Errorf("put-wal: %w", err)
	}
	return res, nil
}

// receive copies one member into a hidden owned temp file in dir (see
// CreateOwnedTemp; it stays open, so locked, until the member is
// published), hashing it, and fsyncs it.
func (m *putMember) receive(dir string, r io.Reader) error {
	f, err := CreateOwnedTemp(dir, m.name+".put")
	if err != nil {
		return fmt.Errorf("put-wal: %s: %w", m.name, err)
	}
	m.f, m.tmp = f, f.Name()
	sh, md := sha256.New(), md5.New()
	_, err = io.Copy(io.MultiWriter(f, sh, md), r)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return fmt.Errorf("put-wal: receive %s: %w", m.name, err)
	}
	m.sha, m.md = sh.Sum(nil), md.Sum(nil)
	if !m.mtime.IsZero() {
		// Keep the original mtime: it becomes the xlog.db time.
		if err := os.Chtimes(m.tmp, m.mtime, m.mtime); err != nil {
			return fmt.Errorf("put-wal: %s: %w", m.name, err)
		}
	}
	return nil
}

// parseSums parses "<hex>  <name>" / "<hex> *<name>" lines.
func parseSums(member string, data []byte) (map[string][]byte, error) {
	wantLen := sha256.Size
	if member == MD5SumsName {
		wantLen = md5.Size
	}
	out := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		hexs, rest, ok := strings.Cut(line, " ")
		if !ok || len(rest) < 2 || (rest[0] != ' ' && rest[0] != '*') {
			return nil, fmt.Errorf("put-wal: %s line %d: %w: want \"<hex> *<name>\"", member, ln, ErrBadTar)
		}
		name := strings.TrimPrefix(rest[1:], "./")
		sum, err := hex.DecodeString(hexs)
		if err != nil || len(sum) != wantLen {
			return nil, fmt.Errorf("put-wal: %s line %d: %w: bad digest %q", member, ln, ErrBadTar, hexs)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("put-wal: %s line %d: %w: %q listed twice", member, ln, ErrBadTar, name)
		}
		out[name] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("put-wal: %s: %w", member, err)
	}
	return out, nil
}

func fileHasSHA256(path string, want []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return bytes.Equal(h.Sum(nil), want), nil
}

// errorsName is Barman's errors/ file name: <name>.<UTC stamp>.<kind>,
// with a counter before the kind when the same name already failed in the
// same second (Barman would overwrite; Cellar never does).
func errorsName(name, kind string, now time.Time, attempt int) string {
	stamp := now.UTC().Format("20060102T150405Z")
	if attempt == 0 {
		return name + "." + stamp + "." + kind
	}
	return fmt.Sprintf("%s.%s-%d.%s", name, stamp, attempt, kind)
}

// linkIntoErrors hard-links src into errorsDir under a fresh errors name
// (never replacing a file) and fsyncs errorsDir. The caller removes src.
// Across file systems it falls back to a durable copy.
func linkIntoErrors(src, errorsDir, name, kind string, now time.Time) (string, error) {
	if err := durable.MkdirAll(errorsDir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", errorsDir, err)
	}
	for attempt := 0; attempt < 1000; attempt++ {
		ename := errorsName(name, kind, now, attempt)
		dst := filepath.Join(errorsDir, ename)
		err := os.Link(src, dst)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) {
			if _, serr := os.Lstat(dst); serr == nil {
				continue
			}
			err = durable.CopyFile(src, dst, 0o600)
		}
		if err != nil {
			return "", fmt.Errorf("move %s to %s: %w", src, dst, err)
		}
		if err := durable.SyncDir(errorsDir); err != nil {
			return "", err
		}
		return ename, nil
	}
	return "", fmt.Errorf("move %s to %s: too many files named %s", src, errorsDir, name)
}

// TarOptions tunes WritePutWALTarWith.
type TarOptions struct {
	// MD5 writes MD5SUMS instead of SHA256SUMS (barman-wal-archive --md5).
	MD5 bool
	// Compression, if set, compresses the WAL before sending (the remote
	// archiver detects it by magic bytes and stores it as is).
	Compression string
}

// WritePutWALTar writes the put-wal tar stream for the file at path, sent
// under WAL name name, with a SHA256SUMS member.
func WritePutWALTar(w io.Writer, name, path string) error {
	return WritePutWALTarWith(w, name, path, TarOptions{})
}

// WritePutWALTarWith is WritePutWALTar with options. The WAL is read once
// and hashed while it is copied into the tar.
func WritePutWALTarWith(w io.Writer, name, path string, o TarOptions) error {
	if _, err := wal.ParseName(name); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("wal-archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("wal-archive: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("wal-archive: %s is not a regular file", path)
	}
	var body io.Reader = f
	size := fi.Size()
	if o.Compression != CompressionNone {
		var buf bytes.Buffer
		cw, err := NewEncoders(0).Writer(&buf, o.Compression)
		if err != nil {
			return fmt.Errorf("wal-archive: %w", err)
		}
		if _, err := io.Copy(cw, f); err != nil {
			return fmt.Errorf("wal-archive: compress %s: %w", path, err)
		}
		if err := cw.Close(); err != nil {
			return fmt.Errorf("wal-archive: compress %s: %w", path, err)
		}
		body, size = &buf, int64(buf.Len())
	}
	var h hash.Hash = sha256.New()
	sumsName := SHA256SumsName
	if o.MD5 {
		h, sumsName = md5.New(), MD5SumsName
	}
	tw := tar.NewWriter(w)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600,
		ModTime: fi.ModTime(), Format: tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("wal-archive: %w", err)
	}
	n, err := io.Copy(io.MultiWriter(tw, h), body)
	if err != nil {
		return fmt.Errorf("wal-archive: send %s: %w", path, err)
	}
	if n != size {
		return fmt.Errorf("wal-archive: %s changed size while being sent", path)
	}
	sums := []byte(hex.EncodeToString(h.Sum(nil)) + " *" + name + "\n")
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: sumsName, Size: int64(len(sums)), Mode: 0o600,
		ModTime: time.Now(), Format: tar.FormatPAX,
	}); err != nil {
		return fmt.Errorf("wal-archive: %w", err)
	}
	if _, err := tw.Write(sums); err != nil {
		return fmt.Errorf("wal-archive: %w", err)
	}
	return tw.Close()
}
