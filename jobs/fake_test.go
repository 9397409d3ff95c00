package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/config"
)

// waitTimeout bounds every wait in these tests; it is a failure deadline,
// not a timing assertion.
const waitTimeout = 10 * time.Second

// signal is a broadcast: wait returns a channel closed at the next event.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) fire() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
	}
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// waitUntil blocks until cond holds, re-checking at every event of sig.
func waitUntil(t *testing.T, sig *signal, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		ch := sig.wait()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// fakeTasks records calls; behave, when set, decides what a call does. The
// real tasks are tested in their own packages; here only scheduling is.
type fakeTasks struct {
	sig    signal
	mu     sync.Mutex
	calls  map[string]int
	behave func(ctx context.Context, kind JobKind, srv string) error
	start  func(ctx context.Context, srv string, n int) (ReceiverHandle, error)
}

func newFakeTasks() *fakeTasks { return &fakeTasks{calls: map[string]int{}} }

func (f *fakeTasks) count(kind JobKind, srv string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[string(kind)+"/"+srv]
}

func (f *fakeTasks) waitCalls(t *testing.T, kind JobKind, srv string, n int) {
	t.Helper()
	waitUntil(t, &f.sig, fmt.Sprintf("%d calls of %s/%s", n, kind, srv), func() bool { return f.count(kind, srv) >= n })
}

func (f *fakeTasks) do(ctx context.Context, kind JobKind, srv string) error {
	f.mu.Lock()
	f.calls[string(kind)+"/"+srv]++
	b := f.behave
	f.mu.Unlock()
	f.sig.fire()
	if b != nil {
		return b(ctx, kind, srv)
	}
	return nil
}

func (f *fakeTasks) ArchiveWAL(ctx context.Context, srv string) error {
	return f.do(ctx, JobArchiveWAL, srv)
}
func (f *fakeTasks) Backup(ctx context.Context, srv string) error { return f.do(ctx, JobBackup, srv) }
func (f *fakeTasks) CheckBackups(ctx context.Context, srv string) error {
	return f.do(ctx, JobCheckBackup, srv)
}
func (f *fakeTasks) EnforceRetention(ctx context.Context, srv string) error {
	return f.do(ctx, JobRetention, srv)
}
func (f *fakeTasks) SyncPassive(ctx context.Context, srv string) error {
	return f.do(ctx, JobPassiveSync, srv)
}
func (f *fakeTasks) VerifyBackups(ctx context.Context, srv string) error {
	return f.do(ctx, JobVerify, srv)
}

func (f *fakeTasks) StartReceiveWAL(ctx context.Context, srv string) (ReceiverHandle, error) {
	f.mu.Lock()
	f.calls[string(JobReceiveWAL)+"/"+srv]++
	n := f.calls[string(JobReceiveWAL)+"/"+srv]
	start := f.start
	f.mu.Unlock()
	defer f.sig.fire()
	if start != nil {
		return start(ctx, srv, n)
	}
	return newFakeHandle(ctx), nil
}

// fakeHandle ends when stopped or when its ctx ends.
type fakeHandle struct {
	stopOnce sync.Once
	stopped  chan struct{}
	done     chan struct{}
}

func newFakeHandle(ctx context.Context) *fakeHandle {
	h := &fakeHandle{stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		select {
		case <-h.stopped:
		case <-ctx.Done():
		}
		close(h.done)
	}()
	return h
}

// endedHandle has already ended by itself.
func endedHandle() *fakeHandle {
	h := &fakeHandle{stopped: make(chan struct{}), done: make(chan struct{})}
	close(h.done)
	return h
}

func (h *fakeHandle) Stop()                 { h.stopOnce.Do(func() { close(h.stopped) }) }
func (h *fakeHandle) Done() <-chan struct{} { return h.done }
func (h *fakeHandle) State() any            { return "streaming" }

// event is one Observer call.
type event struct {
	what, server, job string
	err               error
}

type fakeObserver struct {
	sig    signal
	mu     sync.Mutex
	events []event
}

func (o *fakeObserver) add(e event) {
	o.mu.Lock()
	o.events = append(o.events, e)
	o.mu.Unlock()
	o.sig.fire()
}

func (o *fakeObserver) JobStarted(server, job string) { o.add(event{"started", server, job, nil}) }
func (o *fakeObserver) JobFinished(server, job string, _ time.Duration, err error) {
	o.add(event{"finished", server, job, err})
}
func (o *fakeObserver) JobSkipped(server, job string, err error) {
	o.add(event{"skipped", server, job, err})
}
func (o *fakeObserver) Forget(server string) { o.add(event{"forget", server, "", nil}) }

// find returns the events matching what/server/job and pred (nil = any).
func (o *fakeObserver) find(what, server string, job JobKind, pred func(error) bool) []event {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []event
	for _, e := range o.events {
		if e.what == what && e.server == server && (job == "" || e.job == string(job)) && (pred == nil || pred(e.err)) {
			out = append(out, e)
		}
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testConfig builds a validated-looking configuration by hand: config.Load
// is config's business; the scheduler only reads the fields.
func testConfig(t *testing.T, servers ...*config.Server) *config.Config {
	t.Helper()
	home := t.TempDir()
	g := config.DefaultGlobal()
	g.BarmanHome = home
	g.Daemon.ArchiveInterval = 200 * time.Millisecond
	g.Daemon.CheckBackupInterval = 200 * time.Millisecond
	g.Daemon.RetentionInterval = 200 * time.Millisecond
	cfg := &config.Config{Global: g, Servers: map[string]*config.Server{}}
	for _, s := range servers {
		if s.BackupDirectory == "" {
			s.BackupDirectory = filepath.Join(home, s.Name)
		}
		cfg.Servers[s.Name] = s
	}
	return cfg
}

// srv returns a server with Barman's defaults plus the changes of mod.
func srv(name string, mod func(*config.Server)) *config.Server {
	s := config.DefaultServer(name)
	s.Archiver = true
	if mod != nil {
		mod(s)
	}
	return s
}

func redundancy(n int) config.RetentionPolicy {
	return config.RetentionPolicy{Kind: config.RetentionRedundancy, Value: n}
}

// fastOptions make every loop of the scheduler quick.
func fastOptions() Options {
	return Options{
		PollInterval:        20 * time.Millisecond,
		PassiveSyncInterval: 200 * time.Millisecond,
		StopTimeout:         5 * time.Second,
		ReceiveWALBackoff:   Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond},
	}
}

// startScheduler runs s in the background; the returned stop cancels it and
// returns Run's error.
func startScheduler(t *testing.T, s *Scheduler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(waitTimeout):
				t.Fatalf("Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
