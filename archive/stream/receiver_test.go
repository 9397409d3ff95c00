package stream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/wal"
)

// TestStreamStopStartNoGap streams through a Supervisor while the server
// writes, stops the server mid-segment, restarts it, and checks that
// streaming resumes with no gap and every complete segment equals the
// server's own.
func TestStreamStopStartNoGap(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{ExtraConf: keepWAL})
	l := testLayout(t, "pg")
	o := testOptions(t, c, l)
	o.SlotName, o.CreateSlot = "cellar_stream", true

	sup, err := NewSupervisor(o, Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sup.Start(context.Background())
	t.Cleanup(sup.Stop)
	progress := func() Progress {
		s := sup.State()
		return Progress{LastReceivedLSN: s.LastReceivedLSN, LastFlushLSN: s.LastFlushLSN}
	}
	waitFor(t, "receiver to stream", func() bool { return sup.State().Running })

	// Bulk writes while streaming, then a little more so the server stops
	// in the middle of a segment.
	c.Pgbench(t, "-i", "-s", "2", "-q")
	c.GenerateWAL(t, 2)
	c.Exec(t, "CREATE TABLE mid (x int); INSERT INTO mid SELECT generate_series(1, 1000)")
	mid := currentLSN(t, c)
	if mid%wal.LSN(segSize) == 0 {
		t.Fatalf("test setup: %s is on a segment boundary", mid)
	}
	waitReceived(t, progress, mid)

	// The walsender reports us as a WAL streamer under Barman's name.
	conn, err := postgres.Connect(context.Background(), c.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := conn.ReplicationStats(context.Background())
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].ApplicationName != DefaultApplicationName || !stats[0].IsWALStreamer() || stats[0].SlotName != o.SlotName {
		t.Errorf("pg_stat_replication = %+v, want one WAL streamer %q on slot %q", stats, DefaultApplicationName, o.SlotName)
	}

	c.Stop(t)
	waitFor(t, "the supervisor to notice the stop", func() bool { return !sup.State().Running && sup.State().LastError != "" })
	c.Start(t)
	waitFor(t, "the supervisor to reconnect", func() bool { return sup.State().Running })

	closed := c.GenerateWAL(t, 3)
	last, err := wal.ParseName(closed[len(closed)-1])
	if err != nil {
		t.Fatal(err)
	}
	waitReceived(t, progress, last.Next(segSize).StartLSN(segSize))
	// The receiver flushed (and reported) at least the last complete
	// segment; the slot follows the reported flush position.
	waitFor(t, "flush report", func() bool { return sup.State().LastFlushLSN >= last.Next(segSize).StartLSN(segSize) })
	waitFor(t, "slot restart_lsn to advance", func() bool {
		s := c.QueryRow(t, "SELECT coalesce(restart_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = 'cellar_stream'")
		l, err := wal.ParseLSN(s)
		return err == nil && l >= last.StartLSN(segSize)
	})

	st := sup.State()
	if st.Restarts == 0 || st.ServerLSN == 0 || st.LastFlushTime.IsZero() {
		t.Errorf("state after a server restart = %+v, want restarts, a server LSN and a flush time", st)
	}
	sup.Stop()

	nos := checkSegments(t, l.StreamingDir, 1, c)
	checkContiguous(t, "timeline 1", nos)
	if len(nos) < 4 || nos[len(nos)-1] != last.SegNo(segSize) {
		t.Fatalf("complete segments %X, want at least 4 ending with %s", nos, last)
	}
	// After the last complete segment comes exactly one .partial.
	files := streamedFiles(t, l.StreamingDir)
	tail := files[len(files)-1]
	if tail.Kind != wal.KindPartial || tail.SegNo(segSize) != last.SegNo(segSize)+1 {
		t.Errorf("newest streamed file %s, want the .partial after %s", tail, last)
	}
	fi, err := os.Stat(filepath.Join(l.StreamingDir, tail.String()))
	if err != nil || uint64(fi.Size()) != segSize {
		t.Errorf("partial %s: size %v (%v), want %d", tail, fi, err, segSize)
	}
}

