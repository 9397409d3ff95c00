package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/lock"
)

// Cron does one pass of the daemon's work, for users who keep Barman's
// every-minute crontab (`cellar cron`). Per active server, in name order,
// under `.<srv>-cron.lock` (held: the server is skipped with a log line, as
// a previous cron is still busy with it):
//   - a passive server gets a passive sync and nothing else;
//   - otherwise archive-wal (when archiver or streaming_archiver is on),
//     finishing interrupted deletions and check-backup of the
//     WAITING_FOR_WALS backups, then retention (when a
//     retention_policy is set). Each task takes its own Barman lock; a busy
//     one is skipped, not failed.
//
// Unlike Barman, cron does not spawn a detached receive-wal: a one-shot
// process cannot supervise a stream, and a detached child outliving cron
// would be the unsupervised process the daemon exists to avoid. For a
// server with streaming_archiver on, Cron only logs that it is not running
// and that `cellar daemon` (or `cellar receive-wal` under a service manager)
// is required. Scheduled backups (backup_schedule) are the daemon's too.
//
// Cron does not delete stale lock files (Barman's lock_directory_cleanup):
// unlinking a lock another process has just opened would let two holders
// coexist.
//
// It returns every task failure joined; skips are not errors.
func Cron(ctx context.Context, cfg *config.Config, tasks Tasks, logger *slog.Logger) error {
	if cfg == nil || tasks == nil {
		return errors.New("jobs: Cron: nil configuration or tasks")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := newRunner(tasks, nil, logger)
	lockDir := cfg.Global.LockDirectory()
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return fmt.Errorf("cron: lock directory %s: %w", lockDir, err)
	}
	var errs []error
	for _, name := range cfg.ServerNames() {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("cron: %w", ctx.Err()))
			break
		}
		sc := cfg.Servers[name]
		if sc == nil || !sc.Active {
			logger.Debug("cron: server inactive, skipped", "server", name)
			continue
		}
		if err := cronServer(ctx, r, filepath.Join(lockDir, lock.FileName(name, "cron")), sc, logger.With("server", name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func cronServer(ctx context.Context, r *runner, lockPath string, sc *config.Server, log *slog.Logger) error {
	l, err := lock.TryLock(lockPath)
	if err != nil {
		if errors.Is(err, lock.ErrBusy) {
			log.Info("cron: another cron is working on this server, skipped", "lock", lockPath, "reason", err.Error())
			return nil
		}
		return fmt.Errorf("cron: server %q: %w", sc.Name, err)
	}
	defer func() {
		if err := l.Release(); err != nil {
			log.Warn("cron: releasing lock", "error", err.Error())
		}
	}()
	var kinds []JobKind
	if sc.IsPassive() {
		kinds = []JobKind{JobPassiveSync}
	} else {
		if sc.Archiver || sc.StreamingArchiver {
			kinds = append(kinds, JobArchiveWAL)
		}
		kinds = append(kinds, JobCheckBackup)
		if sc.RetentionPolicy.IsSet() {
			kinds = append(kinds, JobRetention)
		}
		if sc.StreamingArchiver {
			log.Warn("cron: streaming_archiver is on but cron does not start receive-wal; run `cellar daemon` (or `cellar receive-wal` under a service manager) to stream WAL")
		}
	}
	var errs []error
	for _, k := range kinds {
		if err := r.run(ctx, sc.Name, k, nil); err != nil && !isSkip(err) && !errors.Is(err, ErrRunning) {
			errs = append(errs, fmt.Errorf("cron: server %q: %s: %w", sc.Name, k, err))
		}
	}
	return errors.Join(errs...)
}
