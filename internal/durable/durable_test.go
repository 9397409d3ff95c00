package durable

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "backup.info")
	for _, content := range []string{"a=1\n", "a=2\nb=3\n"} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("got %q %v, want %q", got, err, content)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}

func TestWriteFileFromFailureLeavesOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := WriteFileFrom(p, &failingReader{}, 0o600)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("want error naming %s, got %v", p, err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old" {
		t.Fatalf("old content lost: %q", got)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		return 0, os.ErrClosed
	}
	f.n++
	return copy(p, "partial"), nil
}

func TestMkdirAllRenameCopy(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, "a", "b", "c")
	if err := MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(deep, 0o700); err != nil {
		t.Fatalf("second MkdirAll: %v", err)
	}
	fi, err := os.Stat(deep)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("stat %v %v", fi, err)
	}
	src := filepath.Join(dir, "src")
	data := bytes.Repeat([]byte("wal"), 10000)
	os.WriteFile(src, data, 0o600)
	dst := filepath.Join(deep, "copy")
	if err := CopyFile(src, dst, 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data) {
		t.Fatal("copy differs")
	}
	moved := filepath.Join(dir, "a", "moved")
	if err := Rename(dst, moved); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("source still present after Rename")
	}
	if err := SyncFile(moved); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "plainfile")
	os.WriteFile(file, nil, 0o600)
	if err := MkdirAll(filepath.Join(file, "x"), 0o700); err == nil {
		t.Fatal("MkdirAll under a file must fail")
	}
}

func TestPendingFileCommit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "seg")
	pf, err := NewPendingFile(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Cleanup()
	pf.Write([]byte("data"))
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("visible before commit")
	}
	if err := pf.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "data" {
		t.Fatalf("got %q", got)
	}
}
