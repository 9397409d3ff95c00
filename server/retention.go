package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/retention"
)

// ErrNoRetentionPolicy means retention_policy is not set for the server.
var ErrNoRetentionPolicy = errors.New("no retention policy configured")

// RetentionPolicy returns the server's parsed retention policy.
func (s *Server) RetentionPolicy() (retention.Policy, error) {
	if !s.cfg.RetentionPolicy.IsSet() {
		return retention.Policy{MinimumRedundancy: s.cfg.MinimumRedundancy}, ErrNoRetentionPolicy
	}
	p, err := retention.ParsePolicy(s.cfg.RetentionPolicy.String(), s.cfg.MinimumRedundancy)
	if err != nil {
		return p, fmt.Errorf("server %s: retention_policy: %w", s.name, err)
	}
	return p, nil
}

// ErrUnreadableBackup is matched by the error of every retention, delete
// and WAL pruning refused because a backup.info could not be read: the
// backup's status and the WAL it needs are unknown, so nothing may be
// deleted on the strength of a catalog that is incomplete.
var ErrUnreadableBackup = errors.New("backup.info unreadable: retention and WAL pruning stopped for this server")

// retentionBackups turns the catalog into the retention package's input,
// including keep and delete_this annotations. Any unreadable backup.info
// fails it, naming the file: a backup that cannot be read might need
// every WAL and might be the one minimum_redundancy counts on.
func (s *Server) retentionBackups() ([]retention.Backup, error) {
	infos, err := s.cat.Backups()
	if err != nil {
		return nil, fmt.Errorf("server %s: %w: %w", s.name, ErrUnreadableBackup, err)
	}
	out := make([]retention.Backup, 0, len(infos))
	for _, b := range infos {
		keep, kerr := s.cat.Keep(b.ID)
		if kerr != nil {
			return nil, kerr
		}
		out = append(out, retention.Backup{
			ID: b.ID, Status: string(b.StoredStatus()), EndTime: b.EndTime, BeginWAL: b.BeginWAL, EndWAL: b.EndWAL,
			Keep: keep, ParentID: b.ParentBackupID, ChildrenIDs: b.ChildrenBackupIDs, Type: b.BackupType(),
			DeletePending: b.Deleting(),
		})
	}
	return out, nil
}

// RetentionStatus labels every backup per the retention policy (seed
// status_retention_policies); the decisions say why.
func (s *Server) RetentionStatus() (retention.Policy, []retention.Decision, error) {
	p, err := s.RetentionPolicy()
	if err != nil {
		return p, nil, err
	}
	bs, err := s.retentionBackups()
	if err != nil {
		return p, nil, err
	}
	return p, retention.Evaluate(p, bs, s.now()), nil
}

// EnforceRetention deletes every OBSOLETE backup, oldest first (interrupted
// deletions included), prunes the WAL no remaining backup needs and
// reconciles wals/ with xlog.db. With dryRun it only returns the plan. A
// backup whose lock is busy (being restored, checked or deleted) is
// skipped and reported on out, as Barman does; the pass goes on. Any
// unreadable backup.info stops it before anything is deleted.
func (s *Server) EnforceRetention(ctx context.Context, dryRun bool, out io.Writer) ([]string, []retention.Decision, error) {
	p, err := s.RetentionPolicy()
	if err != nil {
		return nil, nil, err
	}
	bs, err := s.retentionBackups()
	if err != nil {
		return nil, nil, err
	}
	dels, decisions := retention.Plan(p, bs, s.now())
	if dryRun {
		return dels, decisions, nil
	}
	var done []string
	var errs []error
	for _, id := range dels {
		fmt.Fprintf(orDiscard(out), "Enforcing retention policy: removing backup %s for server %s\n", id, s.name)
		if err := s.deleteBackup(ctx, id, out); err != nil {
			if s.skipBusy(err, out) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		done = append(done, id)
	}
	if len(errs) == 0 {
		if _, _, err := s.ReconcileWAL(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return done, decisions, errors.Join(errs...)
}

// skipBusy reports (and logs) a backup skipped because its lock is held;
// false for any other error.
func (s *Server) skipBusy(err error, out io.Writer) bool {
	if !errors.Is(err, lock.ErrBusy) {
		return false
	}
	s.log.Warn("backup is locked, skipping", "err", err)
	fmt.Fprintf(orDiscard(out), "Skipping: %v\n", err)
	return true
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// DeleteBackup deletes one backup on user request (seed delete_backup):
// kept backups and the last backups needed by minimum_redundancy are
// refused, and so is everything while a backup.info is unreadable.
// A backup with incremental children is refused, naming them
// (DeleteBackupTree deletes them too).
func (s *Server) DeleteBackup(ctx context.Context, id string, out io.Writer) error {
	return s.DeleteBackupTree(ctx, id, false, out)
}

// DeleteBackupTree is DeleteBackup that, with withChildren, also deletes
// every incremental backup taken from id, directly or not, deepest first
// (each one complete before its parent's delete starts).
func (s *Server) DeleteBackupTree(ctx context.Context, id string, withChildren bool, out io.Writer) error {
	bs, err := s.retentionBackups()
	if err != nil {
		return err
	}
	ids, err := retention.DeleteOrder(bs, id, s.cfg.MinimumRedundancy, withChildren)
	if err != nil {
		return fmt.Errorf("server %s: cannot delete backup %s: %w", s.name, id, err)
	}
	for _, d := range ids {
		if err := s.deleteBackup(ctx, d, out); err != nil {
			return err
		}
	}
	return nil
}

// Keep sets a keep annotation on a DONE backup: full keeps every later WAL,
// standalone only the WAL the backup needs to be consistent.
func (s *Server) Keep(id, target string) error {
	if target != catalog.KeepFull && target != catalog.KeepStandalone {
		return fmt.Errorf("server %s: keep target %q: use full or standalone", s.name, target)
	}
	b, err := s.cat.Get(id)
	if err != nil {
		return err
	}
	if b.Status != catalog.StatusDone {
		return fmt.Errorf("server %s: cannot add keep to backup %s because it has status %s. Only backups with status DONE can be kept", s.name, id, b.Status)
	}
	if b.BackupType() == "incremental" {
		return fmt.Errorf("server %s: cannot add keep to incremental backup %s", s.name, id)
	}
	return s.cat.SetKeep(id, target)
}
