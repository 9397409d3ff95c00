package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/cellar-backup/cellar/backup"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/retention"
	"github.com/cellar-backup/cellar/wal"
)

// BackupBusyError refuses to delete a backup whose lock another process
// holds. It matches lock.ErrBusy.
type BackupBusyError struct {
	Server, ID string
	// PID is one holder (0 when unknown).
	PID int
	// Restoring is true when the holders hold the lock shared, as
	// restores (recover) do.
	Restoring bool
	Err       error
}

func (e *BackupBusyError) Error() string {
	if e.Restoring {
		return fmt.Sprintf("server %s: backup %s is being restored by PID %d", e.Server, e.ID, e.PID)
	}
	return fmt.Sprintf("server %s: backup %s is in use by PID %d (another delete, retention or check-backup)", e.Server, e.ID, e.PID)
}

func (e *BackupBusyError) Unwrap() error { return e.Err }

// lockBackup takes backup id's lock exclusively, without waiting. Restores
// hold it shared, so a busy lock that can be taken shared means restores
// hold it: the error says so and names one of them.
func (s *Server) lockBackup(id string) (*lock.Lock, error) {
	path := s.layout.BackupLockPath(id)
	l, err := lock.TryLock(path)
	if err == nil {
		return l, nil
	}
	var be *lock.BusyError
	if !errors.As(err, &be) {
		return nil, fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	busy := &BackupBusyError{Server: s.name, ID: id, PID: be.PID, Err: err}
	if sl, serr := lock.TryLockShared(path); serr == nil {
		_ = sl.Release()
		busy.Restoring = true
		busy.PID = sharedHolder(path, be.PID)
	}
	return nil, busy
}

// sharedHolder names a process other than this one holding path, else
// fallback.
func sharedHolder(path string, fallback int) int {
	pids, _ := lock.Holders(path)
	for _, p := range pids {
		if p != os.Getpid() {
			return p
		}
	}
	return fallback
}

// deleteBackup removes a backup and the WAL only it needed (Barman's
// perform_delete_backup). The delete_this marker goes first so that an
// interrupted delete shows the backup as DELETING and is finished by the
// next cron, daemon or retention pass; the backup.info goes late so the
// catalog never forgets a backup whose files are still there.
func (s *Server) deleteBackup(ctx context.Context, id string, out io.Writer) error {
	if err := catalog.ParseBackupID(id); err != nil {
		return fmt.Errorf("server %s: %w", s.name, err)
	}
	bl, err := s.lockBackup(id)
	if err != nil {
		return err
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
	fmt.Fprintf(orDiscard(out), "Deleting backup %s for server %s\n", id, s.name)
	if err := s.cat.MarkDeleteThis(id); err != nil {
		return fmt.Errorf("server %s: backup %s: mark for deletion: %w", s.name, id, err)
	}
	if err := s.removeBackupData(id); err != nil {
		return err
	}
	removed, err := s.pruneWAL(ctx, id)
	if err != nil {
		return err
	}
	if removed > 0 {
		fmt.Fprintf(orDiscard(out), "Deleted %d WAL files for server %s\n", removed, s.name)
	}
	if err := s.removeBackupRemains(id); err != nil {
		return err
	}
	// The child is gone: its parent stops listing it (a crash before
	// this is repaired by the next check-backup pass).
	if b.ParentBackupID != "" {
		if err := backup.UnlinkChild(ctx, s.layout, b.ParentBackupID, id); err != nil {
			return err
		}
	}
	fmt.Fprintf(orDiscard(out), "Done deleting backup %s for server %s (end time %s)\n", id, s.name, b.EndTime.Format("2006-01-02 15:04:05"))
	return nil
}

// removeBackupData removes base/<id>'s content except backup.info.
func (s *Server) removeBackupData(id string) error {
	dir := s.layout.BackupDirPath(id)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	for _, e := range ents {
		if e.Name() == "backup.info" || e.Name() == "annotations" {
			continue
		}
		if err := s.ops.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("server %s: backup %s: remove %s: %w", s.name, id, e.Name(), err)
		}
	}
	return nil
}

// removeBackupRemains is the end of a delete, once data and WAL are gone:
// the keep annotation, backup.info, base/<id> and last the marker, each
// removal made durable before the next so that a crash never leaves a
// marker-less half.
func (s *Server) removeBackupRemains(id string) error {
	if err := s.cat.ReleaseKeep(id); err != nil {
		return fmt.Errorf("server %s: backup %s: release keep: %w", s.name, id, err)
	}
	for _, p := range []string{s.layout.MetaBackupInfoPath(id), s.layout.LegacyBackupInfoPath(id)} {
		if err := s.ops.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
		}
	}
	if err := s.ops.SyncDir(s.layout.MetaDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	if err := s.clearLegacyMarkerAndDir(id); err != nil {
		return err
	}
	if err := s.cat.ClearDeleteThis(id); err != nil {
		return fmt.Errorf("server %s: backup %s: clear delete_this: %w", s.name, id, err)
	}
	return nil
}

// clearLegacyMarkerAndDir removes base/<id> (with a legacy
// annotations/delete_this inside, if any) durably, after making sure the
// meta/ marker exists, so that the backup stays marked until it is gone.
func (s *Server) clearLegacyMarkerAndDir(id string) error {
	dir := s.layout.BackupDirPath(id)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	metaMarker := filepath.Join(s.layout.MetaDir, id+"-"+catalog.AnnotationDeleteThis)
	if _, err := os.Stat(metaMarker); err != nil {
		if err := s.cat.MarkDeleteThis(id); err != nil {
			return fmt.Errorf("server %s: backup %s: mark for deletion: %w", s.name, id, err)
		}
	}
	if err := s.ops.RemoveAll(dir); err != nil {
		return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	if err := s.ops.SyncDir(s.layout.BaseDir); err != nil {
		return fmt.Errorf("server %s: backup %s: %w", s.name, id, err)
	}
	return nil
}

// FinishDeletions completes every delete that was interrupted (a
// delete_this marker is present), as the daemon and cron do on every pass,
// then reconciles wals/ with xlog.db. A backup whose lock is held is
// skipped and reported. It returns the ids it finished.
func (s *Server) FinishDeletions(ctx context.Context, out io.Writer) ([]string, error) {
	ids, err := s.cat.PendingDeletions()
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, id := range ids {
		if err := s.finishDeletion(ctx, id, out); err != nil {
			if !s.skipBusy(err, out) {
				errs = append(errs, err)
			}
			continue
		}
		s.log.Info("finished an interrupted deletion", "backup_id", id)
		done = append(done, id)
	}
	if len(ids) == 0 || len(errs) > 0 {
		// Only an interrupted delete leaves wals/ and xlog.db apart
		// (its marker stays until its prune is over); retention
		// reconciles on every pass anyway.
		return done, errors.Join(errs...)
	}
	_, _, err = s.ReconcileWAL(ctx)
	return done, err
}

func (s *Server) finishDeletion(ctx context.Context, id string, out io.Writer) error {
	fmt.Fprintf(orDiscard(out), "Finishing the interrupted deletion of backup %s for server %s\n", id, s.name)
	if _, err := os.Stat(s.layout.BackupInfoPath(id)); err == nil {
		return s.deleteBackup(ctx, id, out)
	}
	// Only the remains of a delete past its backup.info removal are
	// left: data and WAL were already handled.
	bl, err := s.lockBackup(id)
	if err != nil {
		return err
	}
	defer bl.Release()
	if err := s.removeBackupData(id); err != nil {
		return err
	}
	return s.removeBackupRemains(id)
}

// pruneWAL removes archived WAL that no backup other than deleted needs.
// xlog.db is rewritten first, then files are removed: a crash in between
// leaves unlisted files, never listed-but-missing ones (ReconcileWAL
// removes them later).
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
	var post func(name string, err error)
	if !hs.Empty() {
		post = func(name string, err error) {
			e := walEnv(name)
			if err != nil {
				e["BARMAN_ERROR"] = err.Error()
			}
			hs.RunPost(ctx, e)
		}
	}
	if err := s.removeWALFiles(prune, post); err != nil {
		return 0, err
	}
	return len(prune), abort
}

// removeWALFiles removes archived WAL files by name, then their emptied
// hash directories, and fsyncs what changed. post, when set, runs after
// each file (with the removal error, if any).
func (s *Server) removeWALFiles(names []string, post func(string, error)) error {
	dirs := map[string]bool{}
	for _, n := range names {
		wn, err := wal.ParseName(n)
		if err != nil {
			continue
		}
		p := s.layout.WALPath(wn)
		if err := s.ops.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("server %s: remove WAL %s: %w", s.name, n, err)
			if post != nil {
				post(n, err)
			}
			return err
		}
		dirs[filepath.Dir(p)] = true
		if post != nil {
			post(n, nil)
		}
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if d == s.layout.WalsDir {
			continue
		}
		if err := s.ops.Remove(d); err == nil {
			continue // the hash directory was empty and is gone
		}
		if err := s.ops.SyncDir(d); err != nil {
			return fmt.Errorf("server %s: %w", s.name, err)
		}
	}
	if err := s.ops.SyncDir(s.layout.WalsDir); err != nil {
		return fmt.Errorf("server %s: %w", s.name, err)
	}
	return nil
}

