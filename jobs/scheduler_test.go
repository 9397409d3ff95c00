package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/lock"
)

func TestSchedulesFire(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t,
		srv("pg1", func(s *config.Server) {
			s.RetentionPolicy = redundancy(2)
			s.BackupSchedule = "* * * * * *" // every second (6 fields: seconds first)
			s.VerifyBackupSchedule = "* * * * * *"
		}),
		srv("standby", func(s *config.Server) { s.PrimarySSHCommand = "ssh barman@primary" }),
		srv("off", func(s *config.Server) { s.Active = false }),
		srv("noretention", nil),
	)
	tasks := newFakeTasks()
	obs := &fakeObserver{}
	s, err := New(cfg, tasks, obs, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)

	tasks.waitCalls(t, JobArchiveWAL, "pg1", 2)
	tasks.waitCalls(t, JobCheckBackup, "pg1", 2)
	tasks.waitCalls(t, JobRetention, "pg1", 2)
	tasks.waitCalls(t, JobBackup, "pg1", 1)
	tasks.waitCalls(t, JobVerify, "pg1", 1)
	tasks.waitCalls(t, JobPassiveSync, "standby", 2)
	tasks.waitCalls(t, JobCheckBackup, "noretention", 2)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	for _, c := range []struct {
		kind JobKind
		srv  string
	}{
		{JobArchiveWAL, "standby"}, {JobBackup, "standby"}, {JobCheckBackup, "standby"},
		{JobArchiveWAL, "off"}, {JobCheckBackup, "off"}, {JobPassiveSync, "off"},
		{JobRetention, "noretention"}, {JobBackup, "noretention"}, {JobPassiveSync, "pg1"},
		{JobVerify, "noretention"}, {JobVerify, "standby"},
	} {
		if n := tasks.count(c.kind, c.srv); n != 0 {
			t.Errorf("%s/%s ran %d times, want never", c.kind, c.srv, n)
		}
	}
	if got := obs.find("finished", "pg1", JobCheckBackup, func(err error) bool { return err == nil }); len(got) < 2 {
		t.Errorf("observer saw %d successful check-backup runs, want >= 2", len(got))
	}
}

func TestScheduledList(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t,
		srv("pg1", func(s *config.Server) {
			s.RetentionPolicy = redundancy(1)
			s.BackupSchedule = "0 3 * * *"
			s.StreamingArchiver = true
		}),
		srv("pg2", func(s *config.Server) { s.Archiver = false }),
		srv("standby", func(s *config.Server) { s.PrimarySSHCommand = "ssh x" }),
	)
	tasks := newFakeTasks()
	s, err := New(cfg, tasks, nil, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Scheduled(); len(got) != 0 {
		t.Fatalf("jobs before Run: %v", got)
	}
	startScheduler(t, s)
	want := []string{
		"archive-wal/pg1", "backup/pg1", "check-backup/pg1", "receive-wal/pg1", "retention/pg1",
		"check-backup/pg2", "passive-sync/standby",
	}
	slices.Sort(want)
	tasks.waitCalls(t, JobCheckBackup, "pg2", 1) // every job is added before the first runs
	if got := s.Scheduled(); !slices.Equal(got, want) {
		t.Fatalf("Scheduled() = %v\nwant %v", got, want)
	}
}

