package stream

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

const segSize = wal.DefaultSegmentSize

// keepWAL keeps every segment on the server for the byte comparisons.
var keepWAL = []string{"wal_keep_size = '1GB'", "wal_sender_timeout = '10s'"}

func testLayout(t *testing.T, server string) catalog.Layout {
	t.Helper()
	l := catalog.NewLayout(server, t.TempDir(), t.TempDir())
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	return l
}

func testOptions(t *testing.T, c *pgtest.Cluster, l catalog.Layout) Options {
	t.Helper()
	return Options{
		Server:         l.Server,
		Layout:         l,
		ReplConninfo:   c.ConnString(),
		StatusInterval: time.Second,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

// running is a Receiver.Run in a goroutine.
type running struct {
	rec    *Receiver
	cancel context.CancelFunc
	errc   chan error
}

func startReceiver(t *testing.T, o Options) *running {
	t.Helper()
	rec, err := NewReceiver(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{rec: rec, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- rec.Run(ctx) }()
	t.Cleanup(func() { r.cancel(); <-r.errc })
	return r
}

// stop cancels the receiver and returns Run's result (nil for a clean stop).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.errc:
		r.errc <- nil // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("receiver did not stop within 30 s")
		return nil
	}
}

func currentLSN(t *testing.T, c *pgtest.Cluster) wal.LSN {
	t.Helper()
	s := c.QueryRow(t, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END")
	l, err := wal.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitFor polls cond every 20 ms for up to 30 s (a hang detector, not a
// timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReceived waits until the receiver has written WAL up to lsn.
func waitReceived(t *testing.T, progress func() Progress, lsn wal.LSN) {
	t.Helper()
	waitFor(t, "receiver to reach "+lsn.String(), func() bool { return progress().LastReceivedLSN >= lsn })
}

// streamedFiles lists streaming/ as parsed names, sorted by (segment, tli).
func streamedFiles(t *testing.T, dir string) []wal.Name {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []wal.Name
	for _, e := range entries {
		n, err := wal.ParseName(e.Name())
		if err != nil {
			t.Fatalf("unexpected file %s in streaming/", e.Name())
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return wal.Compare(out[i], out[j]) < 0 })
	return out
}

// checkSegments verifies every complete segment of timeline tli in dir:
// full size and byte-equal to the server's pg_wal copy. It returns their
// segment numbers in order.
func checkSegments(t *testing.T, dir string, tli uint32, c *pgtest.Cluster) []uint64 {
	t.Helper()
	var nos []uint64
	for _, n := range streamedFiles(t, dir) {
		if n.Kind != wal.KindSegment || n.TLI != tli {
			continue
		}
		got, err := os.ReadFile(filepath.Join(dir, n.String()))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", n.String()))
		if err != nil {
			t.Fatalf("server copy of %s: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("streamed %s (%d bytes) differs from the server's pg_wal copy (%d bytes)", n, len(got), len(want))
		}
		nos = append(nos, n.SegNo(segSize))
	}
	return nos
}

// checkContiguous fails if nos (sorted) has a hole.
func checkContiguous(t *testing.T, what string, nos []uint64) {
	t.Helper()
	for i := 1; i < len(nos); i++ {
		if nos[i] != nos[i-1]+1 {
			t.Errorf("%s: gap between segment %X and %X", what, nos[i-1], nos[i])
		}
	}
}

func lockHolder(path string) (int, bool, error) { return lock.Holder(path) }