// ReconcileWAL brings wals/ and xlog.db back into agreement after an
// interrupted prune (xlog.db rewritten, files not yet removed): files that
// xlog.db does not list are removed when no backup needs them, listed
// again otherwise. It is idempotent. It runs under the archive-wal and
// sync-wal locks, so that it never sees a file an archiver has stored but
// not listed yet; when either is busy it does nothing this time.
func (s *Server) ReconcileWAL(ctx context.Context) (removed, reindexed int, err error) {
	for _, task := range []string{"archive-wal", "sync-wal"} {
		l, err := lock.TryLock(s.layout.LockPath(task))
		if errors.Is(err, lock.ErrBusy) {
			s.log.Debug("reconcile WAL: lock busy, next time", "lock", task)
			return 0, 0, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("server %s: reconcile WAL: %w", s.name, err)
		}
		defer l.Release()
	}
	unlisted, err := s.unlistedWAL(ctx)
	if err != nil || len(unlisted) == 0 {
		return 0, 0, err
	}
	bs, err := s.retentionBackups()
	if err != nil {
		return 0, 0, err
	}
	names := make([]string, len(unlisted))
	for i, w := range unlisted {
		names[i] = w.Name
	}
	prune := retention.PrunableWAL(bs, names, s.SegmentSize())
	drop := make(map[string]bool, len(prune))
	for _, n := range prune {
		drop[n] = true
	}
	keep := slices.DeleteFunc(unlisted, func(w catalog.WALInfo) bool { return drop[w.Name] })
	if reindexed, err = s.xlog.Reindex(ctx, keep); err != nil {
		return 0, 0, fmt.Errorf("server %s: reconcile WAL: %w", s.name, err)
	}
	if err := s.removeWALFiles(prune, nil); err != nil {
		return 0, reindexed, err
	}
	if len(prune)+reindexed > 0 {
		s.log.Info("reconciled wals/ with xlog.db", "removed", len(prune), "reindexed", reindexed)
	}
	return len(prune), reindexed, nil
}

// unlistedWAL returns the files in wals/ that xlog.db does not list.
func (s *Server) unlistedWAL(ctx context.Context) ([]catalog.WALInfo, error) {
	paths, err := catalog.WALPathsInDir(ctx, s.layout.WalsDir)
	if err != nil || len(paths) == 0 {
		return nil, err
	}
	listed := map[string]bool{}
	if err := s.xlog.Scan(ctx, func(w catalog.WALInfo) error {
		listed[w.Name] = true
		return nil
	}); err != nil {
		return nil, err
	}
	var out []catalog.WALInfo
	for _, p := range paths {
		if listed[filepath.Base(p)] {
			continue
		}
		w, err := catalog.WALInfoFromFile(p)
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", s.name, err)
		}
		out = append(out, w)
	}
	return out, nil
}
