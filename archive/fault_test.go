package archive

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable/faultfs"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// realSegments has PostgreSQL archive a few segments into its archive
// directory and returns their contents by name, plus the system identifier
// and a directory holding one pristine copy of each (fsynced, with an old
// mtime), which faultEnv hard-links into each fresh incoming/ so that the
// many runs do not rewrite 16 MiB segments.
func realSegments(t *testing.T, n int) (map[string][32]byte, uint64, string) {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	names := c.GenerateWAL(t, n)
	c.WaitArchived(t, names[len(names)-1])
	sysID, err := strconv.ParseUint(c.SystemID(t), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	segs := map[string][32]byte{}
	pristine := t.TempDir()
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(c.ArchiveDir, name))
		if err != nil {
			t.Fatal(err)
		}
		segs[name] = sha256.Sum256(b)
		put(t, pristine, name, b)
	}
	if err := exec.Command("sync").Run(); err != nil {
		t.Fatal(err)
	}
	return segs, sysID, pristine
}

// faultEnv is a fresh catalog with the segments in incoming/.
func faultEnv(t *testing.T, pristine string, segs map[string][32]byte, sysID uint64, comp string) *testEnv {
	t.Helper()
	e := newEnv(t, uint64(16<<20), comp)
	e.opts.SystemID = sysID
	for name := range segs {
		if err := os.Link(filepath.Join(pristine, name), filepath.Join(e.opts.Layout.IncomingDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// checkNothingLost: every segment is still in incoming/ (whole) or stored
// in wals/ and listed in xlog.db, or both.
func checkNothingLost(t *testing.T, e *testEnv, segs map[string][32]byte, step string) {
	t.Helper()
	listed := map[string]bool{}
	for _, n := range e.xlogNames() {
		listed[n] = true
	}
	for name, want := range segs {
		inIncoming := false
		if f, err := os.Open(filepath.Join(e.opts.Layout.IncomingDir, name)); err == nil {
			got, err := hashOf(func(w io.Writer) error { _, err := io.Copy(w, f); return err })
			f.Close()
			if err != nil || got != want {
				t.Fatalf("%s: incoming copy of %s changed (%v)", step, name, err)
			}
			inIncoming = true
		}
		archived := false
		if listed[name] {
			got, err := hashOf(func(w io.Writer) error { return GetWAL(context.Background(), e.opts, name, w, GetOptions{}) })
			if err != nil || got != want {
				t.Fatalf("%s: %s listed in xlog.db but not stored whole: %v", step, name, err)
			}
			archived = true
		}
		if !inIncoming && !archived {
			t.Fatalf("%s: %s lost (not in incoming/, not archived and catalogued)", step, name)
		}
	}
}

// hashOf is the SHA-256 of what fill writes.
func hashOf(fill func(w io.Writer) error) ([32]byte, error) {
	h := sha256.New()
	err := fill(h)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

// TestArchiveWALFaultInjection fails each filesystem mutation of an
// archive-wal run over real segments in turn: the run must report the
// failure, no segment may be lost, and a normal run afterwards archives
// everything exactly once.
func TestArchiveWALFaultInjection(t *testing.T) {
	t.Parallel()
	segs, sysID, pristine := realSegments(t, 2)
	for _, comp := range []string{CompressionNone, CompressionZstd} {
		t.Run("compression="+comp, func(t *testing.T) {
			t.Parallel()
			count := faultfs.New(0)
			e := faultEnv(t, pristine, segs, sysID, comp)
			e.opts.Ops = count
			e.archive()
			total := len(count.Calls())
			if total < 2*len(segs) {
				t.Fatalf("only %d mutations counted for %d segments: %v", total, len(segs), count.Calls())
			}
			for n := 1; n <= total; n++ {
				faultRun(t, pristine, segs, sysID, comp, n)
			}
		})
	}
}

func faultRun(t *testing.T, pristine string, segs map[string][32]byte, sysID uint64, comp string, n int) {
	t.Helper()
	ffs := faultfs.New(n)
	e := faultEnv(t, pristine, segs, sysID, comp)
	e.opts.Ops = ffs
	a, err := NewArchiver(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.ArchiveWAL(context.Background())
	calls := ffs.Calls()
	step := fmt.Sprintf("failing mutation %d (%v)", n, calls[len(calls)-1])
	if !ffs.Failed() {
		t.Fatalf("%s: the fault never fired", step)
	}
	if !errors.Is(err, faultfs.ErrInjected) {
		t.Fatalf("%s: archive-wal returned %v, want the injected error", step, err)
	}
	checkNothingLost(t, e, segs, step)

	e.opts.Ops = nil
	rep := e.archive()
	if len(rep.Unknown)+len(rep.Duplicates) != 0 {
		t.Fatalf("%s: the next run found %+v", step, rep)
	}
	if left := listDir(t, e.opts.Layout.IncomingDir); len(left) != 0 {
		t.Fatalf("%s: the next run left %v in incoming/", step, left)
	}
	checkNothingLost(t, e, segs, step)
	if got := len(e.xlogNames()); got != len(segs) {
		t.Fatalf("%s: xlog.db has %d lines for %d segments", step, got, len(segs))
	}
	e.checkRebuildAgrees()
	if _, err := os.Stat(catalog.OpenXLogDB(e.opts.Layout).Path()); errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s: no xlog.db", step)
	}
}
