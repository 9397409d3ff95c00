package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
)

// Defaults of Options.
const (
	DefaultPollInterval        = time.Second
	DefaultPassiveSyncInterval = time.Minute
	DefaultStopTimeout         = 30 * time.Second
	DefaultBackoffMin          = time.Second
	DefaultBackoffMax          = time.Minute
)

// Options tune the scheduler. Zero values take the defaults above; the
// per-job intervals come from the configuration (global.daemon).
type Options struct {
	// PollInterval is how often incoming/ and streaming/ are checked for
	// new files (a stat of two directories per server) to trigger
	// archive-wal between its fallback runs.
	PollInterval time.Duration
	// PassiveSyncInterval is the period of passive-node sync (Barman's
	// cron runs it every minute).
	PassiveSyncInterval time.Duration
	// StopTimeout bounds how long shutdown waits for running jobs (and
	// each receive-wal's final flush) after cancelling their context.
	StopTimeout time.Duration
	// ReceiveWALBackoff is the restart delay of a failed receive-wal.
	ReceiveWALBackoff Backoff
	// Location is the time zone of backup_schedule (default time.Local;
	// a schedule may also start with CRON_TZ=).
	Location *time.Location
}

func (o Options) withDefaults() Options {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.PassiveSyncInterval <= 0 {
		o.PassiveSyncInterval = DefaultPassiveSyncInterval
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.ReceiveWALBackoff.Min <= 0 {
		o.ReceiveWALBackoff.Min = DefaultBackoffMin
	}
	if o.ReceiveWALBackoff.Max < o.ReceiveWALBackoff.Min {
		o.ReceiveWALBackoff.Max = max(DefaultBackoffMax, o.ReceiveWALBackoff.Min)
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	return o
}

// Scheduler runs every server's jobs in one gocron scheduler.
type Scheduler struct {
	opts Options
	run  *runner
	log  *slog.Logger

	mu      sync.Mutex
	cfg     *config.Config
	state   int
	gs      gocron.Scheduler
	rootCtx context.Context
	servers map[string]*serverState
	recvWG  sync.WaitGroup
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// serverState is what runs for one server.
type serverState struct {
	name   string
	ctx    context.Context // cancelled when the server leaves the config, or at shutdown
	cancel context.CancelFunc
	jobs   map[JobKind]*scheduledJob
	recv   *receiver
}

type scheduledJob struct {
	spec  jobSpec
	job   gocron.Job
	watch *watcher // archive-wal only
}

// jobSpec is everything that defines a scheduled job; a reload re-creates a
// job only when its spec changed.
type jobSpec struct {
	every time.Duration // DurationJob period
	cron  string        // CronJob expression
	// dirs are the directories whose mtime triggers archive-wal.
	dirs [2]string
}

// receiverKey holds the settings a running receive-wal depends on; a reload
// restarts the receiver when one of them changes.
type receiverKey struct {
	streaming, walStreaming string
	slot, name, backupDir   string
	createSlot, compression string
}

type serverPlan struct {
	jobs    map[JobKind]jobSpec
	receive bool
	recvKey receiverKey
}

// New validates the scheduling side of cfg (backup_schedule must parse with
// the scheduler's cron parser; the error names the server) and returns a
// scheduler that starts nothing until Run. tasks does the work; obs (may be
// nil) receives job events; logger may be nil.
func New(cfg *config.Config, tasks Tasks, obs Observer, logger *slog.Logger, opts Options) (*Scheduler, error) {
	if cfg == nil {
		return nil, errors.New("jobs: nil configuration")
	}
	if tasks == nil {
		return nil, errors.New("jobs: nil Tasks")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts = opts.withDefaults()
	if _, err := plan(cfg, opts); err != nil {
		return nil, err
	}
	return &Scheduler{
		opts:    opts,
		run:     newRunner(tasks, obs, logger),
		log:     logger,
		cfg:     cfg,
		servers: map[string]*serverState{},
	}, nil
}

// ValidateSchedule checks a backup_schedule expression with the parser the
// scheduler uses (5 fields, or 6 with seconds first; descriptors such as
// @daily and "@every 6h"; an optional CRON_TZ= prefix).
func ValidateSchedule(expr string, loc *time.Location) error {
	if loc == nil {
		loc = time.Local
	}
	return gocron.NewDefaultCron(true).IsValid(expr, loc, time.Now())
}

// plan computes the jobs of every active server and validates schedules.
func plan(cfg *config.Config, opts Options) (map[string]serverPlan, error) {
	d := cfg.Global.Daemon
	archiveEvery := orDefault(d.ArchiveInterval, config.DefaultArchiveInterval)
	checkEvery := orDefault(d.CheckBackupInterval, config.DefaultCheckBackupEvery)
	retentionEvery := orDefault(d.RetentionInterval, config.DefaultRetentionEvery)

	plans := map[string]serverPlan{}
	var errs []error
	for _, name := range cfg.ServerNames() {
		sc := cfg.Servers[name]
		if sc == nil || !sc.Active {
			continue
		}
		p := serverPlan{jobs: map[JobKind]jobSpec{}}
		if sc.IsPassive() {
			// A passive node only copies from its primary (Barman's
			// sync_cron); it archives and backs up nothing itself.
			p.jobs[JobPassiveSync] = jobSpec{every: opts.PassiveSyncInterval}
			plans[name] = p
			continue
		}
		l := catalog.NewLayout(name, sc.BackupDirectory, cfg.Global.LockDirectory())
		if sc.Archiver || sc.StreamingArchiver {
			p.jobs[JobArchiveWAL] = jobSpec{every: archiveEvery, dirs: [2]string{l.IncomingDir, l.StreamingDir}}
		}
		if sc.StreamingArchiver {
			p.receive = true
			p.recvKey = receiverKey{
				streaming: sc.StreamingConninfo.Raw(), walStreaming: sc.WALStreamingConninfo.Raw(),
				slot: sc.SlotName, name: sc.StreamingArchiverName, backupDir: sc.BackupDirectory,
				createSlot: string(sc.CreateSlot), compression: string(sc.Compression),
			}
		}
		if sc.BackupSchedule != "" {
			if err := ValidateSchedule(sc.BackupSchedule, opts.Location); err != nil {
				errs = append(errs, fmt.Errorf("server %q: invalid backup_schedule %q: %w", name, sc.BackupSchedule, err))
			} else {
				p.jobs[JobBackup] = jobSpec{cron: sc.BackupSchedule}
			}
		}
		if sc.VerifyBackupSchedule != "" {
			if err := ValidateSchedule(sc.VerifyBackupSchedule, opts.Location); err != nil {
				errs = append(errs, fmt.Errorf("server %q: invalid verify_backup_schedule %q: %w", name, sc.VerifyBackupSchedule, err))
			} else {
				p.jobs[JobVerify] = jobSpec{cron: sc.VerifyBackupSchedule}
			}
		}
		p.jobs[JobCheckBackup] = jobSpec{every: checkEvery}
		if sc.RetentionPolicy.IsSet() {
			p.jobs[JobRetention] = jobSpec{every: retentionEvery}
		}
		plans[name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return plans, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Run starts the jobs and blocks until ctx ends. Then it shuts down: the
// context of every running job (and receive-wal) is cancelled and they get
// Options.StopTimeout to finish; the gocron scheduler is shut down. The
// error reports jobs that did not finish in time. Run may be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateNew {
		s.mu.Unlock()
		return fmt.Errorf("jobs: Run: %w", ErrStopped)
	}
	gs, err := gocron.NewScheduler(
		gocron.WithLogger(s.log.With("component", "scheduler")),
		gocron.WithStopTimeout(s.opts.StopTimeout),
		gocron.WithLocation(s.opts.Location),
	)
	if err != nil {
		s.state = stateStopped
		s.mu.Unlock()
		return fmt.Errorf("jobs: creating scheduler: %w", err)
	}
	s.gs, s.rootCtx, s.state = gs, ctx, stateRunning
	var applyErr error
	if plans, err := plan(s.cfg, s.opts); err != nil {
		applyErr = err
	} else {
		applyErr = s.apply(plans)
	}
	gs.Start()
	s.mu.Unlock()
	s.log.Info("job scheduler started", "servers", len(s.servers))

	if applyErr == nil {
		s.poll(ctx)
	}
	return errors.Join(applyErr, s.shutdown())
}

// shutdown stops everything; the root context is already done (or Run
// failed to apply the configuration).
func (s *Scheduler) shutdown() error {
	s.mu.Lock()
	s.state = stateStopped
	for _, st := range s.servers {
		st.cancel()
	}
	s.mu.Unlock()
	s.log.Info("job scheduler stopping", "timeout", s.opts.StopTimeout)

	// gocron waits StopTimeout for running jobs; leave it a margin to
	// report that itself.
	deadline := s.opts.StopTimeout + time.Second
	shCtx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var errs []error
	if err := s.gs.ShutdownWithContext(shCtx); err != nil {
		errs = append(errs, fmt.Errorf("jobs: shutdown: %w", err))
	}
	recvDone := make(chan struct{})
	go func() { s.recvWG.Wait(); close(recvDone) }()
	select {
	case <-recvDone:
	case <-shCtx.Done():
		errs = append(errs, errors.New("jobs: shutdown: receive-wal did not stop in time"))
	}
	s.log.Info("job scheduler stopped")
	return errors.Join(errs...)
}

// poll checks the archive directories every PollInterval until ctx ends and
// triggers archive-wal when one of them changed since the start of the last
// pass. fsnotify is not a dependency; two stats per server per second cost
// nothing.
func (s *Scheduler) poll(ctx context.Context) {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		type trigger struct {
			srv string
			job *scheduledJob
		}
		var todo []trigger
		s.mu.Lock()
		for name, st := range s.servers {
			if j := st.jobs[JobArchiveWAL]; j != nil && j.watch != nil {
				todo = append(todo, trigger{name, j})
			}
		}
		s.mu.Unlock()
		for _, tr := range todo {
			if !tr.job.watch.changed() || !s.run.idle(tr.srv, JobArchiveWAL) {
				// While a pass runs nothing is lost: the snapshot was
				// taken at its start, so a change made during the pass
				// triggers the next one.
				continue
			}
			if err := tr.job.job.RunNow(); err != nil {
				s.log.Debug("could not trigger archive-wal", "server", tr.srv, "error", err.Error())
			}
		}
	}
}

// Reload applies a new configuration (SIGHUP): jobs of added servers start,
// those of removed servers stop (their running work is cancelled), jobs
// whose schedule changed are re-created, and everything else keeps running
// untouched, including runs in progress. receive-wal is started or stopped
// per streaming_archiver, and restarted when its connection settings
// changed. On a validation error nothing changes.
func (s *Scheduler) Reload(cfg *config.Config) error {
	if cfg == nil {
		return errors.New("jobs: Reload: nil configuration")
	}
	plans, err := plan(cfg, s.opts)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStopped:
		return fmt.Errorf("jobs: Reload: %w", ErrStopped)
	case stateNew:
		s.cfg = cfg
		return nil
	}
	s.cfg = cfg
	err = s.apply(plans)
	s.log.Info("job scheduler reloaded", "servers", len(s.servers))
	return err
}

// apply brings the running jobs in line with plans; s.mu is held.
func (s *Scheduler) apply(plans map[string]serverPlan) error {
	for name, st := range s.servers {
		if _, ok := plans[name]; !ok {
			s.removeServer(st)
		}
	}
	names := make([]string, 0, len(plans))
	for n := range plans {
		names = append(names, n)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		p := plans[name]
		st := s.servers[name]
		if st == nil {
			ctx, cancel := context.WithCancel(s.rootCtx)
			st = &serverState{name: name, ctx: ctx, cancel: cancel, jobs: map[JobKind]*scheduledJob{}}
			s.servers[name] = st
		}
		for _, kind := range Kinds() {
			old := st.jobs[kind]
			spec, want := p.jobs[kind]
			if old != nil && (!want || old.spec != spec) {
				// Removing the gocron job does not touch a run in
				// progress: tasks use the server's context, not the
				// gocron job's, and the in-process guard keeps the
				// replacement from overlapping it.
				if err := s.gs.RemoveJob(old.job.ID()); err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
					errs = append(errs, fmt.Errorf("server %q: removing %s job: %w", name, kind, err))
				}
				delete(st.jobs, kind)
				s.log.Info("job removed", "server", name, "job", string(kind))
			}
			if want && st.jobs[kind] == nil {
				j, err := s.addJob(st, kind, spec)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				st.jobs[kind] = j
				s.log.Info("job scheduled", "server", name, "job", string(kind), "every", spec.every, "cron", spec.cron)
			}
		}
		switch {
		case p.receive && (st.recv == nil || st.recv.key != p.recvKey):
			var after <-chan struct{}
			if st.recv != nil {
				st.recv.requestStop()
				after = st.recv.done
			}
			r := newReceiver(name, p.recvKey)
			st.recv = r
			s.recvWG.Add(1)
			go func(ctx context.Context) {
				defer s.recvWG.Done()
				r.supervise(ctx, s.run, s.opts.ReceiveWALBackoff, s.opts.StopTimeout, after)
			}(st.ctx)
		case !p.receive && st.recv != nil:
			st.recv.requestStop()
			st.recv = nil
		}
	}
	return errors.Join(errs...)
}

func (s *Scheduler) removeServer(st *serverState) {
	st.cancel() // stops its receive-wal and cancels its running jobs
	for kind, j := range st.jobs {
		if err := s.gs.RemoveJob(j.job.ID()); err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
			s.log.Warn("removing job", "server", st.name, "job", string(kind), "error", err.Error())
		}
	}
	delete(s.servers, st.name)
	if f, ok := s.run.obs.(Forgetter); ok {
		f.Forget(st.name)
	}
	s.log.Info("server removed from the job scheduler", "server", st.name)
}

// addJob creates one gocron job with the standard options: singleton
// (reschedule: a long run skips ticks instead of queueing them), the
// server's context, name <job>/<server>, tags server:<n> and job:<j>, and a
// panic listener as a second line behind the runner's own recover.
func (s *Scheduler) addJob(st *serverState, kind JobKind, spec jobSpec) (*scheduledJob, error) {
	sj := &scheduledJob{spec: spec}
	var def gocron.JobDefinition
	opts := []gocron.JobOption{
		gocron.WithName(string(kind) + "/" + st.name),
		gocron.WithTags("server:"+st.name, "job:"+string(kind)),
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithContext(st.ctx),
		gocron.WithEventListeners(gocron.AfterJobRunsWithPanic(func(_ uuid.UUID, name string, v any) {
			s.log.Error("job panicked outside the runner", "job", name, "panic", fmt.Sprint(v))
		})),
	}
	if spec.cron != "" {
		def = gocron.CronJob(spec.cron, true)
	} else {
		def = gocron.DurationJob(spec.every)
		opts = append(opts, gocron.WithIntervalFromCompletion())
		if kind != JobBackup {
			opts = append(opts, gocron.WithStartAt(gocron.WithStartImmediately()))
		}
	}
	var pre func()
	if kind == JobArchiveWAL {
		sj.watch = newWatcher(spec.dirs)
		pre = sj.watch.snapshot
	}
	ctx, name := st.ctx, st.name
	// The task takes no context parameter on purpose: gocron would then
	// pass the job's own context, which it cancels when the job is removed
	// or re-created by a reload; a retimed backup schedule must not kill
	// the backup in progress.
	task := gocron.NewTask(func() {
		_ = s.run.run(ctx, name, kind, pre) // logged and observed by run
	})
	j, err := s.gs.NewJob(def, task, opts...)
	if err != nil {
		return nil, fmt.Errorf("server %q: scheduling %s: %w", name, kind, err)
	}
	sj.job = j
	return sj, nil
}

// RunOnce runs one job now for srv, through the same path as scheduled
// runs: in-process exclusion (ErrRunning), the task's own Barman lock
// (busy: an error matching lock.ErrBusy), logging, the Observer, and panic
// recovery (*PanicError). JobReceiveWAL runs the receiver in the
// foreground until ctx ends. It works whether or not Run is running.
func (s *Scheduler) RunOnce(ctx context.Context, job JobKind, srv string) error {
	if !job.Valid() {
		return fmt.Errorf("jobs: %w %q", ErrUnknownJob, job)
	}
	s.mu.Lock()
	cfg := s.cfg
	var pre func()
	if st := s.servers[srv]; st != nil && job == JobArchiveWAL {
		if j := st.jobs[JobArchiveWAL]; j != nil && j.watch != nil {
			pre = j.watch.snapshot
		}
	}
	s.mu.Unlock()
	if _, err := cfg.Server(srv); err != nil {
		return err
	}
	if job == JobReceiveWAL {
		return s.run.foregroundReceiver(ctx, srv)
	}
	return s.run.run(ctx, srv, job, pre)
}

// ReceiverState returns the State of srv's running receive-wal, or false
// when none is running.
func (s *Scheduler) ReceiverState(srv string) (any, bool) {
	s.mu.Lock()
	st := s.servers[srv]
	var r *receiver
	if st != nil {
		r = st.recv
	}
	s.mu.Unlock()
	if r == nil {
		return nil, false
	}
	h := r.handle()
	if h == nil {
		return nil, false
	}
	return h.State(), true
}

// Scheduled lists the scheduled jobs as "<job>/<server>", sorted (for
// status output and tests).
func (s *Scheduler) Scheduled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, st := range s.servers {
		for kind := range st.jobs {
			out = append(out, string(kind)+"/"+name)
		}
		if st.recv != nil {
			out = append(out, string(JobReceiveWAL)+"/"+name)
		}
	}
	slices.Sort(out)
	return out
}