func TestSingleton(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, srv("pg1", nil))
	cfg.Global.Daemon.ArchiveInterval = 10 * time.Millisecond
	var running, maxRunning atomic.Int32
	tasks := newFakeTasks()
	release := make(chan struct{})
	tasks.behave = func(ctx context.Context, kind JobKind, _ string) error {
		if kind != JobArchiveWAL {
			return nil
		}
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		// Much longer than the 10 ms interval: ticks keep coming while
		// the first run is busy.
		select {
		case <-release:
		case <-time.After(150 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	}
	s, err := New(cfg, tasks, nil, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)
	tasks.waitCalls(t, JobArchiveWAL, "pg1", 1)
	// A one-shot run while the scheduled one is busy is refused, not
	// overlapped.
	if err := s.RunOnce(t.Context(), JobArchiveWAL, "pg1"); !errors.Is(err, ErrRunning) {
		t.Errorf("RunOnce during a scheduled run: err = %v, want ErrRunning", err)
	}
	tasks.waitCalls(t, JobArchiveWAL, "pg1", 3)
	close(release)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if m := maxRunning.Load(); m != 1 {
		t.Fatalf("archive-wal ran %d times concurrently, want 1", m)
	}
}

func TestPanicBecomesFailure(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, srv("pg1", nil))
	tasks := newFakeTasks()
	var checks atomic.Int32
	tasks.behave = func(_ context.Context, kind JobKind, _ string) error {
		if kind == JobCheckBackup && checks.Add(1) == 1 {
			panic("corrupt backup.info")
		}
		return nil
	}
	obs := &fakeObserver{}
	s, err := New(cfg, tasks, obs, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)
	isPanic := func(err error) bool {
		var pe *PanicError
		return errors.As(err, &pe) && pe.Server == "pg1" && pe.Job == JobCheckBackup && len(pe.Stack) > 0
	}
	waitUntil(t, &obs.sig, "panic reported as a failure", func() bool {
		return len(obs.find("finished", "pg1", JobCheckBackup, isPanic)) == 1
	})
	// The daemon lives on: the same job succeeds afterwards, others run.
	waitUntil(t, &obs.sig, "check-backup succeeding after the panic", func() bool {
		return len(obs.find("finished", "pg1", JobCheckBackup, func(err error) bool { return err == nil })) >= 2
	})
	tasks.waitCalls(t, JobArchiveWAL, "pg1", 2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// RunOnce takes the same path.
	tasks.behave = func(context.Context, JobKind, string) error { panic(errors.New("boom")) }
	err = s.RunOnce(t.Context(), JobBackup, "pg1")
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Job != JobBackup || err.Error() != `job backup for server "pg1" panicked: boom` {
		t.Fatalf("RunOnce after panic: %v", err)
	}
}

func TestShutdownCancelsAndWaits(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, srv("pg1", func(s *config.Server) { s.RetentionPolicy = redundancy(1) }))
	tasks := newFakeTasks()
	started := make(chan struct{})
	var finished atomic.Bool
	var sawCancel atomic.Bool
	tasks.behave = func(ctx context.Context, kind JobKind, _ string) error {
		if kind != JobRetention {
			return nil
		}
		if finished.Load() {
			return nil
		}
		close(started)
		<-ctx.Done()
		sawCancel.Store(true)
		// Cleaning up after cancellation (marking a backup FAILED) takes
		// a moment; shutdown must wait for it.
		time.Sleep(100 * time.Millisecond)
		finished.Store(true)
		return ctx.Err()
	}
	obs := &fakeObserver{}
	s, err := New(cfg, tasks, obs, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("retention never started")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !sawCancel.Load() || !finished.Load() {
		t.Fatalf("Run returned before the running task finished (cancelled=%v finished=%v)", sawCancel.Load(), finished.Load())
	}
	if got := obs.find("finished", "pg1", JobRetention, func(err error) bool { return errors.Is(err, context.Canceled) }); len(got) != 1 {
		t.Fatalf("observer: %d cancelled retention runs, want 1", len(got))
	}
	if err := s.Run(t.Context()); !errors.Is(err, ErrStopped) {
		t.Fatalf("second Run: %v, want ErrStopped", err)
	}
	if err := s.Reload(cfg); !errors.Is(err, ErrStopped) {
		t.Fatalf("Reload after Run: %v, want ErrStopped", err)
	}
}

func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, srv("pg1", nil))
	tasks := newFakeTasks()
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	started := make(chan struct{}, 1)
	tasks.behave = func(_ context.Context, kind JobKind, _ string) error {
		if kind == JobCheckBackup {
			select {
			case started <- struct{}{}:
			default:
			}
			<-stuck // ignores its context
		}
		return nil
	}
	opts := fastOptions()
	opts.StopTimeout = 200 * time.Millisecond
	s, err := New(cfg, tasks, nil, testLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)
	<-started
	err = stop()
	if !errors.Is(err, gocron.ErrStopJobsTimedOut) {
		t.Fatalf("Run with a stuck job: %v, want ErrStopJobsTimedOut", err)
	}
}

