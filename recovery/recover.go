package recovery

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
)

// RecoverInfoFile is written into the restored PGDATA last; its presence
// marks a complete restore.
const RecoverInfoFile = ".cellar-recover.info"

// DefaultStagingDirName is the PITR WAL staging directory inside PGDATA.
const DefaultStagingDirName = "cellar_wal"

// excludedFiles are top-level PGDATA files never restored: they describe
// the source server's running state or an older recovery.
var excludedFiles = map[string]bool{
	"postmaster.pid":       true,
	"postmaster.opts":      true,
	"recovery.conf":        true,
	"recovery.signal":      true,
	"standby.signal":       true,
	"tablespace_map":       true,
	".barman-recover.info": true,
	RecoverInfoFile:        true,
}

// excludedContents are PGDATA directories restored empty.
var excludedContents = map[string]bool{
	"pg_wal": true, "pg_xlog": true, "pg_log": true, "log": true, "pg_tblspc": true,
}

// configFiles are intercepted while copying so that they can be edited
// before being written (which also works for a remote destination).
var configFiles = []string{"postgresql.conf", "postgresql.auto.conf"}

// source is one tree of the backup: PGDATA or a tablespace, plain or tar.
type source struct {
	oid      uint32 // 0 for PGDATA
	name     string // tablespace name
	location string // tablespace location recorded in the backup
	plainDir string
	tarPath  string
	dest     string
}

// keyPrefix is what the manifest puts before paths of this tree.
func (s source) keyPrefix() string {
	if s.oid == 0 {
		return ""
	}
	return "pg_tblspc/" + strconv.FormatUint(uint64(s.oid), 10) + "/"
}

type restorer struct {
	opts     Options
	log      *slog.Logger
	backup   *catalog.BackupInfo
	sink     sink
	manifest manifest
	check    *checker
	trees    []source
	dest     string
	warnings []string

	mu          sync.Mutex
	intercepted map[string][]byte
	files       atomic.Int64
	bytes       atomic.Int64
	unchanged   atomic.Int64
}

func (r *restorer) progress(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.log.Info(msg, "backup", r.backup.ID, "dest", r.dest)
	if r.opts.Progress != nil {
		fmt.Fprintln(r.opts.Progress, msg)
	}
}

// Recover restores opts.Backup into opts.Dest (see the package comment),
// between the pre and post recovery hook scripts.
func Recover(ctx context.Context, opts Options) (*Result, error) {
	if opts.Hooks.Empty() || opts.Backup == nil {
		return recoverBackup(ctx, opts)
	}
	env := recoveryHookEnv(opts)
	if err := opts.Hooks.RunPre(ctx, env); err != nil {
		return nil, fmt.Errorf("backup %s: pre recovery hook: %w", opts.Backup.ID, err)
	}
	res, err := recoverBackup(ctx, opts)
	post := env.Merge(nil)
	if err != nil {
		post["BARMAN_ERROR"] = err.Error()
	}
	opts.Hooks.RunPost(ctx, post)
	return res, err
}

