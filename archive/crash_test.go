package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	childDirEnv  = "CELLAR_ARCHIVE_CRASH_DIR"
	childCompEnv = "CELLAR_ARCHIVE_CRASH_COMPRESSION"
)

// TestArchiveCrashChild is the child side of TestArchiveKill9: it only
// does something when re-executed by that test.
func TestArchiveCrashChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		return
	}
	e := newEnvAt(t, dir, mib, os.Getenv(childCompEnv))
	e.opts.Out = io.Discard
	a, err := NewArchiver(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	for {
		rep, err := a.ArchiveWAL(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Archived)+len(rep.Dropped) == 0 {
			return
		}
	}
}

// TestArchiveKill9 SIGKILLs archive-wal at random points and checks that
// no segment is ever lost, nothing valid lands in errors/, and that the
// final xlog.db agrees with rebuild-xlogdb.
func TestArchiveKill9(t *testing.T) {
	t.Parallel()
	const trials = 60
	dir := t.TempDir()
	e := newEnvAt(t, dir, mib, CompressionZstd)
	l := e.opts.Layout
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	t.Logf("seed-independent: %d trials", trials)

	digests := map[string][32]byte{} // every segment ever written
	next := uint64(1)
	topUp := func() {
		for len(listDir(t, l.IncomingDir)) < 40 {
			name := segName(1, next, mib)
			data := segment(name, mib, testSysID, next)
			put(t, l.IncomingDir, name, data)
			digests[name] = sha256.Sum256(data)
			next++
		}
	}
	verified := map[string]bool{}
	check := func(trial int) {
		for name, want := range digests {
			stored := l.WALPath(mustName(name))
			if _, err := os.Stat(stored); err == nil {
				if !verified[name] {
					f, err := os.Open(stored)
					if err != nil {
						t.Fatal(err)
					}
					r, _, err := SniffDecompressor(f)
					if err != nil {
						t.Fatalf("trial %d: %s: %v", trial, name, err)
					}
					h := sha256.New()
					if _, err := io.Copy(h, r); err != nil {
						t.Fatalf("trial %d: stored %s unreadable: %v", trial, name, err)
					}
					f.Close()
					if !bytes.Equal(h.Sum(nil), want[:]) {
						t.Fatalf("trial %d: stored %s differs from the original", trial, name)
					}
					verified[name] = true
				}
				continue
			}
			fi, err := os.Stat(filepath.Join(l.IncomingDir, name))
			if err != nil {
				t.Fatalf("trial %d: segment %s LOST: in neither wals/ nor incoming/", trial, name)
			}
			if fi.Size() != mib {
				t.Fatalf("trial %d: incoming %s changed size", trial, name)
			}
		}
		if errs := listDir(t, l.ErrorsDir); len(errs) != 0 {
			t.Fatalf("trial %d: valid segments moved to errors/: %v", trial, errs)
		}
	}

	killed := 0
	for trial := 0; trial < trials; trial++ {
		topUp()
		comp := []string{CompressionZstd, CompressionNone, CompressionLZ4}[trial%3]
		cmd := exec.Command(os.Args[0], "-test.run=^TestArchiveCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childCompEnv+"="+comp)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			cmd.Wait()
			t.Fatalf("child did not start: %q %s", line, stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(40000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err == nil {
			killed++
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && !ws.Signaled() && err != nil {
			t.Fatalf("trial %d: child failed: %v\n%s", trial, err, stderr.String())
		}
		check(trial)
	}
	// Finish in-process: everything must end archived exactly once.
	for {
		rep := e.archive()
		if len(rep.Archived)+len(rep.Dropped) == 0 {
			break
		}
	}
	check(trials)
	if got := listDir(t, l.IncomingDir); len(got) != 0 {
		t.Fatalf("incoming/ not drained: %v", got)
	}
	names := e.xlogNames()
	want := slices.Sorted(mapsKeys(digests))
	got := slices.Clone(names)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("xlog.db has %d names (%d unique expected)", len(names), len(want))
	}
	e.checkRebuildAgrees()
	t.Logf("%d trials, %d kills, %d segments, %d stored-and-verified", trials, killed, len(digests), len(verified))
}
