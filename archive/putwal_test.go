package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

type member struct {
	name string
	data []byte
	typ  byte
}

func makeTar(t *testing.T, members ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: m.name, Typeflag: typ, Mode: 0o600, ModTime: time.Unix(1700000000, 0)}
		if typ == tar.TypeReg {
			h.Size = int64(len(m.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write(m.data)
		}
	}
	tw.Close()
	return buf.Bytes()
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestPutWALRoundTrip(t *testing.T) {
	t.Parallel()
	for _, o := range []TarOptions{{}, {MD5: true}, {Compression: CompressionZstd}, {MD5: true, Compression: CompressionGzip}} {
		t.Run(o.Compression+map[bool]string{true: "md5", false: "sha256"}[o.MD5], func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mib, CompressionNone)
			name := segName(1, 2, mib)
			data := segment(name, mib, testSysID, 1)
			src := put(t, e.dir, "pg_wal_file", data)
			var stream bytes.Buffer
			if err := WritePutWALTarWith(&stream, name, src, o); err != nil {
				t.Fatal(err)
			}
			res, err := PutWAL(context.Background(), e.opts, bytes.NewReader(stream.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Stored, []string{name}) {
				t.Fatalf("result %+v", res)
			}
			if got := listDir(t, e.opts.Layout.IncomingDir); !slices.Equal(got, []string{name}) {
				t.Errorf("incoming/ = %v (temp files left?)", got)
			}
			fi, _ := os.Stat(filepath.Join(e.opts.Layout.IncomingDir, name))
			srcFi, _ := os.Stat(src)
			if !fi.ModTime().Equal(srcFi.ModTime()) {
				t.Errorf("mtime %v, want the source's %v", fi.ModTime(), srcFi.ModTime())
			}
			// Retry (archive_command ran twice): identical → skipped.
			res, err = PutWAL(context.Background(), e.opts, bytes.NewReader(stream.Bytes()))
			if err != nil || !slices.Equal(res.Skipped, []string{name}) {
				t.Fatalf("retry: %+v, %v", res, err)
			}
			e.archive()
			if got := e.get(name, GetOptions{}); !bytes.Equal(got, data) {
				t.Error("archived bytes differ from the original")
			}
		})
	}
}

func TestPutWALDuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	name := segName(1, 2, mib)
	first := segment(name, mib, testSysID, 1)
	second := segment(name, mib, testSysID, 2)
	put(t, e.opts.Layout.IncomingDir, name, first)
	stream := makeTar(t, member{name: name, data: second}, member{name: "SHA256SUMS", data: []byte(sha(second) + " *" + name + "\n")})
	res, err := PutWAL(context.Background(), e.opts, bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	want := name + ".20250304T050607Z.duplicate"
	if !slices.Equal(res.Duplicates, []string{want}) {
		t.Fatalf("result %+v", res)
	}
	got, _ := os.ReadFile(filepath.Join(e.opts.Layout.ErrorsDir, want))
	kept, _ := os.ReadFile(filepath.Join(e.opts.Layout.IncomingDir, name))
	if !bytes.Equal(got, second) || !bytes.Equal(kept, first) {
		t.Errorf("errors/ has %d bytes (want the second copy), incoming/ has %d bytes (want the first)", len(got), len(kept))
	}
}

// TestPutWALStrict: put-wal (archive_command's receiving end) refuses a
// WAL file the archiver would later move to errors/, so that PostgreSQL
// keeps it and retries; nothing is stored.
func TestPutWALStrict(t *testing.T) {
	t.Parallel()
	name := segName(1, 2, mib)
	good := segment(name, mib, testSysID, 1)
	withByte := func(off int, v byte) []byte {
		b := bytes.Clone(good)
		b[off] = v
		return b
	}
	cases := []struct {
		name string
		file string
		data []byte
		ok   bool
	}{
		{"valid segment", name, good, true},
		{"one byte short", name, good[:len(good)-1], false},
		{"one byte long", name, append(bytes.Clone(good), 0), false},
		{"empty segment", name, nil, false},
		{"bad magic", name, withByte(0, 0x00), false},
		{"short header only", name, withByte(2, 0), false},
		{"another server", name, segment(name, mib, testSysID+1, 1), false},
		{"another segment's content", segName(1, 3, mib), good, false},
		{"newer timeline in header", name, withByte(4, 9), false},
		{"header segment size invalid", name, withByte(33, 0x03), false},
		{"segment size not its length", name, segment(name, 2*mib, testSysID, 1)[:mib], false},
		{"partial shorter than a segment", name + ".partial", good[:4096], true},
		{"partial of another server", name + ".partial", segment(name, mib, testSysID+1, 1)[:4096], false},
		{"history", "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"), true},
		{"empty history", "00000002.history", nil, false},
		{"backup label", name + ".00000028.backup", []byte("START WAL LOCATION: 0/2000028\n"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mib, CompressionNone)
			src := put(t, e.dir, "src", tc.data)
			var stream bytes.Buffer
			if err := WritePutWALTarWith(&stream, tc.file, src, TarOptions{Compression: CompressionZstd}); err != nil {
				t.Fatal(err)
			}
			_, err := PutWAL(context.Background(), e.opts, &stream)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidWAL)) {
				t.Fatalf("put-wal: %v (want accepted: %v)", err, tc.ok)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if got := listDir(t, e.opts.Layout.IncomingDir); tc.ok != (len(got) == 1) {
				t.Errorf("incoming/ = %v", got)
			}
			n, _ := wal.ParseName(tc.file)
			if err := CheckWALFile(src, n, testSysID); tc.ok != (err == nil) {
				t.Errorf("CheckWALFile: %v (want accepted: %v)", err, tc.ok)
			}
		})
	}
}