// recoveryHookEnv is the recovery scripts' environment: the backup's
// variables plus the destination, the tablespace relocations and the
// remote command, and the other restore options as JSON (only the ones
// set; "" when none).
func recoveryHookEnv(opts Options) hooks.Env {
	b := opts.Backup
	be := hooks.BackupEnv{
		BackupDir:      opts.Layout.BackupDirPath(b.ID),
		BackupID:       b.ID,
		BackupInfoPath: opts.Layout.BackupInfoPath(b.ID),
		Status:         string(b.Status),
		Error:          b.Error,
	}
	if opts.Layout.MetaDir != "" {
		cat := catalog.Open(opts.Layout)
		if p, err := cat.Previous(b.ID); err == nil && p != nil {
			be.PreviousID = p.ID
		}
		if n, err := cat.Next(b.ID); err == nil && n != nil {
			be.NextID = n.ID
		}
	}
	env := be.Env()
	env["BARMAN_DESTINATION_DIRECTORY"] = opts.Dest
	env["BARMAN_TABLESPACES"] = ""
	if len(opts.Tablespaces) > 0 {
		if j, err := json.Marshal(opts.Tablespaces); err == nil { // map keys come out sorted
			env["BARMAN_TABLESPACES"] = string(j)
		}
	}
	env["BARMAN_REMOTE_COMMAND"] = opts.RemoteSSHCommand
	ro := map[string]any{}
	t := opts.Target
	if t.Time != nil {
		ro["target_time"] = t.Time.Format(time.RFC3339Nano)
	}
	if t.XID != "" {
		ro["target_xid"] = t.XID
	}
	if t.LSN != nil {
		ro["target_lsn"] = t.LSN.String()
	}
	if t.Name != "" {
		ro["target_name"] = t.Name
	}
	if t.Immediate {
		ro["target_immediate"] = true
	}
	if t.TLI != "" {
		ro["target_tli"] = t.TLI
	}
	if t.Exclusive {
		ro["exclusive"] = true
	}
	if t.Action != "" {
		ro["target_action"] = t.Action
	}
	if opts.StandbyMode {
		ro["standby_mode"] = true
	}
	if opts.GetWAL {
		ro["get_wal"] = true
	}
	if opts.DeltaRestore {
		ro["delta_restore"] = true
	}
	if opts.StagingWALDir != "" {
		ro["staging_wal_directory"] = opts.StagingWALDir
	}
	env["BARMAN_RECOVER_OPTIONS"] = ""
	if len(ro) > 0 {
		if j, err := json.Marshal(ro); err == nil {
			env["BARMAN_RECOVER_OPTIONS"] = string(j)
		}
	}
	return env
}