// TestSynchronous makes the receiver the synchronous standby: commits only
// return once it has fsynced and reported the commit record.
func TestSynchronous(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{ExtraConf: append([]string{
		"synchronous_standby_names = '" + DefaultApplicationName + "'",
	}, keepWAL...)})
	l := testLayout(t, "pg")
	o := testOptions(t, c, l)
	if listed, err := IsSynchronousStandby(context.Background(), o); err != nil || !listed {
		t.Fatalf("IsSynchronousStandby = %v, %v; want true", listed, err)
	}
	o.Synchronous = true
	o.StatusInterval = time.Hour // only per-chunk reports can release commits
	r := startReceiver(t, o)
	waitFor(t, "streaming", func() bool { return r.rec.Progress().Streaming })

	for i := range 20 {
		// Hangs (and times out below) unless each commit's WAL is flushed
		// and reported at once.
		c.Exec(t, "SET statement_timeout = '20s'; CREATE TABLE IF NOT EXISTS s (x int); INSERT INTO s VALUES ("+strconv.Itoa(i)+")")
	}
	got := c.QueryRow(t, "SELECT sync_state || ' ' || (flush_lsn >= pg_current_wal_flush_lsn())::text FROM pg_stat_replication")
	if got != "sync true" {
		t.Errorf("sync_state/flush = %q, want \"sync true\"", got)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("clean stop: %v", err)
	}
}