func TestBadCronNamesServer(t *testing.T) {
	t.Parallel()
	for _, expr := range []string{"61 * * * *", "* * * *", "@every nonsense", "@reboot", "not a cron"} {
		t.Run(expr, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, srv("good", func(s *config.Server) { s.BackupSchedule = "0 3 * * *" }),
				srv("pg-bad", func(s *config.Server) { s.BackupSchedule = expr }))
			_, err := New(cfg, newFakeTasks(), nil, nil, Options{})
			if err == nil {
				t.Fatalf("New accepted backup_schedule %q", expr)
			}
			if !strings.Contains(err.Error(), `server "pg-bad"`) || !strings.Contains(err.Error(), expr) || strings.Contains(err.Error(), "good") {
				t.Fatalf("error does not name the server and schedule: %v", err)
			}
			if !errors.Is(err, gocron.ErrCronJobParse) && !errors.Is(err, gocron.ErrCronJobInvalid) {
				t.Fatalf("error does not wrap gocron's: %v", err)
			}
		})
	}
	for _, expr := range []string{"0 3 * * *", "*/10 * * * * *", "@daily", "@every 6h", "CRON_TZ=UTC 0 3 * * 1-5"} {
		if err := ValidateSchedule(expr, nil); err != nil {
			t.Errorf("ValidateSchedule(%q): %v", expr, err)
		}
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	never := "0 0 1 1 *" // midnight on 1 January: not during this test
	pg1 := func(schedule string) *config.Server {
		return srv("pg1", func(s *config.Server) { s.BackupSchedule = schedule; s.RetentionPolicy = redundancy(1) })
	}
	cfg1 := testConfig(t, pg1(never), srv("old", nil))
	tasks := newFakeTasks()
	backupStarted := make(chan context.Context, 1)
	releaseBackup := make(chan struct{})
	oldCancelled := make(chan struct{})
	var oldOnce atomic.Bool
	tasks.behave = func(ctx context.Context, kind JobKind, srv string) error {
		switch {
		case kind == JobBackup:
			select {
			case backupStarted <- ctx:
			default:
			}
			select {
			case <-releaseBackup:
			case <-ctx.Done():
			}
			return ctx.Err()
		case srv == "old" && kind == JobCheckBackup && oldOnce.CompareAndSwap(false, true):
			<-ctx.Done() // removing the server must cancel its work
			close(oldCancelled)
			return ctx.Err()
		}
		return nil
	}
	obs := &fakeObserver{}
	s, err := New(cfg1, tasks, obs, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)
	tasks.waitCalls(t, JobCheckBackup, "old", 1)
	tasks.waitCalls(t, JobCheckBackup, "pg1", 1)
	ids := func(name string) map[JobKind]string {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := map[JobKind]string{}
		if st := s.servers[name]; st != nil {
			for k, j := range st.jobs {
				out[k] = j.job.ID().String()
			}
		}
		return out
	}
	before := ids("pg1")

	// Reload 1: "old" leaves, "new" arrives, pg1's backups now run every
	// second and it streams.
	cfg2 := testConfig(t, pg1("* * * * * *"), srv("new", func(s *config.Server) { s.StreamingArchiver = true }))
	cfg2.Servers["pg1"].BackupDirectory = cfg1.Servers["pg1"].BackupDirectory
	if err := s.Reload(cfg2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-oldCancelled:
	case <-time.After(waitTimeout):
		t.Fatal("the removed server's running job was not cancelled")
	}
	if len(obs.find("forget", "old", "", nil)) != 1 {
		t.Error("observer not told to forget the removed server")
	}
	after := ids("pg1")
	for _, k := range []JobKind{JobArchiveWAL, JobCheckBackup, JobRetention} {
		if before[k] == "" || before[k] != after[k] {
			t.Errorf("unaffected job %s/pg1 was re-created (%s -> %s)", k, before[k], after[k])
		}
	}
	if before[JobBackup] == after[JobBackup] {
		t.Error("backup/pg1 kept its old schedule")
	}
	tasks.waitCalls(t, JobCheckBackup, "new", 1)
	tasks.waitCalls(t, JobReceiveWAL, "new", 1)
	var backupCtx context.Context
	select {
	case backupCtx = <-backupStarted:
	case <-time.After(waitTimeout):
		t.Fatal("backup never ran on its new schedule")
	}

	// Reload 2, during the backup: retime it again, drop retention and
	// streaming. The backup in progress must survive the retiming.
	cfg3 := testConfig(t, srv("pg1", func(s *config.Server) { s.BackupSchedule = "*/2 * * * * *" }), srv("new", nil))
	cfg3.Servers["pg1"].BackupDirectory = cfg1.Servers["pg1"].BackupDirectory
	cfg3.Servers["new"].BackupDirectory = cfg2.Servers["new"].BackupDirectory
	if err := s.Reload(cfg3); err != nil {
		t.Fatal(err)
	}
	if backupCtx.Err() != nil {
		t.Fatal("retiming backup_schedule cancelled the backup in progress")
	}
	waitUntil(t, &obs.sig, "receive-wal of new stopped", func() bool {
		return len(obs.find("finished", "new", JobReceiveWAL, func(err error) bool { return err == nil })) == 1
	})
	if _, ok := s.ReceiverState("new"); ok {
		t.Error("receive-wal still reported running after streaming_archiver was turned off")
	}
	got := s.Scheduled()
	want := []string{"archive-wal/new", "archive-wal/pg1", "backup/pg1", "check-backup/new", "check-backup/pg1"}
	if !slices.Equal(got, want) {
		t.Errorf("after reload: %v\nwant %v", got, want)
	}

	// A bad reload changes nothing.
	bad := testConfig(t, srv("pg1", func(s *config.Server) { s.BackupSchedule = "99 * * * *" }))
	if err := s.Reload(bad); err == nil || !strings.Contains(err.Error(), `server "pg1"`) {
		t.Fatalf("bad reload: %v", err)
	}
	if got := s.Scheduled(); !slices.Equal(got, want) {
		t.Errorf("a rejected reload changed the jobs: %v", got)
	}
	close(releaseBackup)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := Backoff{Min: time.Second, Max: 10 * time.Second}
	for _, c := range []struct{ cur, want time.Duration }{
		{0, time.Second}, {time.Second, 2 * time.Second}, {4 * time.Second, 8 * time.Second},
		{8 * time.Second, 10 * time.Second}, {10 * time.Second, 10 * time.Second},
		{time.Duration(1 << 62), 10 * time.Second},
	} {
		if got := b.next(c.cur); got != c.want {
			t.Errorf("next(%v) = %v, want %v", c.cur, got, c.want)
		}
	}
}