// recoverBackup is the restore itself.
func recoverBackup(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	b := opts.Backup
	if b == nil {
		return nil, fmt.Errorf("%w: no backup given", ErrInvalidOptions)
	}
	if b.Status != catalog.StatusDone && b.Status != catalog.StatusWaitingForWALs {
		msg := fmt.Sprintf("backup %s has status %s", b.ID, b.Status)
		if b.Error != "" {
			msg += " (" + b.Error + ")"
		}
		return nil, fmt.Errorf("%w: %s; only DONE or WAITING_FOR_WALS backups can be restored", ErrBackupNotRestorable, msg)
	}
	if err := opts.Target.Validate(b); err != nil {
		return nil, err
	}
	lk, err := lockBackup(opts.Layout, b.ID)
	if err != nil {
		return nil, err
	}
	defer lk.Release()
	if opts.Dest == "" || !filepath.IsAbs(opts.Dest) {
		return nil, fmt.Errorf("%w: destination %q must be an absolute path", ErrInvalidOptions, opts.Dest)
	}
	if opts.GetWAL && opts.RestoreCommand == "" {
		return nil, fmt.Errorf("%w: get-wal needs a restore command", ErrInvalidOptions)
	}
	if opts.DeltaRestore && opts.RemoteSSHCommand != "" {
		return nil, fmt.Errorf("%w: --delta-restore is not supported with --remote-ssh-command", ErrInvalidOptions)
	}
	for name := range opts.Tablespaces {
		if !slices.ContainsFunc(b.Tablespaces, func(t catalog.Tablespace) bool { return t.Name == name }) {
			return nil, fmt.Errorf("%w: backup %s has no tablespace %q", ErrInvalidOptions, b.ID, name)
		}
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 2
	}
	if opts.RecoveryConfFilename == "" {
		opts.RecoveryConfFilename = "postgresql.auto.conf"
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dest := filepath.Clean(opts.Dest)
	r := &restorer{opts: opts, log: logger, backup: b, dest: dest, intercepted: map[string][]byte{}}
	res := &Result{BackupID: b.ID, Dest: dest, PITR: opts.Target.IsPITR()}

	sources, err := r.sources()
	if err != nil {
		return nil, err
	}
	r.trees = sources
	if err := r.loadManifest(); err != nil {
		return nil, err
	}
	var ch *chain
	if b.ParentBackupID != "" {
		if opts.RemoteSSHCommand != "" {
			return nil, fmt.Errorf("%w: backup %s is incremental: restoring an incremental chain over ssh is not supported; restore locally and copy the directory", ErrInvalidOptions, b.ID)
		}
		if ch, err = r.openChain(); err != nil {
			return nil, err
		}
		defer ch.close()
		r.progress("backup %s is incremental: rebuilding it from a chain of %d backups", b.ID, len(ch.members))
	}
	roots := []string{dest}
	for _, s := range sources {
		if s.oid != 0 {
			roots = append(roots, s.dest)
		}
	}

	if opts.StagingWALDir != "" {
		if !filepath.IsAbs(opts.StagingWALDir) {
			return nil, fmt.Errorf("%w: staging WAL directory %q must be absolute", ErrInvalidOptions, opts.StagingWALDir)
		}
		if rel, err := filepath.Rel(dest, opts.StagingWALDir); err != nil || !filepath.IsLocal(rel) {
			roots = append(roots, filepath.Clean(opts.StagingWALDir))
		}
	}

	// WAL plan first: a missing WAL should fail before anything is copied.
	entries := opts.XLogEntries
	if entries == nil && !opts.GetWAL {
		if entries, err = ReadXLogDB(ctx, opts.Layout); err != nil {
			return nil, err
		}
	}
	var required []WALEntry
	tli, err := TargetTimeline(ctx, opts.Layout, b, opts.Target, entries)
	if err != nil {
		return nil, err
	}
	res.TargetTLI = tli
	if !opts.GetWAL {
		if required, err = RequiredWAL(ctx, opts.Layout, b, opts.Target, entries); err != nil {
			return nil, err
		}
	}

	if opts.RemoteSSHCommand != "" {
		if err := r.checkRemoteEmpty(ctx, roots); err != nil {
			return nil, err
		}
		ss, err := newSSHSink(ctx, opts.RemoteSSHCommand, roots)
		if err != nil {
			return nil, err
		}
		r.sink = ss
		defer func() {
			if err != nil {
				ss.abort()
			}
		}()
	} else {
		if err = r.prepareLocal(roots); err != nil {
			return nil, err
		}
	}
	r.progress("restoring backup %s into %s", b.ID, dest)
	if err = r.copyData(ctx, sources, ch); err != nil {
		return nil, err
	}
	if err = r.check.missing(r.restores); err != nil {
		return nil, err
	}
	if err = r.tablespaceLinks(sources); err != nil {
		return nil, err
	}

	// WAL.
	walDir := filepath.Join(dest, "pg_wal")
	pitr := opts.Target.IsPITR()
	staging := ""
	if !opts.GetWAL && pitr {
		staging = opts.StagingWALDir
		if staging == "" {
			staging = filepath.Join(dest, DefaultStagingDirName)
		}
		walDir = staging
	}
	if err = r.sink.dir(filepath.Join(dest, "pg_wal", "archive_status")); err != nil {
		return nil, err
	}
	if !opts.GetWAL {
		r.progress("copying %d WAL files to %s", len(required), walDir)
		if err = r.copyWAL(ctx, required, walDir, !pitr && !opts.StandbyMode); err != nil {
			return nil, err
		}
		res.WALFiles, res.WALDir = len(required), walDir
	}

	// Configuration and recovery settings.
	settings := recoverySettings{target: opts.Target}
	writeSettings := pitr || opts.GetWAL || opts.StandbyMode
	switch {
	case opts.GetWAL:
		settings.restoreCommand = opts.RestoreCommand
	case staging != "":
		settings.restoreCommand = "cp " + shellQuote(staging) + "/%f %p"
		if !opts.StandbyMode {
			settings.recoveryEndCommand = "rm -fr " + shellQuote(staging)
		}
	}
	switch opts.Target.TLI {
	case "":
		// WAL copied up front covers the backup's timeline only, so
		// PostgreSQL must not chase newer history files (its default is
		// latest); with get-wal its default is right.
		if !opts.GetWAL && pitr {
			settings.timeline = "current"
		}
	case "current", "latest":
		settings.timeline = opts.Target.TLI
	default:
		settings.timeline = strconv.FormatUint(uint64(tli), 10)
	}
	if err = r.writeConfig(writeSettings, settings, res); err != nil {
		return nil, err
	}
	if writeSettings {
		signal := "recovery.signal"
		if opts.StandbyMode {
			signal = "standby.signal"
		}
		res.SignalFile = filepath.Join(dest, signal)
		if _, err = r.sink.file(res.SignalFile, 0, strings.NewReader(""), fileSum{}); err != nil {
			return nil, err
		}
	}
	info := fmt.Sprintf("backup_id=%s\nserver=%s\nrecovered_at=%s\n", b.ID, b.ServerName, time.Now().UTC().Format(time.RFC3339))
	if _, err = r.sink.file(filepath.Join(dest, RecoverInfoFile), int64(len(info)), strings.NewReader(info), fileSum{}); err != nil {
		return nil, err
	}
	if ls, ok := r.sink.(*localSink); ok && opts.DeltaRestore {
		n, cerr := ls.cleanup(ctx, roots)
		if cerr != nil {
			err = cerr
			return nil, err
		}
		res.Removed = n
	}
	r.progress("flushing restored files to disk")
	if err = r.sink.finish(ctx); err != nil {
		return nil, err
	}
	res.Files = int(r.files.Load())
	res.Bytes = r.bytes.Load()
	res.Unchanged = int(r.unchanged.Load())
	if ch != nil {
		ch.report(res)
	}
	res.Duration = time.Since(start)
	res.Warnings = append(r.warnings, res.Warnings...)
	for _, w := range res.Warnings {
		logger.Warn(w, "backup", b.ID)
	}
	r.progress("restore of backup %s complete: %d files, %d bytes, %d WAL files in %s",
		b.ID, res.Files, res.Bytes, res.WALFiles, res.Duration.Round(time.Millisecond))
	return res, nil
}

// lockBackup takes the backup's lock shared, for the whole restore or
// verification: any number of them may run at once, while delete and
// retention take it exclusively and so can neither start under them nor
// be joined by them. A backup marked delete_this (a delete that did not
// finish) is refused too.
func lockBackup(l catalog.Layout, id string) (*lock.Lock, error) {
	if err := durable.MkdirAll(l.LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("backup %s: lock directory: %w", id, err)
	}
	lk, err := lock.TryLockShared(l.BackupLockPath(id))
	var busy *lock.BusyError
	if errors.As(err, &busy) {
		holder := "another process"
		if busy.PID > 0 {
			holder = "PID " + strconv.Itoa(busy.PID)
		}
		return nil, fmt.Errorf("%w: backup %s is being deleted by %s", ErrBackupBusy, id, holder)
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	marked, err := catalog.Open(l).HasDeleteThis(id)
	if err == nil && marked {
		err = fmt.Errorf("%w: backup %s is marked for deletion (delete_this: an earlier delete did not finish); run delete again to finish it", ErrBackupNotRestorable, id)
	}
	if err != nil {
		_ = lk.Release()
		return nil, err
	}
	return lk, nil
}

// sources finds the backup's trees and where each is restored.
func (r *restorer) sources() ([]source, error) {
	out, err := backupTrees(r.opts.Layout, r.backup)
	if err != nil {
		return nil, err
	}
	for i := range out {
		s := &out[i]
		if s.oid == 0 {
			s.dest = r.dest
			continue
		}
		s.dest = s.location
		if loc, ok := r.opts.Tablespaces[s.name]; ok {
			s.dest = loc
		}
		if !filepath.IsAbs(s.dest) {
			return nil, fmt.Errorf("%w: tablespace %s location %q must be absolute", ErrInvalidOptions, s.name, s.dest)
		}
		s.dest = filepath.Clean(s.dest)
	}
	return out, nil
}

// backupTrees finds where a stored backup keeps PGDATA and each
// tablespace: plain directories (Barman's data/ and <oid>/) or tar files.
func backupTrees(l catalog.Layout, b *catalog.BackupInfo) ([]source, error) {
	dataDir := l.BackupDataDir(b.ID)
	baseDir := l.BackupDirPath(b.ID)
	var out []source
	var pg source
	if fi, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil && fi.Mode().IsRegular() {
		pg.plainDir = dataDir
	} else if p := findTar(dataDir, baseDir, "base", "data"); p != "" {
		pg.tarPath = p
	} else {
		return nil, fmt.Errorf("backup %s: no PGDATA copy found (neither %s nor a base.tar in %s)", b.ID, dataDir, baseDir)
	}
	out = append(out, pg)
	for _, ts := range b.Tablespaces {
		s := source{oid: ts.OID, name: ts.Name, location: ts.Location}
		oid := strconv.FormatUint(uint64(ts.OID), 10)
		if pg.plainDir != "" {
			dir := filepath.Join(baseDir, oid)
			if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
				s.plainDir = dir
			}
		}
		if s.plainDir == "" {
			s.tarPath = findTar(dataDir, baseDir, oid)
		}
		if s.plainDir == "" && s.tarPath == "" {
			return nil, fmt.Errorf("backup %s: tablespace %s (oid %d) not found in %s", b.ID, ts.Name, ts.OID, baseDir)
		}
		out = append(out, s)
	}
	return out, nil
}

// findTar looks for <stem>.tar[.gz|.lz4|.zst|...] in the given directories.
func findTar(dirs ...string) string {
	var d []string
	var stems []string
	for _, x := range dirs {
		if filepath.IsAbs(x) {
			d = append(d, x)
		} else {
			stems = append(stems, x)
		}
	}
	for _, dir := range d {
		for _, stem := range stems {
			for _, suf := range []string{"", ".gz", ".lz4", ".zst", ".zstd", ".bz2"} {
				p := filepath.Join(dir, stem+".tar"+suf)
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
					return p
				}
			}
		}
	}
	return ""
}

