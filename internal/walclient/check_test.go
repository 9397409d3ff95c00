package walclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/archive"
)

// realSegment is a 16 MiB segment whose first page is a real PostgreSQL
// 15 page (wal/testdata/pg15), and that cluster's system identifier.
func realSegment(t testing.TB, name string) ([]byte, uint64) {
	t.Helper()
	page, err := os.ReadFile(filepath.Join("..", "..", "wal", "testdata", "pg15", name+".page8k"))
	if err != nil {
		t.Fatal(err)
	}
	idText, err := os.ReadFile(filepath.Join("..", "..", "wal", "testdata", "pg15", "sysid"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(idText)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	seg := make([]byte, 16<<20)
	copy(seg, page)
	return seg, id
}

func TestCheckRestored(t *testing.T) {
	t.Parallel()
	seg, id := realSegment(t, "000000020000000000000001")
	const name = "000000020000000000000001"
	cases := []struct {
		name  string
		file  string
		data  []byte
		sysID uint64
		ok    bool
	}{
		{"own segment", name, seg, id, true},
		{"identity unknown", name, seg, 0, true},
		{"another cluster", name, seg, id + 1, false},
		{"another segment", "000000020000000000000002", seg, id, false},
		{"older timeline name", "000000010000000000000001", seg, id, true},
		{"one byte short", name, seg[:len(seg)-1], id, false},
		{"one byte long", name, append(bytes.Clone(seg), 0), id, false},
		{"empty", name, nil, id, false},
		{"history file", "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"), id, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRestored(bytes.NewReader(tc.data), int64(len(tc.data)), tc.file, tc.sysID)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrWrongWAL)) {
				t.Fatalf("CheckRestored: %v (want ok %v)", err, tc.ok)
			}
		})
	}
	err := CheckRestored(bytes.NewReader(seg), int64(len(seg)), name, id+1)
	for _, want := range []string{name, fmt.Sprint(id), fmt.Sprint(id + 1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %s", err, want)
		}
	}
}

func TestSpoolDirFor(t *testing.T) {
	t.Parallel()
	a := SpoolDirFor(DefaultSpoolDir, "pg", 1, "/var/lib/postgresql/15/main")
	for _, other := range []string{
		SpoolDirFor(DefaultSpoolDir, "pg2", 1, "/var/lib/postgresql/15/main"),
		SpoolDirFor(DefaultSpoolDir, "pg", 2, "/var/lib/postgresql/15/main"),
		SpoolDirFor(DefaultSpoolDir, "pg", 1, "/srv/restore"),
	} {
		if other == a {
			t.Errorf("two restores share spool %s", a)
		}
	}
	if filepath.Dir(a) != DefaultSpoolDir || strings.Contains(SpoolDirFor(DefaultSpoolDir, "../x", 1, "/d"), "..") {
		t.Errorf("spool %s escapes %s", a, DefaultSpoolDir)
	}
}

// TestRestoreRefusesForeignWAL: a spooled file that fails the check is
// discarded, and a fetched one is never renamed into place; neither
// leaves a temp file.
func TestRestoreRefusesForeignWAL(t *testing.T) {
	t.Parallel()
	seg, id := realSegment(t, "000000010000000000000001")
	const name = "000000010000000000000001"
	sp := Spool{Dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(sp.Dir, name), seg, 0o600); err != nil {
		t.Fatal(err)
	}
	destDir := t.TempDir()
	dest := filepath.Join(destDir, "RECOVERYXLOG")
	check := func(path string) error { return CheckRestoredFile(path, name, id+1) }
	if ok, err := sp.Take(name, dest, check); ok || !errors.Is(err, ErrWrongWAL) {
		t.Fatalf("Take of a foreign spooled segment: %v %v", ok, err)
	}
	if sp.Has(name) {
		t.Fatal("foreign segment kept in the spool")
	}
	_, err := WriteRestoredChecked(context.Background(), dest,
		func(w io.Writer) error { _, err := w.Write(seg); return err },
		func(f *os.File, size int64) error { return CheckRestored(f, size, name, id+1) })
	if !errors.Is(err, ErrWrongWAL) {
		t.Fatalf("WriteRestoredChecked: %v", err)
	}
	if ents, _ := os.ReadDir(destDir); len(ents) != 0 {
		t.Fatalf("left %v", ents[0].Name())
	}
}

// TestSweepRestoreTemps: a temp file of a dead wal-restore is removed, a
// live writer's is kept.
func TestSweepRestoreTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(dir, ".RECOVERYXLOG.tmp-"+strconv.Itoa(cmd.Process.Pid)+"-42")
	if err := os.WriteFile(dead, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := archive.CreateOwnedTemp(dir, "RECOVERYXLOG")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	removed := SweepRestoreTemps(dir)
	if len(removed) != 1 || removed[0] != filepath.Base(dead) {
		t.Fatalf("swept %v, want only %s", removed, filepath.Base(dead))
	}
	if _, err := os.Lstat(live.Name()); err != nil {
		t.Fatalf("live temp file removed: %v", err)
	}
}

// FuzzCheckRestored: arbitrary first pages never panic, and an accepted
// segment is exactly as long as its header says.
func FuzzCheckRestored(f *testing.F) {
	seg, id := realSegment(f, "000000010000000000000001")
	f.Add("000000010000000000000001", seg[:8192], id)
	f.Add("000000010000000000000002", seg[:40], uint64(0))
	f.Add("00000002.history", []byte("x"), id)
	f.Fuzz(func(t *testing.T, name string, head []byte, sysID uint64) {
		size := int64(len(head))
		err := CheckRestored(bytes.NewReader(head), size, name, sysID)
		if err == nil && len(head) >= 40 && strings.HasPrefix(name, "0") && len(name) == 24 {
			if want := int64(uint32(head[32]) | uint32(head[33])<<8 | uint32(head[34])<<16 | uint32(head[35])<<24); want != size {
				t.Fatalf("accepted %s of %d bytes, header says %d", name, size, want)
			}
		}
	})
}
