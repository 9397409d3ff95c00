package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/checktarget"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/exporter"
	"github.com/cellar-backup/cellar/jobs"
	"github.com/cellar-backup/cellar/server"
)

type daemonOptions struct {
	listen    []string
	webConfig string
	noWeb     bool
}

// newDaemonCommand runs every server's jobs (archive-wal, receive-wal,
// scheduled backups, check-backup, retention, passive sync) and the
// Prometheus exporter in one process.
func newDaemonCommand(g *globalOptions) *cobra.Command {
	var opts daemonOptions
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run archiving, streaming, scheduled backups, retention and the exporter for every active server",
		Long: "Runs in the foreground until SIGINT or SIGTERM, then stops running jobs gracefully.\n" +
			"SIGHUP re-reads the configuration: servers and schedules are added, removed or changed\n" +
			"without restarting the jobs that did not change. /metrics is served on\n" +
			"global.web.listen_address (127.0.0.1:9533) unless --no-web.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDaemon(cmd.Context(), g, opts, args)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&opts.listen, "web.listen-address", nil, "exporter address (default global.web.listen_address, 127.0.0.1:9533)")
	f.StringVar(&opts.webConfig, "web.config.file", "", "exporter-toolkit web configuration file (TLS, basic auth)")
	f.BoolVar(&opts.noWeb, "no-web", false, "do not serve /metrics")
	return c
}

func runDaemon(ctx context.Context, g *globalOptions, opts daemonOptions, _ []string) error {
	// main already cancels on SIGINT/SIGTERM; repeating it here keeps the
	// command correct when run() is called by tests or other callers.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		g.logger.Warn(w)
	}
	t, err := newTasks(g)
	if err != nil {
		return err
	}
	tasks := &reloadableTasks{}
	tasks.set(t)
	srvs, err := server.NewSet(cfg, g.logger)
	if err != nil {
		return err
	}
	targets := &targetSet{log: g.logger}
	targets.set(srvs)

	m, err := newMetrics(g, cfg, targets)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	jm, err := exporter.NewJobMetrics(m.reg)
	if err != nil {
		return fmt.Errorf("daemon: registering job metrics: %w", err)
	}

	sched, err := jobs.New(cfg, tasks, jm, g.logger, jobs.Options{})
	if err != nil {
		return withCode(exitUsage, err)
	}

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return sched.Run(ctx) })
	if !opts.noWeb {
		h, hopts, err := m.handler(g, cfg, opts.listen, opts.webConfig)
		if err != nil {
			return err
		}
		eg.Go(func() error { return exporter.Serve(ctx, h, hopts) })
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	eg.Go(func() error {
		cur := g
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
			}
			next, err := reloadDaemon(cur, tasks, targets, m.col, sched)
			if err != nil {
				// A bad file must not take the running daemon down: keep
				// the previous configuration and say why.
				g.logger.Error("configuration reload failed; keeping the running configuration", "error", oneLine(err))
				continue
			}
			cur = next
		}
	})
	g.logger.Info("daemon started", "servers", len(srvs))
	err = eg.Wait()
	g.logger.Info("daemon stopped")
	return err
}

// reloadDaemon re-reads the configuration for SIGHUP. It works on a copy of
// the global options so that tasks of the previous generation, still
// running, keep reading the configuration they were built with.
func reloadDaemon(cur *globalOptions, tasks *reloadableTasks, targets *targetSet, col *exporter.Collector, sched *jobs.Scheduler) (*globalOptions, error) {
	next := *cur
	next.cfg = nil
	cfg, err := next.loadConfig()
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		cur.logger.Warn(w)
	}
	t, err := newTasks(&next)
	if err != nil {
		return nil, err
	}
	srvs, err := server.NewSet(cfg, cur.logger)
	if err != nil {
		return nil, err
	}
	old := tasks.get()
	tasks.set(t)
	if err := sched.Reload(cfg); err != nil {
		tasks.set(old)
		return nil, err
	}
	for _, name := range removedServers(cur.cfg, cfg) {
		col.Forget(name)
	}
	targets.set(srvs)
	cur.logger.Info("configuration reloaded", "file", cfg.File, "servers", len(srvs))
	return &next, nil
}

func removedServers(old, cfg *config.Config) []string {
	if old == nil {
		return nil
	}
	var out []string
	for _, n := range old.ServerNames() {
		if _, ok := cfg.Servers[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// reloadableTasks lets SIGHUP swap the Tasks built over the new
// configuration while the scheduler keeps its reference.
type reloadableTasks struct {
	p atomic.Pointer[jobs.Tasks]
}

func (r *reloadableTasks) set(t jobs.Tasks) { r.p.Store(&t) }
func (r *reloadableTasks) get() jobs.Tasks  { return *r.p.Load() }

func (r *reloadableTasks) ArchiveWAL(ctx context.Context, srv string) error {
	return r.get().ArchiveWAL(ctx, srv)
}
func (r *reloadableTasks) Backup(ctx context.Context, srv string) error {
	return r.get().Backup(ctx, srv)
}
func (r *reloadableTasks) CheckBackups(ctx context.Context, srv string) error {
	return r.get().CheckBackups(ctx, srv)
}
func (r *reloadableTasks) EnforceRetention(ctx context.Context, srv string) error {
	return r.get().EnforceRetention(ctx, srv)
}
func (r *reloadableTasks) SyncPassive(ctx context.Context, srv string) error {
	return r.get().SyncPassive(ctx, srv)
}
func (r *reloadableTasks) VerifyBackups(ctx context.Context, srv string) error {
	return r.get().VerifyBackups(ctx, srv)
}
func (r *reloadableTasks) StartReceiveWAL(ctx context.Context, srv string) (jobs.ReceiverHandle, error) {
	return r.get().StartReceiveWAL(ctx, srv)
}

// targetSet is the exporter's server list, swapped on reload.
type targetSet struct {
	p   atomic.Pointer[[]checks.Target]
	log *slog.Logger
}

// set swaps in targets for srvs, their catalog caches primed from the
// state the previous targets saved (a reload does not start cold).
func (s *targetSet) set(srvs []*server.Server) {
	t := checktarget.All(srvs)
	loadProbeState(t, s.log)
	s.p.Store(&t)
}

func (s *targetSet) Targets() []checks.Target {
	if p := s.p.Load(); p != nil {
		return *p
	}
	return nil
}

var (
	_ jobs.Tasks       = (*reloadableTasks)(nil)
	_ exporter.Targets = (*targetSet)(nil)
	_ jobs.Observer    = (*exporter.JobMetrics)(nil)
	_ jobs.Forgetter   = (*exporter.JobMetrics)(nil)
)