// prepareLocal checks the destinations and creates the local sink. New
// files take the owner of the destination directory when cellar runs as
// root, so a restore into a PGDATA prepared for postgres is usable as is.
func (r *restorer) prepareLocal(roots []string) error {
	uid, gid := -1, -1
	for _, root := range roots {
		entries, err := os.ReadDir(root)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return fmt.Errorf("destination %s: %w", root, err)
		}
		if len(entries) > 0 && !r.opts.DeltaRestore {
			return notEmptyError(root, entries)
		}
		if r.opts.DeltaRestore && root == r.dest {
			if err := unmarkComplete(root); err != nil {
				return err
			}
		}
		if root == r.dest && os.Geteuid() == 0 {
			if fi, err := os.Stat(root); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
					uid, gid = int(st.Uid), int(st.Gid)
				}
			}
		}
	}
	ls := newLocalSink(roots, uid, gid, r.opts.DeltaRestore)
	for _, root := range roots {
		if err := durable.MkdirAll(filepath.Dir(root), 0o700); err != nil {
			return fmt.Errorf("destination %s: %w", root, err)
		}
		if err := ls.dir(root); err != nil {
			return err
		}
		if err := os.Chmod(root, 0o700); err != nil {
			return fmt.Errorf("destination %s: %w", root, err)
		}
	}
	r.sink = ls
	return nil
}