// TestPutWALSweepsKilledSendersTemps: a temp file whose writer is gone
// is removed by the next put-wal; one whose writer lives (this process,
// holding its lock) is kept.
func TestPutWALSweepsKilledSendersTemps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, mib, CompressionNone)
	in := e.opts.Layout.IncomingDir
	dead := startAndReap(t)
	stale := filepath.Join(in, "."+segName(1, 5, mib)+".put.tmp-"+strconv.Itoa(dead)+"-123")
	put(t, in, filepath.Base(stale), []byte("left by kill -9"))
	live, err := CreateOwnedTemp(in, segName(1, 6, mib)+".put")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	name := segName(1, 2, mib)
	src := put(t, e.dir, "src", segment(name, mib, testSysID, 1))
	var stream bytes.Buffer
	if err := WritePutWALTar(&stream, name, src); err != nil {
		t.Fatal(err)
	}
	if _, err := PutWAL(context.Background(), e.opts, &stream); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead sender's temp file kept: %v", err)
	}
	if _, err := os.Lstat(live.Name()); err != nil {
		t.Errorf("live writer's temp file removed: %v", err)
	}
}

// startAndReap returns the PID of a process that has exited.
func startAndReap(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestPutWALBadStreams(t *testing.T) {
	t.Parallel()
	name := segName(1, 2, mib)
	data := []byte("wal bytes")
	sums := func(lines ...string) member {
		return member{name: "SHA256SUMS", data: []byte(strings.Join(lines, "\n") + "\n")}
	}
	md5sum := md5.Sum(data)
	cases := []struct {
		name    string
		members []member
		want    error
	}{
		{"no checksums", []member{{name: name, data: data}}, ErrChecksum},
		{"wrong checksum", []member{{name: name, data: data}, sums(sha([]byte("other")) + "  " + name)}, ErrChecksum},
		{"checksum for another file", []member{{name: name, data: data}, sums(sha(data) + " *" + segName(1, 3, mib))}, ErrChecksum},
		{"extra checksum line", []member{{name: name, data: data}, sums(sha(data)+" *"+name, sha(data)+" *"+segName(1, 3, mib))}, ErrChecksum},
		{"md5 in SHA256SUMS", []member{{name: name, data: data}, sums(hex.EncodeToString(md5sum[:]) + " *" + name)}, ErrBadTar},
		{"malformed line", []member{{name: name, data: data}, sums(sha(data) + name)}, ErrBadTar},
		{"path traversal", []member{{name: "../" + name, data: data}, sums(sha(data) + " *../" + name)}, ErrBadTar},
		{"subdirectory", []member{{name: "x/" + name, data: data}, sums(sha(data) + " *x/" + name)}, ErrBadTar},
		{"absolute", []member{{name: "/etc/" + name, data: data}, sums(sha(data) + " */etc/" + name)}, ErrBadTar},
		{"not a WAL name", []member{{name: "passwd", data: data}, sums(sha(data) + " *passwd")}, wal.ErrInvalidName},
		{"symlink member", []member{{name: name, typ: tar.TypeSymlink}, sums(sha(data) + " *" + name)}, ErrBadTar},
		{"directory member", []member{{name: name, typ: tar.TypeDir}}, ErrBadTar},
		{"only checksums", []member{sums()}, ErrBadTar},
		{"twice", []member{{name: name, data: data}, {name: name, data: data}, sums(sha(data) + " *" + name)}, ErrBadTar},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, mib, CompressionNone)
			_, err := PutWAL(context.Background(), e.opts, bytes.NewReader(makeTar(t, tc.members...)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got := listDir(t, e.opts.Layout.IncomingDir); len(got) != 0 {
				t.Errorf("incoming/ = %v after a failed put-wal", got)
			}
			if got := listDir(t, e.opts.Layout.ErrorsDir); len(got) != 0 {
				t.Errorf("errors/ = %v after a failed put-wal", got)
			}
			if _, err := os.Stat(filepath.Join(e.dir, name)); err == nil {
				t.Error("file written outside incoming/")
			}
		})
	}
	t.Run("truncated stream", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, mib, CompressionNone)
		full := makeTar(t, member{name: name, data: bytes.Repeat(data, 1000)}, sums(sha(bytes.Repeat(data, 1000))+" *"+name))
		if _, err := PutWAL(context.Background(), e.opts, bytes.NewReader(full[:5000])); err == nil {
			t.Fatal("truncated stream accepted")
		}
		if got := listDir(t, e.opts.Layout.IncomingDir); len(got) != 0 {
			t.Errorf("incoming/ = %v", got)
		}
	})
}

func TestWritePutWALTarRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := WritePutWALTar(&buf, "../x", filepath.Join(dir, "f")); !errors.Is(err, wal.ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
	if err := WritePutWALTar(&buf, segName(1, 1, mib), dir); err == nil {
		t.Error("directory accepted")
	}
}
