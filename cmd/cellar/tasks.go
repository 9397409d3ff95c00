package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cellar-backup/cellar/archive/stream"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/jobs"
	"github.com/cellar-backup/cellar/recovery"
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

// maxVerifyPerRun bounds how many never-verified backups one scheduled
// verification run reads on top of the newest one: verifying reads every
// byte of a backup, so a server with a long unverified history catches up
// over several runs instead of one very long one.
const maxVerifyPerRun = 3

func (t *serverTasks) VerifyBackups(ctx context.Context, name string) error {
	s, err := t.server(name)
	if err != nil {
		return err
	}
	done, err := s.AvailableBackups(catalog.StatusDone)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range verifyPlan(s.Catalog(), done, maxVerifyPerRun) {
		if err := t.verifyOne(ctx, s, b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// verifyPlan picks the newest backup of done (oldest first, as the catalog
// lists them) and then up to extra backups that have no verification
// record, newest first so that the oldest, least likely to be restored,
// come last.
func verifyPlan(cat *catalog.Catalog, done []*catalog.BackupInfo, extra int) []*catalog.BackupInfo {
	if len(done) == 0 {
		return nil
	}
	newest := done[len(done)-1]
	out := []*catalog.BackupInfo{newest}
	for i := len(done) - 2; i >= 0 && len(out) <= extra; i-- {
		if _, ok, err := cat.Verification(done[i].ID); err == nil && !ok {
			out = append(out, done[i])
		}
	}
	return out
}

// verifyOne verifies one backup. A backup being deleted is skipped (the
// deletion wins); a FAILED verdict is recorded and logged, and the
// verification metrics and alerts report it, so the job itself succeeded.
func (t *serverTasks) verifyOne(ctx context.Context, s *server.Server, b *catalog.BackupInfo) error {
	log := t.g.logger.With("server", s.Name(), "backup_id", b.ID)
	v, err := s.VerifyBackup(ctx, b)
	switch {
	case errors.Is(err, recovery.ErrBackupBusy):
		log.Info("verify-backup: backup is busy, skipped", "reason", err.Error())
		return nil
	case err != nil:
		return fmt.Errorf("server %s: verifying backup %s: %w", s.Name(), b.ID, err)
	case v.Result == catalog.VerifyFailed:
		log.Error("verify-backup: backup FAILED verification", "error", v.Error)
	case v.Result == catalog.VerifyUnverifiable:
		log.Warn("verify-backup: backup is UNVERIFIABLE", "reason", v.Error)
	default:
		log.Info("verify-backup: backup OK", "files", v.Files, "bytes", v.Bytes, "duration", v.Duration)
	}
	return nil
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