// notEmptyError refuses a used destination. A restore that was killed
// left a backup_label without the completion mark, and says so: a delta
// restore finishes it.
func notEmptyError(root string, entries []fs.DirEntry) error {
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	if names["backup_label"] && !names[RecoverInfoFile] {
		return fmt.Errorf("%w: %s holds an incomplete restore (backup_label but no %s: a restore was interrupted or failed); do not start PostgreSQL on it: rerun with --delta-restore to finish it, or empty it",
			ErrDestinationNotEmpty, root, RecoverInfoFile)
	}
	return fmt.Errorf("%w: %s holds %d entries (e.g. %s); restore into an empty directory or use --delta-restore",
		ErrDestinationNotEmpty, root, len(entries), entries[0].Name())
}

// unmarkComplete prepares a delta restore into dir: PostgreSQL must be
// stopped, and the mark of the previous complete restore goes (durably)
// before any file changes, so that a delta restore that fails or is killed
// half-way never leaves a directory that looks completely restored.
func unmarkComplete(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		return fmt.Errorf("%w: %s/postmaster.pid exists: stop PostgreSQL before a delta restore", ErrInvalidOptions, dir)
	}
	err := os.Remove(filepath.Join(dir, RecoverInfoFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("delta restore: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("delta restore: %w", err)
	}
	return nil
}

func (r *restorer) checkRemoteEmpty(ctx context.Context, roots []string) error {
	for _, root := range roots {
		out, err := runSSH(ctx, r.opts.RemoteSSHCommand, "ls -A "+shellQuote(root)+" 2>/dev/null | head -n 1; true")
		if err != nil {
			return err
		}
		if first := strings.TrimSpace(out); first != "" {
			return fmt.Errorf("%w: remote %s is not empty (e.g. %s); restore into an empty directory", ErrDestinationNotEmpty, root, first)
		}
	}
	return nil
}

// manifestPath is where the backup keeps its backup_manifest: in the
// PGDATA copy (plain) or next to base.tar.
func manifestPath(sources []source) string {
	for _, s := range sources {
		if s.oid != 0 {
			continue
		}
		if s.plainDir != "" {
			return filepath.Join(s.plainDir, ManifestName)
		}
		return filepath.Join(filepath.Dir(s.tarPath), ManifestName)
	}
	return ""
}

// loadManifest reads the backup's manifest, which every restored file is
// checked against. A backup without one (an rsync backup) is restored
// with a warning that it could not be verified; a damaged one is refused.
func (r *restorer) loadManifest() error {
	p := manifestPath(r.trees)
	m, err := loadManifest(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.warnings = append(r.warnings, fmt.Sprintf("backup %s has no %s: its files could NOT be verified while restoring", r.backup.ID, ManifestName))
	case err != nil:
		return fmt.Errorf("backup %s: %w", r.backup.ID, err)
	case !m.hasChecksums():
		r.warnings = append(r.warnings, fmt.Sprintf("backup %s: %s has no checksums: only file sizes were verified", r.backup.ID, ManifestName))
	}
	r.manifest = m
	r.check = newChecker(r.backup.ID, m)
	return nil
}

// restores reports whether the restore writes the manifest file key (files
// a restore leaves out, such as WAL in pg_wal, are not missing).
func (r *restorer) restores(key string) bool {
	if rest, ok := strings.CutPrefix(key, "pg_tblspc/"); ok {
		oid, rel, _ := strings.Cut(rest, "/")
		for _, s := range r.trees {
			if s.oid != 0 && strconv.FormatUint(uint64(s.oid), 10) == oid {
				_, _, _, skip := r.target(s, rel)
				return !skip
			}
		}
		return true
	}
	_, _, _, skip := r.target(r.trees[0], key)
	return !skip
}

// target maps a path inside a source tree to its destination and manifest
// key; skip means the entry is not restored.
func (r *restorer) target(s source, rel string) (dest, key string, intercept, skip bool) {
	rel = filepath.ToSlash(filepath.Clean(strings.TrimPrefix(rel, "./")))
	if rel == "." || rel == "" {
		return s.dest, "", false, false
	}
	if !filepath.IsLocal(rel) {
		return "", "", false, true
	}
	if s.oid != 0 {
		return filepath.Join(s.dest, rel), "pg_tblspc/" + strconv.FormatUint(uint64(s.oid), 10) + "/" + rel, false, false
	}
	top, restOf, nested := strings.Cut(rel, "/")
	if !nested && excludedFiles[top] {
		return "", "", false, true
	}
	if nested && excludedContents[top] && restOf != "" {
		return "", "", false, true
	}
	if !nested && top == "backup_manifest" {
		// Kept for reference under a name PostgreSQL tools won't pick up
		// as the manifest of the new cluster.
		return filepath.Join(s.dest, "backup_manifest."+r.backup.ID), rel, false, false
	}
	if !nested && (slices.Contains(configFiles, top) || top == r.opts.RecoveryConfFilename) {
		return filepath.Join(s.dest, rel), rel, true, false
	}
	return filepath.Join(s.dest, rel), rel, false, false
}

// writeFile restores one file, checking it against the manifest on the
// way (the sink sees the bytes as they are hashed; nothing is read back).
func (r *restorer) writeFile(dest, key string, size int64, rd io.Reader) error {
	cr, err := r.check.start(key, size, rd)
	if err != nil {
		return err
	}
	if cr.want != nil {
		rd = cr
	}
	wrote, err := r.sink.file(dest, size, rd, r.manifest[key])
	if err != nil {
		return err
	}
	if err := cr.done(); err != nil {
		return err
	}
	if wrote {
		r.files.Add(1)
		if size > 0 {
			r.bytes.Add(size)
		}
	} else {
		r.unchanged.Add(1)
	}
	return nil
}

// copyData restores the backup's files: copied from the backup, or rebuilt
// from its chain when it is incremental.
func (r *restorer) copyData(ctx context.Context, sources []source, ch *chain) error {
	if ch != nil {
		return r.copyChain(ctx, ch)
	}
	return r.copySources(ctx, sources)
}

func (r *restorer) copySources(ctx context.Context, sources []source) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Parallel)
	for _, s := range sources {
		if s.tarPath != "" {
			g.Go(func() error { return r.extractTar(gctx, s) })
			continue
		}
		if err := r.walkPlain(gctx, g, s); err != nil {
			return firstCause(err, g.Wait())
		}
	}
	return g.Wait()
}

