package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cellar-backup/cellar/internal/lock"
)

// runner is the one path every job run takes, scheduled or one-shot: the
// in-process guard, the Observer, logging and panic recovery.
type runner struct {
	tasks Tasks
	obs   Observer
	log   *slog.Logger

	mu     sync.Mutex
	guards map[guardKey]*sync.Mutex
}

type guardKey struct {
	server string
	kind   JobKind
}

func newRunner(tasks Tasks, obs Observer, logger *slog.Logger) *runner {
	if obs == nil {
		obs = nopObserver{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &runner{tasks: tasks, obs: obs, log: logger, guards: map[guardKey]*sync.Mutex{}}
}

// guard returns the in-process mutex of (srv, kind). gocron's singleton
// mode only covers one gocron job: after a reload re-creates a job, or
// when RunOnce is called in the daemon's process, this guard is what
// keeps two runs of the same job apart.
func (r *runner) guard(srv string, kind JobKind) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := guardKey{srv, kind}
	g, ok := r.guards[k]
	if !ok {
		g = &sync.Mutex{}
		r.guards[k] = g
	}
	return g
}

// isSkip reports whether a task's error means "not run" rather than
// "failed": another process holds the lock, or nothing applies.
func isSkip(err error) bool {
	return errors.Is(err, lock.ErrBusy) || errors.Is(err, ErrNotApplicable)
}

// run executes one job. pre runs after the guard is taken and before the
// task (archive-wal uses it to snapshot the watched directories). The
// returned error is the task's (a *PanicError after a panic), or ErrRunning
// when the guard is held; scheduled callers ignore it because it has been
// logged and observed already.
func (r *runner) run(ctx context.Context, srv string, kind JobKind, pre func()) error {
	g := r.guard(srv, kind)
	log := r.log.With("server", srv, "job", string(kind))
	if !g.TryLock() {
		// The previous run of this job (possibly of a job definition a
		// reload replaced) is still going: skip this tick.
		log.Debug("job still running, skipping this run")
		return fmt.Errorf("%s for server %q: %w", kind, srv, ErrRunning)
	}
	defer g.Unlock()
	if pre != nil {
		pre()
	}
	r.obs.JobStarted(srv, string(kind))
	log.Debug("job started")
	start := time.Now()
	err := r.call(ctx, srv, kind)
	d := time.Since(start)
	switch {
	case err == nil:
		r.obs.JobFinished(srv, string(kind), d, nil)
		lvl := slog.LevelDebug
		if kind == JobBackup || kind == JobRetention || kind == JobVerify {
			lvl = slog.LevelInfo
		}
		log.Log(ctx, lvl, "job finished", "duration", d)
	case isSkip(err):
		if so, ok := r.obs.(SkipObserver); ok {
			so.JobSkipped(srv, string(kind), err)
		}
		lvl := slog.LevelInfo
		if kind == JobArchiveWAL || errors.Is(err, ErrNotApplicable) {
			lvl = slog.LevelDebug
		}
		log.Log(ctx, lvl, "job skipped", "reason", err.Error())
	default:
		r.obs.JobFinished(srv, string(kind), d, err)
		var pe *PanicError
		if errors.As(err, &pe) {
			log.Error("job panicked", "duration", d, "panic", fmt.Sprint(pe.Value), "stack", string(pe.Stack))
		} else if ctx.Err() != nil {
			log.Warn("job interrupted", "duration", d, "error", err.Error())
		} else {
			log.Error("job failed", "duration", d, "error", err.Error())
		}
	}
	return err
}

// call dispatches to the task, turning a panic into a *PanicError. gocron
// recovers panics only when a panic listener is registered, and a panic
// in a goroutine the task started cannot be caught at all; this recover
// covers the task's own goroutine, which is where ours run.
func (r *runner) call(ctx context.Context, srv string, kind JobKind) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Server: srv, Job: kind, Value: v, Stack: debug.Stack()}
		}
	}()
	switch kind {
	case JobArchiveWAL:
		return r.tasks.ArchiveWAL(ctx, srv)
	case JobBackup:
		return r.tasks.Backup(ctx, srv)
	case JobCheckBackup:
		return r.tasks.CheckBackups(ctx, srv)
	case JobRetention:
		return r.tasks.EnforceRetention(ctx, srv)
	case JobPassiveSync:
		return r.tasks.SyncPassive(ctx, srv)
	case JobVerify:
		return r.tasks.VerifyBackups(ctx, srv)
	}
	return fmt.Errorf("%w %q for server %q", ErrUnknownJob, kind, srv)
}

// startReceiver calls StartReceiveWAL with the same panic containment.
func (r *runner) startReceiver(ctx context.Context, srv string) (h ReceiverHandle, err error) {
	defer func() {
		if v := recover(); v != nil {
			h, err = nil, &PanicError{Server: srv, Job: JobReceiveWAL, Value: v, Stack: debug.Stack()}
		}
	}()
	h, err = r.tasks.StartReceiveWAL(ctx, srv)
	if err == nil && h == nil {
		err = fmt.Errorf("receive-wal for server %q: StartReceiveWAL returned no handle", srv)
	}
	return h, err
}

// foregroundReceiver is RunOnce(JobReceiveWAL): run the receiver until ctx
// ends (then stop it and wait) or until it ends by itself.
func (r *runner) foregroundReceiver(ctx context.Context, srv string) error {
	g := r.guard(srv, JobReceiveWAL)
	if !g.TryLock() {
		return fmt.Errorf("%s for server %q: %w", JobReceiveWAL, srv, ErrRunning)
	}
	defer g.Unlock()
	log := r.log.With("server", srv, "job", string(JobReceiveWAL))
	r.obs.JobStarted(srv, string(JobReceiveWAL))
	start := time.Now()
	h, err := r.startReceiver(ctx, srv)
	if err != nil {
		if isSkip(err) {
			if so, ok := r.obs.(SkipObserver); ok {
				so.JobSkipped(srv, string(JobReceiveWAL), err)
			}
			return err
		}
		r.obs.JobFinished(srv, string(JobReceiveWAL), time.Since(start), err)
		log.Error("receive-wal failed to start", "error", err.Error())
		return err
	}
	select {
	case <-h.Done():
		err = fmt.Errorf("server %q: %w", srv, ErrReceiverEnded)
	case <-ctx.Done():
		h.Stop()
		<-h.Done()
	}
	r.obs.JobFinished(srv, string(JobReceiveWAL), time.Since(start), err)
	return err
}

// idle reports whether (srv, kind) is not running in this process right now.
func (r *runner) idle(srv string, kind JobKind) bool {
	g := r.guard(srv, kind)
	if g.TryLock() {
		g.Unlock()
		return true
	}
	return false
}
