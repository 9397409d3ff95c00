package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/retention"
	"github.com/cellar-backup/cellar/wal"
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

// retentionBackups turns the catalog into the retention package's input,
// including keep and delete_this annotations.
func (s *Server) retentionBackups() ([]retention.Backup, error) {
	infos, err := s.cat.Backups()
	if err != nil && len(infos) == 0 {
		return nil, err
	}
	out := make([]retention.Backup, 0, len(infos))
	for _, b := range infos {
		keep, kerr := s.cat.Keep(b.ID)
		if kerr != nil {
			return nil, kerr
		}
		pending, derr := s.cat.HasDeleteThis(b.ID)
		if derr != nil {
			return nil, derr
		}
		out = append(out, retention.Backup{
			ID: b.ID, Status: string(b.Status), EndTime: b.EndTime, BeginWAL: b.BeginWAL, EndWAL: b.EndWAL,
			Keep: keep, ParentID: b.ParentBackupID, ChildrenIDs: b.ChildrenBackupIDs, Type: b.BackupType(),
			DeletePending: pending,
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

// EnforceRetention deletes every OBSOLETE backup, oldest first, and prunes
// the WAL no remaining backup needs. With dryRun it only returns the plan.
// A backup whose lock is busy is skipped with a log line, as Barman does.
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
		if out != nil {
			fmt.Fprintf(out, "Enforcing retention policy: removing backup %s for server %s\n", id, s.name)
		}
		if err := s.deleteBackup(ctx, id, out); err != nil {
			if errors.Is(err, lock.ErrBusy) {
				s.log.Warn("retention: backup is locked, skipping", "backup_id", id, "err", err)
				continue
			}
			errs = append(errs, err)
			continue
		}
		done = append(done, id)
	}
	return done, decisions, errors.Join(errs...)
}

// DeleteBackup deletes one backup on user request (seed delete_backup):
// kept backups and the last backups needed by minimum_redundancy are
// refused.
func (s *Server) DeleteBackup(ctx context.Context, id string, out io.Writer) error {
	bs, err := s.retentionBackups()
	if err != nil {
		return err
	}
	if err := retention.CheckDelete(bs, id, s.cfg.MinimumRedundancy); err != nil {
		return fmt.Errorf("server %s: cannot delete backup %s: %w", s.name, id, err)
	}
	return s.deleteBackup(ctx, id, out)
}

// deleteBackup removes a backup and the WAL only it needed (seed
// perform_delete_backup). The delete_this marker goes first so that an
// interrupted delete is finished by the next retention run or delete; the
// backup.info goes last so the catalog never forgets a backup whose files
// are still there.
func (s *Server) deleteBackup(ctx context.Context, id string, out io.Writer) error {
	if err := catalog.ParseBackupID(id); err != nil {
		return fmt.Errorf("server %s: %w", s.name, err)
	}
	bl, err := lock.TryLock(s.layout.BackupLockPath(id))
	if err != nil {
		return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	defer bl.Release()
	b, err := s.cat.Get(id)
	if err != nil {
		return err
	}
	// The pre delete scripts run before the delete_this marker is
	// written, so that ABORT_STOP leaves the backup whole and unmarked
	// (a marker would make the next retention run resume the delete).
	hs := s.DeleteHooks()
	if hs.Empty() {
		return s.removeBackup(ctx, b, out)
	}
	env := s.backupHookEnv(b) // reads the catalog: only for hooks
	if err := hs.RunPre(ctx, env); err != nil {
		return fmt.Errorf("server %s: backup %s: pre delete hook: %w", s.name, id, err)
	}
	err = s.removeBackup(ctx, b, out)
	post := env.Merge(nil)
	if err != nil {
		post["BARMAN_ERROR"] = err.Error()
	}
	hs.RunPost(ctx, post)
	return err
}

// removeBackup is deleteBackup's work, between the delete hooks.
func (s *Server) removeBackup(ctx context.Context, b *catalog.BackupInfo, out io.Writer) error {
	id := b.ID
	if out != nil {
		fmt.Fprintf(out, "Deleting backup %s for server %s\n", id, s.name)
	}
	if err := s.cat.MarkDeleteThis(id); err != nil {
		return fmt.Errorf("server %s: backup %s: mark for deletion: %w", s.name, id, err)
	}
	// Tablespaces and data.
	dir := s.layout.BackupDirPath(id)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	for _, e := range ents {
		if e.Name() == "backup.info" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("server %s: backup %s: remove %s: %w", s.name, id, e.Name(), err)
		}
	}
	removed, err := s.pruneWAL(ctx, id)
	if err != nil {
		return err
	}
	if out != nil && removed > 0 {
		fmt.Fprintf(out, "Deleted %d WAL files for server %s\n", removed, s.name)
	}
	_ = s.cat.ReleaseKeep(id)
	for _, p := range []string{s.layout.MetaBackupInfoPath(id), s.layout.LegacyBackupInfoPath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	if err := s.cat.ClearDeleteThis(id); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_ = durable.SyncDir(s.layout.MetaDir)
	_ = durable.SyncDir(s.layout.BaseDir)
	if out != nil {
		fmt.Fprintf(out, "Done deleting backup %s for server %s (end time %s)\n", id, s.name, b.EndTime.Format("2006-01-02 15:04:05"))
	}
	return nil
}

// pruneWAL removes archived WAL that no backup other than deleted needs.
// xlog.db is rewritten first, then files are removed: a crash in between
// leaves unlisted files, never listed-but-missing ones.
func (s *Server) pruneWAL(ctx context.Context, deleted string) (int, error) {
	bs, err := s.retentionBackups()
	if err != nil {
		return 0, err
	}
	var remaining []retention.Backup
	for _, b := range bs {
		if b.ID != deleted {
			remaining = append(remaining, b)
		}
	}
	if _, err := os.Stat(s.layout.WalsDir); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	hs := s.WALDeleteHooks()
	var names []string
	var infos map[string]catalog.WALInfo // for the hooks' environment only
	if !hs.Empty() {
		infos = map[string]catalog.WALInfo{}
	}
	if err := s.xlog.Scan(ctx, func(w catalog.WALInfo) error {
		names = append(names, w.Name)
		if infos != nil {
			infos[w.Name] = w
		}
		return nil
	}); err != nil {
		return 0, err
	}
	prune := retention.PrunableWAL(remaining, names, s.SegmentSize())
	if len(prune) == 0 {
		return 0, nil
	}
	// wal_delete hooks: every pre script runs before xlog.db is
	// rewritten, so that ABORT_STOP on one WAL keeps it and every later
	// one both listed and on disk (the next deletion retries them).
	walEnv := func(name string) hooks.Env {
		w := infos[name]
		p := name
		if wn, err := wal.ParseName(name); err == nil {
			p = s.layout.WALPath(wn)
		}
		return hooks.WALEnv(name, p, w.Size, w.ModTime(), w.Compression, "")
	}
	var abort error
	if !hs.Empty() {
		for i, n := range prune {
			if err := hs.RunPre(ctx, walEnv(n)); err != nil {
				abort = fmt.Errorf("server %s: WAL %s: pre wal_delete hook: %w", s.name, n, err)
				prune = prune[:i]
				break
			}
		}
		if len(prune) == 0 {
			return 0, abort
		}
	}
	drop := make(map[string]bool, len(prune))
	for _, n := range prune {
		drop[n] = true
	}
	if _, err := s.xlog.Rewrite(ctx, func(w catalog.WALInfo) bool { return !drop[w.Name] }); err != nil {
		return 0, fmt.Errorf("server %s: rewrite xlog.db: %w", s.name, err)
	}
	dirs := map[string]bool{}
	for _, n := range prune {
		wn, err := wal.ParseName(n)
		if err != nil {
			continue
		}
		p := s.layout.WALPath(wn)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("server %s: remove WAL %s: %w", s.name, n, err)
			if !hs.Empty() {
				e := walEnv(n)
				e["BARMAN_ERROR"] = err.Error()
				hs.RunPost(ctx, e)
			}
			return 0, err
		}
		dirs[filepath.Dir(p)] = true
		if !hs.Empty() {
			hs.RunPost(ctx, walEnv(n))
		}
	}
	for d := range dirs {
		if d != s.layout.WalsDir {
			_ = os.Remove(d) // only succeeds when the hash directory is empty
		}
		_ = durable.SyncDir(d)
	}
	_ = durable.SyncDir(s.layout.WalsDir)
	return len(prune), abort
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
