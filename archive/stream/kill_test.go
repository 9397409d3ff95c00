package stream

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// Environment of the re-executed test binary that runs a receiver as a
// separate process, so the test can SIGKILL it.
const (
	envChild    = "CELLAR_STREAM_CHILD"
	envConninfo = "CELLAR_STREAM_CONNINFO"
	envBackup   = "CELLAR_STREAM_BACKUP_DIR"
	envLocks    = "CELLAR_STREAM_LOCK_DIR"
	envSlot     = "CELLAR_STREAM_SLOT" // default kill_slot
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

// childMain runs a Supervisor (as the job runner would) until SIGINT or
// SIGTERM; the parent usually kills it with SIGKILL first.
func childMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l := catalog.NewLayout("pg", os.Getenv(envBackup), os.Getenv(envLocks))
	sup, err := NewSupervisor(Options{
		Server:       "pg",
		Layout:       l,
		ReplConninfo: os.Getenv(envConninfo),
		SlotName:     cmp.Or(os.Getenv(envSlot), "kill_slot"),
		CreateSlot:   true,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sup.Start(ctx)
	sup.Wait()
	return 0
}

// TestKill9NoGap SIGKILLs a receiver process at random points while the
// server writes, restarting it each time, then checks that streaming/ holds
// every segment from the first streamed one to the server's current one,
// each byte-equal to the server's copy.
func TestKill9NoGap(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{ExtraConf: keepWAL})
	l := testLayout(t, "pg")

	// Background writer: small transactions, a segment switch now and then.
	wctx, wcancel := context.WithCancel(context.Background())
	werr := make(chan error, 1)
	go func() { werr <- writeLoad(wctx, c.ConnString()) }()
	defer wcancel()

	const trials = 30
	began := time.Now()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 42))
	killedStreaming := 0
	for i := range trials {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=1", envConninfo+"="+c.ConnString(),
			envBackup+"="+l.BackupDir, envLocks+"="+l.LockDir)
		cmd.Stderr = testWriter{t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Every other trial waits for a sign of progress (the receiver
		// holds its lock) before the random delay, so that on a loaded
		// machine the kills still hit running receivers; the others may
		// hit start-up.
		if i%2 == 0 {
			waitReceiverLock(t, l)
		}
		time.Sleep(time.Duration(30+rng.IntN(400)) * time.Millisecond)
		// Count kills of a receiver that got as far as holding the lock,
		// to show the trials are not all start-up kills.
		if _, held, _ := holder(l); held {
			killedStreaming++
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if i == trials/2 {
			// Mid-way, also restart the server (the writer reconnects).
			c.Restart(t)
		}
	}
	t.Logf("trials done in %v", time.Since(began))
	wcancel()
	if err := <-werr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if killedStreaming < trials/2 {
		t.Fatalf("only %d of %d kills hit a running receiver", killedStreaming, trials)
	}

	// Restart once more and catch up with the server's current segment.
	closed := c.SwitchWAL(t)
	last, err := wal.ParseName(closed)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, c, l)
	o.SlotName = "kill_slot"
	r := startReceiver(t, o)
	waitReceived(t, r.rec.Progress, last.Next(segSize).StartLSN(segSize))
	t.Logf("caught up after %v", time.Since(began))
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	nos := checkSegments(t, l.StreamingDir, 1, c)
	checkContiguous(t, "after kill -9 trials", nos)
	if len(nos) < 3 || nos[len(nos)-1] != last.SegNo(segSize) {
		t.Fatalf("complete segments %X, want several ending with %s", nos, last)
	}
	files := streamedFiles(t, l.StreamingDir)
	partials := 0
	for _, f := range files {
		if f.Kind == wal.KindPartial {
			partials++
			if f.SegNo(segSize) != last.SegNo(segSize)+1 {
				t.Errorf("stray partial %s (last complete %s)", f, last)
			}
		}
	}
	if partials != 1 {
		t.Errorf("%d .partial files, want 1: %v", partials, files)
	}
	t.Logf("%d trials, %d killed holding the lock, %d segments streamed", trials, killedStreaming, len(nos))
}

func holder(l catalog.Layout) (int, bool, error) {
	// lock.Holder through the layout's lock path.
	return lockHolder(l.LockPath(lockTask))
}

// writeLoad inserts rows until ctx ends, switching WAL segments every few
// rounds so that many segments complete during the trials. It reconnects
// across server restarts and gives up only when no connection works for
// 30 s.
func writeLoad(ctx context.Context, conninfo string) error {
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	lastOK := time.Now()
	for i := 0; ctx.Err() == nil; i++ {
		var err error
		if conn == nil {
			conn, err = pgconn.Connect(ctx, conninfo)
		}
		if err == nil {
			sql := "CREATE TABLE IF NOT EXISTS load (id serial, payload text); " +
				"INSERT INTO load (payload) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 2000) g"
			if i%8 == 7 {
				sql += "; SELECT pg_switch_wal()"
			}
			_, err = conn.Exec(ctx, sql).ReadAll()
		}
		if err == nil {
			lastOK = time.Now()
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if time.Since(lastOK) > 30*time.Second {
			return err
		}
		if conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// waitReceiverLock waits until the child receiver holds its lock, failing
// the test after a minute.
func waitReceiverLock(t *testing.T, l catalog.Layout) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, held, _ := holder(l); held {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("receiver did not take its lock within a minute")
}