func TestReceiverRestartsWithBackoff(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, srv("pg1", func(s *config.Server) { s.StreamingArchiver = true }))
	tasks := newFakeTasks()
	refused := errors.New("connection refused")
	var live atomic.Pointer[fakeHandle]
	tasks.start = func(ctx context.Context, _ string, n int) (ReceiverHandle, error) {
		switch n {
		case 1:
			return nil, refused // PostgreSQL not up yet
		case 2, 3:
			return endedHandle(), nil // stream dropped at once
		}
		h := newFakeHandle(ctx)
		live.Store(h)
		return h, nil
	}
	obs := &fakeObserver{}
	s, err := New(cfg, tasks, obs, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	stop := startScheduler(t, s)
	tasks.waitCalls(t, JobReceiveWAL, "pg1", 4)
	waitUntil(t, &tasks.sig, "receiver state", func() bool { _, ok := s.ReceiverState("pg1"); return ok })
	if st, _ := s.ReceiverState("pg1"); st != "streaming" {
		t.Errorf("ReceiverState = %v", st)
	}
	if got := obs.find("finished", "pg1", JobReceiveWAL, func(err error) bool { return errors.Is(err, refused) }); len(got) != 1 {
		t.Errorf("start failures reported: %d, want 1", len(got))
	}
	if got := obs.find("finished", "pg1", JobReceiveWAL, func(err error) bool { return errors.Is(err, ErrReceiverEnded) }); len(got) != 2 {
		t.Errorf("unexpected ends reported: %d, want 2", len(got))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	h := live.Load()
	select {
	case <-h.Done():
	default:
		t.Fatal("shutdown left receive-wal running")
	}
	if n := tasks.count(JobReceiveWAL, "pg1"); n != 4 {
		t.Errorf("receive-wal started %d times, want 4 (no restart after a requested stop)", n)
	}
}

// TestArchiveTriggeredByNewWAL uses a real catalog directory: a file
// renamed into incoming/ triggers archive-wal long before its fallback
// interval (an hour here).
func TestArchiveTriggeredByNewWAL(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, srv("pg1", func(s *config.Server) { s.StreamingArchiver = true }))
	cfg.Global.Daemon.ArchiveInterval = time.Hour
	l := catalog.NewLayout("pg1", cfg.Servers["pg1"].BackupDirectory, cfg.Global.LockDirectory())
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	tasks := newFakeTasks()
	s, err := New(cfg, tasks, nil, testLogger(t), fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	startScheduler(t, s)
	tasks.waitCalls(t, JobArchiveWAL, "pg1", 1) // the immediate first pass

	for i, dir := range []string{l.IncomingDir, l.StreamingDir} {
		n := tasks.count(JobArchiveWAL, "pg1")
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte("wal"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("00000001000000000000000%d", i+1))); err != nil {
			t.Fatal(err)
		}
		tasks.waitCalls(t, JobArchiveWAL, "pg1", n+1)
	}
}

func TestRunOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, srv("pg1", nil))
	tasks := newFakeTasks()
	busy := &lock.BusyError{Path: "/x/.pg1-backup.lock", PID: 42}
	tasks.behave = func(_ context.Context, kind JobKind, _ string) error {
		switch kind {
		case JobBackup:
			return fmt.Errorf("backup of pg1: %w", busy)
		case JobPassiveSync:
			return ErrNotApplicable
		case JobRetention:
			return errors.New("disk full")
		}
		return nil
	}
	obs := &fakeObserver{}
	s, err := New(cfg, tasks, obs, testLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.RunOnce(ctx, JobCheckBackup, "pg1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RunOnce(ctx, JobBackup, "pg1"); !errors.Is(err, lock.ErrBusy) {
		t.Fatalf("busy backup: %v", err)
	}
	if err := s.RunOnce(ctx, JobPassiveSync, "pg1"); !errors.Is(err, ErrNotApplicable) {
		t.Fatalf("sync: %v", err)
	}
	if err := s.RunOnce(ctx, JobRetention, "pg1"); err == nil || err.Error() != "disk full" {
		t.Fatalf("retention: %v", err)
	}
	if err := s.RunOnce(ctx, "vacuum", "pg1"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("unknown job: %v", err)
	}
	if err := s.RunOnce(ctx, JobBackup, "nope"); !errors.Is(err, config.ErrUnknownServer) {
		t.Fatalf("unknown server: %v", err)
	}
	if n := len(obs.find("skipped", "pg1", JobBackup, nil)); n != 1 {
		t.Errorf("busy backup: %d skip events, want 1", n)
	}
	if n := len(obs.find("finished", "pg1", JobBackup, nil)); n != 0 {
		t.Errorf("busy backup counted as finished %d times", n)
	}
	if n := len(obs.find("finished", "pg1", JobRetention, func(err error) bool { return err != nil })); n != 1 {
		t.Errorf("failed retention: %d failure events, want 1", n)
	}

	// receive-wal in the foreground runs until its context ends.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.RunOnce(rctx, JobReceiveWAL, "pg1") }()
	tasks.waitCalls(t, JobReceiveWAL, "pg1", 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("foreground receive-wal: %v", err)
	}
	tasks.start = func(context.Context, string, int) (ReceiverHandle, error) { return endedHandle(), nil }
	if err := s.RunOnce(ctx, JobReceiveWAL, "pg1"); !errors.Is(err, ErrReceiverEnded) {
		t.Fatalf("receiver ending by itself: %v", err)
	}
}