// TestLockAndSlotErrors: a second receiver on the same server is refused by
// the lock; one on another layout but the same slot gets the slot-in-use
// error naming the walsender's PID; a missing slot without create_slot is
// an error; --stop of nothing is ErrNotRunning.
func TestLockAndSlotErrors(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	l := testLayout(t, "pg")
	o := testOptions(t, c, l)
	o.SlotName = "busy_slot"

	ctx := context.Background()
	if err := Stop(ctx, l); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Stop with no receiver: %v, want ErrNotRunning", err)
	}
	rec, err := NewReceiver(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Run(ctx); !errors.Is(err, ErrSlotMissing) {
		t.Fatalf("Run without the slot: %v, want ErrSlotMissing", err)
	}
	if err := CreateSlot(ctx, o, false); err != nil {
		t.Fatal(err)
	}
	if err := CreateSlot(ctx, o, false); !errors.Is(err, postgres.ErrSlotExists) {
		t.Errorf("second CreateSlot: %v, want ErrSlotExists", err)
	}
	if err := CreateSlot(ctx, o, true); err != nil {
		t.Errorf("CreateSlot if-not-exists: %v", err)
	}

	r := startReceiver(t, o)
	waitFor(t, "streaming", func() bool { return r.rec.Progress().Streaming })

	rec2, _ := NewReceiver(o)
	err = rec2.Run(ctx)
	var busy *lock.BusyError
	if !errors.Is(err, ErrAlreadyRunning) || !errors.As(err, &busy) || busy.PID != os.Getpid() {
		t.Errorf("second receiver, same lock: %v, want ErrAlreadyRunning naming PID %d", err, os.Getpid())
	}

	o2 := o
	o2.Layout = testLayout(t, "pg")
	rec3, _ := NewReceiver(o2)
	err = rec3.Run(ctx)
	pid, _ := strconv.Atoi(c.QueryRow(t, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'busy_slot'"))
	var inUse *SlotInUseError
	if !errors.As(err, &inUse) || inUse.Slot != "busy_slot" || inUse.PID != pid || pid == 0 {
		t.Errorf("receiver on a busy slot: %v, want a SlotInUseError naming PID %d", err, pid)
	} else if !strings.Contains(err.Error(), strconv.Itoa(pid)) || !strings.Contains(err.Error(), "busy_slot") {
		t.Errorf("error %q does not name the slot and the PID", err)
	}
	if err := DropSlot(ctx, o); !errors.Is(err, ErrSlotInUse) {
		t.Errorf("DropSlot of an active slot: %v, want ErrSlotInUse", err)
	}
	if err := r.stop(t); err != nil {
		t.Errorf("clean stop: %v", err)
	}
	waitFor(t, "slot release", func() bool {
		return c.QueryRow(t, "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'busy_slot'") == "false"
	})
	if err := DropSlot(ctx, o); err != nil {
		t.Errorf("DropSlot: %v", err)
	}
	if err := DropSlot(ctx, o); !errors.Is(err, postgres.ErrSlotNotFound) {
		t.Errorf("DropSlot again: %v, want ErrSlotNotFound", err)
	}
}

// TestTimelineSwitch streams from a primary, then from its promoted
// standby: the receiver follows the switch, keeps the old timeline's last
// segment as .partial, stores 00000002.history and streams timeline 2.
func TestTimelineSwitch(t *testing.T) {
	t.Parallel()
	a := pgtest.Start(t, pgtest.Options{ExtraConf: keepWAL})
	b := a.NewStandby(t)
	l := testLayout(t, "pg")

	r := startReceiver(t, testOptions(t, a, l))
	a.GenerateWAL(t, 2)
	a.Exec(t, "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)")
	end := currentLSN(t, a)
	waitReceived(t, r.rec.Progress, end)
	waitFor(t, "standby replay", func() bool { return currentLSN(t, b) >= end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	a.Stop(t)

	b.Promote(t)
	waitFor(t, "promotion", func() bool { return b.QueryRow(t, "SELECT pg_is_in_recovery()::text") == "false" })
	closed := b.GenerateWAL(t, 2)
	last, err := wal.ParseName(closed[len(closed)-1])
	if err != nil {
		t.Fatal(err)
	}
	if last.TLI != 2 {
		t.Fatalf("test setup: promoted standby on timeline %d", last.TLI)
	}

	r = startReceiver(t, testOptions(t, b, l))
	waitReceived(t, r.rec.Progress, last.Next(segSize).StartLSN(segSize))
	if p := r.rec.Progress(); p.Timeline != 2 {
		t.Errorf("receiver on timeline %d, want 2", p.Timeline)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	hist, err := os.ReadFile(filepath.Join(l.StreamingDir, "00000002.history"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(b.DataDir, "pg_wal", "00000002.history"))
	if err != nil {
		t.Fatal(err)
	}
	if string(hist) != string(want) {
		t.Errorf("00000002.history = %q, want %q", hist, want)
	}
	entries, err := wal.ParseHistory(hist)
	if err != nil || len(entries) != 1 {
		t.Fatalf("history %q: %v", hist, err)
	}
	switchSeg := wal.NameForLSN(1, entries[0].SwitchPoint, segSize)

	tl1 := checkSegments(t, l.StreamingDir, 1, a)
	checkContiguous(t, "timeline 1", tl1)
	tl2 := checkSegments(t, l.StreamingDir, 2, b)
	checkContiguous(t, "timeline 2", tl2)
	if len(tl2) == 0 || tl2[0] != switchSeg.SegNo(segSize) || tl2[len(tl2)-1] != last.SegNo(segSize) {
		t.Errorf("timeline 2 segments %X, want %X..%X", tl2, switchSeg.SegNo(segSize), last.SegNo(segSize))
	}
	if entries[0].SwitchPoint%wal.LSN(segSize) != 0 {
		// The old timeline's segment holding the switch stays .partial,
		// with the old timeline's bytes up to the switch point.
		p := filepath.Join(l.StreamingDir, switchSeg.Partial().String())
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("old timeline partial: %v", err)
		}
		ref, err := os.ReadFile(filepath.Join(a.DataDir, "pg_wal", switchSeg.String()))
		if err != nil {
			t.Fatal(err)
		}
		n := uint64(entries[0].SwitchPoint) % segSize
		if string(got[:n]) != string(ref[:n]) {
			t.Errorf("%s differs from the old primary's segment before the switch point", p)
		}
		if len(tl1) > 0 && tl1[len(tl1)-1]+1 != switchSeg.SegNo(segSize) {
			t.Errorf("timeline 1: complete segments end at %X, partial at %X", tl1[len(tl1)-1], switchSeg.SegNo(segSize))
		}
	}
}