// firstCause picks the error that stopped a walk feeding an errgroup: when
// a copy task failed, the walk only saw the group's context cancelled, and
// the task's error (the first one the group got) is the real cause.
func firstCause(walkErr, groupErr error) error {
	if groupErr != nil && errors.Is(walkErr, context.Canceled) {
		return groupErr
	}
	return walkErr
}

func (r *restorer) walkPlain(ctx context.Context, g *errgroup.Group, s source) error {
	return filepath.WalkDir(s.plainDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("backup %s: %w", r.backup.ID, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(s.plainDir, p)
		if err != nil {
			return err
		}
		dest, key, intercept, skip := r.target(s, rel)
		if skip {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		typ := d.Type()
		switch {
		case typ.IsDir():
			return r.sink.dir(dest)
		case typ&fs.ModeSymlink != 0:
			// A directory symlinked in the source (pg_wal on another
			// disk) is restored as a plain directory.
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				return r.sink.dir(dest)
			}
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return r.sink.symlink(dest, link)
		case typ.IsRegular():
			if intercept {
				data, err := os.ReadFile(p)
				if err != nil {
					return fmt.Errorf("backup %s: %w", r.backup.ID, err)
				}
				if err := r.check.data(key, data); err != nil {
					return err
				}
				r.mu.Lock()
				r.intercepted[rel] = data
				r.mu.Unlock()
				return nil
			}
			g.Go(func() error {
				if r.opts.beforeOpen != nil {
					r.opts.beforeOpen(p)
				}
				f, err := os.Open(p)
				if err != nil {
					return fmt.Errorf("backup %s: %w", r.backup.ID, err)
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				return r.writeFile(dest, key, fi.Size(), f)
			})
		}
		return nil
	})
}

func (r *restorer) extractTar(ctx context.Context, s source) error {
	f, err := os.Open(s.tarPath)
	if err != nil {
		return fmt.Errorf("backup %s: %w", r.backup.ID, err)
	}
	defer f.Close()
	dec, err := decoder(f, codecFromSuffix(s.tarPath))
	if err != nil {
		return fmt.Errorf("backup %s: %s: %w", r.backup.ID, s.tarPath, err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	if err := r.sink.dir(s.dest); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("backup %s: read %s: %w", r.backup.ID, s.tarPath, err)
		}
		dest, key, intercept, skip := r.target(s, h.Name)
		if skip {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = r.sink.dir(dest)
		case tar.TypeSymlink:
			err = r.sink.symlink(dest, h.Linkname)
		case tar.TypeReg:
			if intercept {
				data, rerr := readAllLimit(tr, 64<<20)
				if rerr != nil {
					return fmt.Errorf("backup %s: %s in %s: %w", r.backup.ID, h.Name, s.tarPath, rerr)
				}
				if err := r.check.data(key, data); err != nil {
					return err
				}
				r.mu.Lock()
				r.intercepted[filepath.Clean(strings.TrimPrefix(h.Name, "./"))] = data
				r.mu.Unlock()
				continue
			}
			if err = r.sink.dir(filepath.Dir(dest)); err == nil {
				err = r.writeFile(dest, key, h.Size, tr)
			}
		default:
			r.log.Warn("skipping unsupported tar entry", "archive", s.tarPath, "name", h.Name, "type", string(h.Typeflag))
		}
		if err != nil {
			return err
		}
	}
}

// tablespaceLinks points pg_tblspc/<oid> at each tablespace's location.
func (r *restorer) tablespaceLinks(sources []source) error {
	if err := r.sink.dir(filepath.Join(r.dest, "pg_tblspc")); err != nil {
		return err
	}
	for _, s := range sources {
		if s.oid == 0 {
			continue
		}
		link := filepath.Join(r.dest, "pg_tblspc", strconv.FormatUint(uint64(s.oid), 10))
		if err := r.sink.symlink(link, s.dest); err != nil {
			return err
		}
	}
	return nil
}

// copyWAL decompresses the archived WAL into dir; with markDone it also
// writes archive_status/<wal>.done so PostgreSQL does not archive them again.
func (r *restorer) copyWAL(ctx context.Context, entries []WALEntry, dir string, markDone bool) error {
	if err := r.sink.dir(dir); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Parallel)
	for _, e := range entries {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			n, err := wal.ParseName(e.Name)
			if err != nil {
				return err
			}
			src := r.opts.Layout.WALPath(n)
			f, err := os.Open(src)
			if err != nil {
				return fmt.Errorf("server %s: WAL %s: %w", r.opts.Layout.Server, e.Name, err)
			}
			defer f.Close()
			rc, err := sniffDecoder(f)
			if err != nil {
				return fmt.Errorf("WAL %s: %w", src, err)
			}
			defer rc.Close()
			size := int64(-1)
			if n.Kind == wal.KindSegment {
				size = int64(parseSegSize(r.backup))
			}
			if _, err := r.sink.file(filepath.Join(dir, e.Name), size, rc, fileSum{}); err != nil {
				return fmt.Errorf("WAL %s: %w", e.Name, err)
			}
			if markDone {
				done := filepath.Join(r.dest, "pg_wal", "archive_status", e.Name+".done")
				if _, err := r.sink.file(done, 0, strings.NewReader(""), fileSum{}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

func parseSegSize(b *catalog.BackupInfo) uint64 {
	if b.XLogSegmentSize > 0 {
		return uint64(b.XLogSegmentSize)
	}
	return catalog.DefaultXLogSegmentSize
}

// writeConfig writes the intercepted configuration files, edited, with
// .origin copies of the originals, and the recovery settings.
func (r *restorer) writeConfig(withSettings bool, settings recoverySettings, res *Result) error {
	rcName := r.opts.RecoveryConfFilename
	rcPath := rcName
	if !filepath.IsAbs(rcPath) {
		rcPath = filepath.Join(r.dest, rcName)
	}
	names := make([]string, 0, len(r.intercepted)+2)
	for n := range r.intercepted {
		names = append(names, n)
	}
	for _, n := range []string{"postgresql.auto.conf", rcName} {
		if !filepath.IsAbs(n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	write := func(path string, data []byte) error {
		_, err := r.sink.file(path, int64(len(data)), strings.NewReader(string(data)), fileSum{})
		if err == nil {
			r.files.Add(1)
			r.bytes.Add(int64(len(data)))
		}
		return err
	}
	for _, n := range names {
		orig, existed := r.intercepted[n]
		data, changed, warnings := mangleConfig(n, orig, withSettings)
		res.Warnings = append(res.Warnings, warnings...)
		if n == "postgresql.auto.conf" {
			data = append(data, archiveOff...)
			changed = true
		}
		if withSettings && n == rcName {
			data = append(data, settings.render(r.backup.ID, time.Now())...)
			changed = true
			res.RecoveryConf = filepath.Join(r.dest, n)
		}
		if changed && existed {
			if err := write(filepath.Join(r.dest, n+".origin"), orig); err != nil {
				return err
			}
		}
		if err := write(filepath.Join(r.dest, n), data); err != nil {
			return err
		}
	}
	if withSettings && filepath.IsAbs(rcName) {
		res.RecoveryConf = rcPath
		if err := write(rcPath, settings.render(r.backup.ID, time.Now())); err != nil {
			return err
		}
	}
	return nil
}
