package catalog

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

const (
	crashDirEnv   = "CELLAR_CATALOG_CRASH_DIR"
	crashStartEnv = "CELLAR_CATALOG_CRASH_START"
)

func crashLayout(dir string) Layout {
	return NewLayout("pg1", filepath.Join(dir, "pg1"), filepath.Join(dir, "locks"))
}

// TestHelperXLogWriter is not a test by itself: TestXLogDBCrash runs the
// test binary again with this test selected and crashDirEnv set. It then
// appends to xlog.db forever, printing each WAL name after its Append
// returned, and now and then rewrites the catalog (dropping a junk line)
// or replaces it wholesale, until the parent SIGKILLs it.
func TestHelperXLogWriter(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return // only meaningful as the crash test's child
	}
	start, err := strconv.Atoi(os.Getenv(crashStartEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad start:", err)
		os.Exit(2)
	}
	x := OpenXLogDB(crashLayout(dir))
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	for i := start; ; i++ {
		info := WALInfo{Name: walName(1, uint64(i)), Size: 16777216, Time: 1.7e9 + float64(i)/8, Compression: "gzip"}
		if err := x.Append(ctx, info); err != nil {
			fail(err)
		}
		// One write(2) per report: what the parent reads was reported
		// only after Append returned.
		if _, err := os.Stdout.WriteString(info.Name + "\n"); err != nil {
			fail(err)
		}
		switch i % 8 {
		case 3:
			junk := WALInfo{Name: "junk-" + strconv.Itoa(i), Size: 1, Time: 1}
			if err := x.Append(ctx, junk); err != nil {
				fail(err)
			}
			if _, err := x.Rewrite(ctx, func(w WALInfo) bool { return !strings.HasPrefix(w.Name, "junk-") }); err != nil {
				fail(err)
			}
		case 6:
			var all []WALInfo
			if err := x.Scan(ctx, func(w WALInfo) error { all = append(all, w); return nil }); err != nil {
				fail(err)
			}
			if err := x.Replace(ctx, all); err != nil {
				fail(err)
			}
		}
	}
}

// TestXLogDBCrash kills a writer at random moments and checks that the
// catalog always parses and still holds every append that was reported.
func TestXLogDBCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := crashLayout(dir)
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	x := OpenXLogDB(l)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	reported := map[string]bool{}
	const trials = 100
	for trial := range trials {
		names := runCrashChild(t, dir, trial*100000, time.Duration(rng.IntN(25000))*time.Microsecond)
		for _, n := range names {
			reported[n] = true
		}
		present := map[string]bool{}
		err := x.Scan(t.Context(), func(w WALInfo) error {
			if present[w.Name] {
				return fmt.Errorf("duplicate line for %s", w.Name)
			}
			present[w.Name] = true
			return nil
		})
		if err != nil {
			t.Fatalf("trial %d: catalog unreadable after SIGKILL: %v", trial, err)
		}
		for n := range reported {
			if !present[n] {
				t.Fatalf("trial %d: reported append %s is missing from xlog.db", trial, n)
			}
		}
	}
	if len(reported) < trials {
		t.Errorf("only %d appends reported over %d trials; the children barely ran", len(reported), trials)
	}
	t.Logf("%d trials, %d reported appends", trials, len(reported))
}

// runCrashChild starts the helper, waits for its first reported append,
// lets it run for delay, SIGKILLs it and returns every name it reported.
func runCrashChild(t *testing.T, dir string, start int, delay time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperXLogWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStartEnv+"="+strconv.Itoa(start))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		names []string
		first = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		once := sync.OnceFunc(func() { close(first) })
		defer once()
		for sc.Scan() {
			line := sc.Text()
			if _, err := wal.ParseName(line); err != nil {
				continue // test framework chatter
			}
			mu.Lock()
			names = append(names, line)
			mu.Unlock()
			once()
		}
	}()
	select {
	case <-first:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("helper never reported an append; stderr: %s", stderr.String())
	}
	timer := time.NewTimer(delay)
	<-timer.C
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill helper: %v (stderr: %s)", err, stderr.String())
	}
	<-done
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("helper ended by itself (%v); stderr: %s", err, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	return names
}
