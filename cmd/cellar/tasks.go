package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cellar-backup/cellar/archive/stream"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/jobs"
	"github.com/cellar-backup/cellar/server"
)

// serverTasks implements jobs.Tasks over *server.Server, each task looking
// its server up by name at run time. A reload builds a new serverTasks
// (newTasks) rather than changing this one.
type serverTasks struct {
	g   *globalOptions
	cfg *config.Config
}

// newTasks builds the daemon's and cron's work over the loaded
// configuration.
func newTasks(g *globalOptions) (jobs.Tasks, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return &serverTasks{g: g, cfg: cfg}, nil
}

func (t *serverTasks) server(name string) (*server.Server, error) {
	return server.New(t.cfg, name, t.g.logger.With("server", name))
}

func (t *serverTasks) ArchiveWAL(ctx context.Context, name string) error {
	s, err := t.server(name)
	if err != nil {
		return err
	}
	_, err = s.ArchiveWAL(ctx, io.Discard)
	return err
}

func (t *serverTasks) Backup(ctx context.Context, name string) error {
	s, err := t.server(name)
	if err != nil {
		return err
	}
	info, err := s.Backup(ctx, "", nil)
	if err != nil {
		return err
	}
	t.g.logger.Info("backup finished", "server", name, "backup_id", info.ID, "status", string(info.Status))
	return nil
}

func (t *serverTasks) CheckBackups(ctx context.Context, name string) error {
	s, err := t.server(name)
	if err != nil {
		return err
	}
	// Archive first so that WAL already delivered counts.
	if _, err := s.ArchiveWAL(ctx, io.Discard); err != nil && !isBusy(err) {
		t.g.logger.Warn("archive-wal before check-backup failed", "server", name, "err", err)
	}
	// Deletions interrupted by a crash or kill are finished here, on
	// every pass, so that no half-deleted backup waits for a user.
	finished, ferr := s.FinishDeletions(ctx, nil)
	for _, id := range finished {
		t.g.logger.Info("finished an interrupted backup deletion", "server", name, "backup_id", id)
	}
	infos, err := s.CheckBackups(ctx)
	for _, b := range infos {
		t.g.logger.Debug("check-backup", "server", name, "backup_id", b.ID, "status", string(b.Status))
	}
	return errors.Join(ferr, err)
}

func (t *serverTasks) EnforceRetention(ctx context.Context, name string) error {
	s, err := t.server(name)
	if err != nil {
		return err
	}
	deleted, _, err := s.EnforceRetention(ctx, false, nil)
	if errors.Is(err, server.ErrNoRetentionPolicy) {
		return jobs.ErrNotApplicable
	}
	for _, id := range deleted {
		t.g.logger.Info("retention: deleted obsolete backup", "server", name, "backup_id", id)
	}
	return err
}

func (t *serverTasks) SyncPassive(ctx context.Context, name string) error {
	s, err := t.server(name)
	if err != nil {
		return err
	}
	if !s.Config().IsPassive() {
		return jobs.ErrNotApplicable
	}
	return syncPassive(ctx, t.g, s)
}

func (t *serverTasks) StartReceiveWAL(ctx context.Context, name string) (jobs.ReceiverHandle, error) {
	s, err := t.server(name)
	if err != nil {
		return nil, err
	}
	so, err := s.StreamOptions()
	if err != nil {
		return nil, err
	}
	sup, err := stream.NewSupervisor(so, stream.Backoff{})
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	sup.Start(ctx)
	h := &receiverHandle{sup: sup, done: make(chan struct{})}
	go func() {
		sup.Wait()
		close(h.done)
	}()
	return h, nil
}

type receiverHandle struct {
	sup  *stream.Supervisor
	done chan struct{}
}

func (h *receiverHandle) Stop()                 { h.sup.Stop() }
func (h *receiverHandle) Done() <-chan struct{} { return h.done }
func (h *receiverHandle) State() any            { return h.sup.State() }

func isBusy(err error) bool { return errors.Is(err, lock.ErrBusy) }
