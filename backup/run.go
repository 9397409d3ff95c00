// Package backup takes native base backups over PostgreSQL's replication
// protocol (BASE_BACKUP, PG15 single-stream framing) and stores them in
// Barman's layout, driving backup.info through EMPTY → STARTED →
// WAITING_FOR_WALS → DONE/FAILED.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/wal"
)

// MinServerVersion is the oldest server_version_num Cellar backs up:
// backup manifests, which every backup is checked against, came with 13.
const MinServerVersion = 130000

// ErrUnsupportedVersion refuses a server older than MinServerVersion.
var ErrUnsupportedVersion = errors.New("unsupported PostgreSQL version")

// ErrBackupRunning is returned when the server's backup lock is held.
var ErrBackupRunning = errors.New("another backup process is running")

// Reuse modes for Options.ReuseBackup.
const (
	ReuseOff  = "off"
	ReuseLink = "link"
)

// ApplicationName is what the replication connection reports, as Barman's
// postgres method does.
const ApplicationName = "barman_streaming_backup"

// Options configures one backup run. It is filled by the server layer from
// the configuration; backup never reads config itself.
type Options struct {
	Server       string
	Layout       catalog.Layout
	Conninfo     string // normal connection (status, restore point, WAL switch)
	ReplConninfo string // replication connection (BASE_BACKUP)
	// PrimaryConninfo (Barman's primary_conninfo) makes Conninfo a
	// streaming standby to back up: the primary it names must be a
	// primary of the same cluster, and it closes the WAL segment holding
	// the backup's end (a standby cannot switch WAL) and gets the
	// restore point.
	PrimaryConninfo string

	Compression string // none|gzip|lz4|zstd ("" = none: plain layout)
	// ClientCompression compresses lz4 and zstd in Cellar rather than on
	// the server (BASE_BACKUP COMPRESSION, PG15). gzip is always
	// compressed here, at a fast level: the server's gzip is
	// single-threaded zlib level 6, several times slower.
	ClientCompression bool
	// CompressionDetail is the server's COMPRESSION_DETAIL, e.g.
	// "level=5,workers=4" ("" = DefaultZstdDetail for zstd, the server's
	// defaults for lz4). It has no effect with client compression.
	CompressionDetail   string
	ImmediateCheckpoint bool
	ReuseBackup         string // off|link ("" = off); link needs the plain layout
	MaxRateKBps         int64  // 0 = unlimited
	Name                string // optional backup_name

	// Incremental takes a PostgreSQL 17+ incremental backup from Parent
	// (a backup id, name or shortcut; "" or "latest" = the newest DONE
	// backup): the server sends only the blocks changed since the parent,
	// whose stored backup_manifest is uploaded first.
	Incremental bool
	Parent      string

	// Hooks are the pre/post backup scripts. The pre scripts run once
	// backup.info exists (EMPTY); a pre retry script's ABORT_STOP fails
	// the backup before anything is copied. The post scripts always run
	// once backup.info exists, with the final status and error.
	Hooks hooks.Set

	// afterStart, when set (tests only), runs once the server has started
	// the backup and backup.info says STARTED, before any file arrives:
	// the moment to make something happen during a backup.
	afterStart func()

	// Ops makes every catalog write of the run: backup.info at each
	// status change, the backup directory, backup_manifest and the
	// directory fsyncs that make the copied files durable. nil =
	// durable.OS(); tests fail its N-th mutation.
	Ops durable.Ops

	Logger      *slog.Logger // nil = discard
	Progress    io.Writer    // nil = no progress output
	ProgressTTY bool         // Progress is a terminal: one updating \r line
	Now         func() time.Time
}

func (o *Options) normalize() error {
	if o.Server == "" {
		return errors.New("backup: no server name")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Ops == nil {
		o.Ops = durable.OS()
	}
	if o.Compression == "" {
		o.Compression = CompressionNone
	}
	if _, err := compressionSuffix(o.Compression); err != nil {
		return fmt.Errorf("server %s: %w", o.Server, err)
	}
	switch o.ReuseBackup {
	case "":
		o.ReuseBackup = ReuseOff
	case ReuseOff, ReuseLink:
	case "copy":
		return fmt.Errorf("server %s: reuse_backup=copy is not supported by the postgres backup method (use off or link)", o.Server)
	default:
		return fmt.Errorf("server %s: unknown reuse_backup %q (want off or link)", o.Server, o.ReuseBackup)
	}
	if o.CompressionDetail != "" {
		if o.Compression == CompressionNone {
			return fmt.Errorf("server %s: compression detail %q without backup compression", o.Server, o.CompressionDetail)
		}
		if err := validCompressionDetail(o.CompressionDetail); err != nil {
			return fmt.Errorf("server %s: %w", o.Server, err)
		}
	}
	if o.ReuseBackup == ReuseLink && o.Compression != CompressionNone {
		return fmt.Errorf("server %s: reuse_backup=link needs backup_compression none (hard links of tar files save nothing)", o.Server)
	}
	if o.Name != "" {
		if err := catalog.ValidateBackupName(o.Name); err != nil {
			return fmt.Errorf("server %s: %w", o.Server, err)
		}
	}
	if o.MaxRateKBps != 0 && (o.MaxRateKBps < 32 || o.MaxRateKBps > 1048576) {
		return fmt.Errorf("server %s: bandwidth limit %d kB/s out of range 32..1048576", o.Server, o.MaxRateKBps)
	}
	return nil
}

// Error is a failed backup: the action that failed (Barman's wording) and
// the cause. The backup.info error field holds Error().
type Error struct {
	Server   string
	BackupID string
	Action   string
	Err      error
}

func (e *Error) Error() string { return failureText(e.Action, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// failureText is backup.info's error field: `failure <action> (<first line>)`.
func failureText(action string, err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Sprintf("failure %s (%s)", action, msg)
}

// serverCompression is the COMPRESSION (and detail) to ask the server for,
// or "" when Cellar stores plain files or compresses itself.
func (o *Options) serverCompression() (comp, detail string) {
	if o.ClientCompression {
		return "", ""
	}
	switch o.Compression {
	case CompressionLZ4:
		return o.Compression, o.CompressionDetail
	case CompressionZstd:
		if o.CompressionDetail == "" {
			return o.Compression, DefaultZstdDetail
		}
		return o.Compression, o.CompressionDetail
	}
	return "", ""
}

// run is one backup in progress.
type run struct {
	o    *Options
	cat  *catalog.Catalog
	info *catalog.BackupInfo
	log  *slog.Logger
	// primary is the primary_conninfo connection of a backup from a
	// standby, nil for a backup of a primary.
	primary *postgres.Conn
	// parent is the backup an incremental is taken from, nil for a full
	// backup.
	parent *parent
}

// Run takes a backup. It returns the backup's final backup.info
// (WAITING_FOR_WALS on success; FAILED with the error saved when the copy
// failed after backup.info was created).
func Run(ctx context.Context, opts Options) (*catalog.BackupInfo, error) {
	o := opts
	if err := o.normalize(); err != nil {
		return nil, err
	}
	l := o.Layout
	if err := l.MakeDirs(); err != nil {
		return nil, err
	}
	lk, err := lock.TryLock(l.LockPath("backup"))
	if err != nil {
		if errors.Is(err, lock.ErrBusy) {
			return nil, fmt.Errorf("server %s: %w: %w", o.Server, ErrBackupRunning, err)
		}
		return nil, fmt.Errorf("server %s: backup lock: %w", o.Server, err)
	}
	defer lk.Release()

	cat := catalog.OpenWithOps(l, o.Ops)
	// We hold the backup lock, so any EMPTY/STARTED backup is a leftover of
	// a process that died.
	if _, err := markStale(cat, o.Logger); err != nil {
		return nil, err
	}

	conn, err := postgres.Connect(ctx, o.Conninfo)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", o.Server, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := conn.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", o.Server, err)
	}
	if st.ServerVersion != 0 && st.ServerVersion < MinServerVersion {
		return nil, fmt.Errorf("server %s: %w: PostgreSQL %s (Cellar backs up PostgreSQL 13 and later: BASE_BACKUP with a backup manifest)",
			o.Server, ErrUnsupportedVersion, st.MajorVersion())
	}
	primary, err := openPrimary(ctx, &o, st)
	if err != nil {
		return nil, err
	}
	if primary != nil {
		defer primary.Close(context.WithoutCancel(ctx))
	}
	if err := ensureIdentity(l, st); err != nil {
		return nil, err
	}
	par, err := prepareIncremental(ctx, &o, cat, conn, st)
	if err != nil {
		return nil, err
	}

	id, err := newBackupID(cat, o.Now())
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", o.Server, err)
	}
	r := &run{o: &o, cat: cat, primary: primary, parent: par, log: o.Logger.With("server", o.Server, "backup_id", id)}
	r.info = catalog.NewBackupInfo(id)
	r.info.ServerName = o.Server
	r.info.BackupName = o.Name
	r.info.Mode = "postgres"
	r.info.SystemID = st.SystemID
	fillStatus(r.info, st)
	r.info.SummarizeWAL = summarizeWALField(ctx, conn, st, r.log)
	if par != nil {
		r.info.ParentBackupID = par.info.ID
	}
	if err := cat.Save(r.info); err != nil {
		return nil, err
	}
	r.log.Info(fmt.Sprintf("Starting backup using postgres method for server %s in %s", o.Server, l.BackupDirPath(id)))

	// Barman's BARMAN_PREVIOUS_ID: the previous backup that can be
	// restored (WAITING_FOR_WALS or DONE).
	// Looking it up reads the catalog: only when there are hooks.
	prevID := ""
	if !o.Hooks.Empty() {
		if prev, err := cat.Previous(id); err == nil && prev != nil {
			prevID = prev.ID
		}
	}
	hookEnv := func() hooks.Env {
		return hooks.BackupEnv{
			BackupDir:      l.BackupDirPath(id),
			BackupID:       id,
			BackupInfoPath: l.BackupInfoPath(id),
			PreviousID:     prevID,
			Status:         string(r.info.Status),
			Error:          r.info.Error,
		}.Env()
	}
	if err := o.Hooks.RunPre(ctx, hookEnv()); err != nil {
		ferr := r.fail(step("starting backup", err))
		o.Hooks.RunPost(ctx, hookEnv())
		return r.info, ferr
	}
	err = r.take(ctx, conn)
	if err != nil {
		err = r.fail(err)
	}
	o.Hooks.RunPost(ctx, hookEnv())
	return r.info, err
}

// fail marks the backup FAILED. It saves even when ctx was cancelled: the
// catalog must not keep a STARTED backup of a live process.
func (r *run) fail(err error) error {
	var be *Error
	if !errors.As(err, &be) {
		be = &Error{Action: "copying files", Err: err}
	}
	be.Server, be.BackupID = r.o.Server, r.info.ID
	r.info.Status = catalog.StatusFailed
	r.info.Error = be.Error()
	if r.info.EndTime.IsZero() {
		r.info.EndTime = r.o.Now()
	}
	if serr := r.cat.Save(r.info); serr != nil {
		return errors.Join(be, serr)
	}
	r.log.Error(fmt.Sprintf("Backup failed %s.", be.Action), "details", be.Err.Error())
	return fmt.Errorf("server %s: backup %s: %w", r.o.Server, r.info.ID, be)
}

func step(action string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Action: action, Err: err}
}

func (r *run) take(ctx context.Context, conn *postgres.Conn) error {
	o, info, l := r.o, r.info, r.o.Layout
	started := o.Now()

	var prevDir string
	if o.ReuseBackup == ReuseLink && r.parent == nil {
		prevDir = r.previousPlain()
	}
	dir := l.BackupDirPath(info.ID)
	if err := o.Ops.MkdirAll(dir, 0o700); err != nil {
		return step("initialising postgres backup_method", err)
	}

	repl, err := postgres.ConnectReplication(ctx, o.ReplConninfo, postgres.ApplicationName(ApplicationName))
	if err != nil {
		return step("initialising postgres backup_method", err)
	}
	defer repl.Close(context.WithoutCancel(ctx))

	info.BeginTime = started
	comp, detail := o.serverCompression()
	if comp != "" && legacyProtocol(int(info.Version)) {
		r.log.Info("PostgreSQL before 15 cannot compress on the server; compressing in Cellar", "compression", comp)
		comp, detail = "", ""
	}
	var s *stream
	var cp *copier
	copyStart := time.Now()
	for attempt := 0; ; attempt++ {
		var retry bool
		s, cp, retry, err = r.copy(ctx, repl, prevDir, comp, detail)
		if err == nil {
			break
		}
		if !retry || attempt > 0 {
			return err
		}
		// The server refused the compression before sending any archive
		// (and before the checkpoint for an unsupported codec): fall back
		// to what it can do.
		switch {
		case detail == DefaultZstdDetail && o.CompressionDetail == "" && isPgError(err, "could not set compression worker count"):
			r.log.Warn("the server's zstd has no worker threads; compressing with one thread", "err", err)
			detail = ""
		case isPgError(err, "does not support compression"):
			// "this build does not support compression with LZ4"
			r.log.Warn("the server cannot compress with "+comp+"; compressing in Cellar instead", "err", err)
			comp, detail = "", ""
		default:
			return err // e.g. a bad CompressionDetail: the user asked for it
		}
		copyStart = time.Now()
	}
	copyTime := time.Since(copyStart)
	segSize := uint64(info.XLogSegmentSize)
	if cp.manifest == nil {
		return step("copying files", fmt.Errorf("%w: no backup_manifest received", ErrManifest))
	}
	m, err := ParseManifest(cp.manifest)
	if err != nil {
		return step("copying files", err)
	}
	if err := m.CheckSystemID(info.SystemID); err != nil {
		return step("copying files", err)
	}
	if err := m.Verify(cp.sums); err != nil {
		return step("copying files", err)
	}
	if err := o.Ops.WriteFile(filepath.Join(dir, "data", "backup_manifest"), cp.manifest, 0o600); err != nil {
		return step("copying files", err)
	}
	if err := cp.syncDirs(); err != nil {
		return step("copying files", err)
	}
	if cp.linked > 0 {
		r.log.Info("reused unchanged files from the previous backup", "linked_bytes", cp.linked, "copied_bytes", cp.copied)
	}

	if len(cp.label) == 0 {
		return step("reading the backup label", errors.New("backup_label not found in base.tar"))
	}
	info.BackupLabel = string(cp.label)
	if o.Compression != CompressionNone {
		info.Compression = o.Compression
	}

	if r.primary != nil {
		if err := stillStandby(ctx, conn, s); err != nil {
			return step("stopping postgres backup_method", err)
		}
	}
	r.log.Info("Finalising the backup.")
	info.EndXLog = s.End.LSN.String()
	info.EndWAL = wal.NameForPrevLSN(s.End.Timeline, s.End.LSN, segSize).String()
	info.EndOffset = catalog.Int64(int64(s.End.LSN.SegmentOffset(segSize)))
	// A standby can neither write a restore point nor switch WAL: its
	// primary does both, after the standby's end (the primary is ahead).
	walConn := conn
	if r.primary != nil {
		walConn = r.primary
	}
	if _, err := walConn.CreateRestorePoint(ctx, "barman_"+info.ID); err != nil {
		return step("stopping postgres backup_method", err)
	}
	// The restore point's record and the backup's end are in the current
	// segment: close it so the archiver ships it now.
	if _, _, err := walConn.SwitchWAL(ctx); err != nil {
		return step("stopping postgres backup_method", err)
	}
	if cs, err := clusterSize(ctx, conn); err == nil {
		info.ClusterSize = catalog.Int64(cs)
	} else {
		r.log.Warn("cannot read cluster size", "err", err)
	}

	size, dedup, err := DiskUsage(dir)
	if err != nil {
		return step("calculating backup size", err)
	}
	info.Size, info.DeduplicatedSize = catalog.Int64(size), catalog.Int64(dedup)
	info.EndTime = o.Now()
	info.CopyStats = map[string]float64{
		"copy_time":  copyTime.Seconds(),
		"total_time": info.EndTime.Sub(started).Seconds(),
	}
	info.Status = catalog.StatusWaitingForWALs
	if err := r.cat.Save(info); err != nil {
		return step("calculating backup size", err)
	}
	r.log.Info(fmt.Sprintf("Backup end at LSN: %s (%s, %08X)", info.EndXLog, info.EndWAL, *info.EndOffset))
	r.log.Info(fmt.Sprintf("Backup completed (start time: %s, elapsed time: %s)",
		catalog.FormatPyTime(info.BeginTime), info.EndTime.Sub(started).Round(time.Second)))
	return nil
}

// copy runs BASE_BACKUP and stores the archives. retry reports a refusal of
// the server compression that another attempt without it can avoid.
func (r *run) copy(ctx context.Context, repl *postgres.ReplConn, prevDir, comp, detail string) (s *stream, cp *copier, retry bool, err error) {
	o, info := r.o, r.info
	cmd := Command{
		Label:             "Barman backup " + o.Server + " " + info.ID,
		Fast:              o.ImmediateCheckpoint,
		MaxRateKBps:       o.MaxRateKBps,
		TablespaceMap:     o.Compression != CompressionNone,
		Compression:       comp,
		CompressionDetail: detail,
		ServerVersion:     int(info.Version),
		Incremental:       r.parent != nil,
	}
	sql, err := cmd.SQL()
	if err != nil {
		return nil, nil, false, step("issuing start backup command", err)
	}
	if r.parent != nil {
		if err := uploadManifest(ctx, repl, r.parent.manifest); err != nil {
			return nil, nil, false, step("issuing start backup command", err)
		}
	}
	s, err = startStream(ctx, repl.PgConn(), sql, legacyProtocol(cmd.ServerVersion))
	if err != nil {
		return nil, nil, comp != "" && isPgError(err, "compression"), step("issuing start backup command", err)
	}
	segSize := uint64(info.XLogSegmentSize)
	info.Status = catalog.StatusStarted
	info.BeginXLog = s.Start.LSN.String()
	info.BeginWAL = wal.NameForLSN(s.Start.Timeline, s.Start.LSN, segSize).String()
	info.BeginOffset = catalog.Int64(int64(s.Start.LSN.SegmentOffset(segSize)))
	info.Timeline = int64(s.Start.Timeline)
	if err := r.cat.Save(info); err != nil {
		return nil, nil, false, step("issuing start backup command", err)
	}
	r.log.Info(fmt.Sprintf("Backup start at LSN: %s (%s, %08X)", info.BeginXLog, info.BeginWAL, *info.BeginOffset))
	if o.afterStart != nil {
		o.afterStart()
	}

	var total int64
	for _, ts := range s.Tablespaces {
		if ts.Size > 0 {
			total += ts.Size
		}
	}
	prog := newProgress(o.Progress, o.ProgressTTY, total, o.Now)
	s.onProgress = prog.update

	cp, err = newCopier(r.o.Layout.BackupDirPath(info.ID), o.Compression, "CRC32C", prevDir)
	if err != nil {
		return nil, nil, false, step("copying files", err)
	}
	cp.ops = o.Ops
	cp.server = comp != ""
	if err := cp.run(s); err != nil {
		return nil, nil, cp.server && cp.archives == 0 && isPgError(err, "compression"), step("copying files", err)
	}
	if err := s.finish(); err != nil {
		return nil, nil, false, step("copying files", err)
	}
	prog.finish(cp.copied)
	if cp.server {
		r.log.Info("the server compressed the backup", "compression", comp, "detail", detail)
	}
	return s, cp, false, nil
}

// isPgError reports a server error whose message contains text.
func isPgError(err error, text string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.Contains(pe.Message, text)
}

// previousPlain returns the newest available plain backup's directory, the
// source of hard links for reuse_backup=link ("" when there is none).
func (r *run) previousPlain() string {
	backups, err := r.cat.Available()
	if err != nil {
		r.log.Warn("reuse_backup=link: cannot list backups", "err", err)
		return ""
	}
	for i := len(backups) - 1; i >= 0; i-- {
		b := backups[i]
		if b.ID == r.info.ID || b.Mode != "postgres" || (b.Compression != "" && b.Compression != CompressionNone) {
			continue
		}
		dir := r.o.Layout.BackupDirPath(b.ID)
		if fi, err := os.Stat(filepath.Join(dir, "data")); err == nil && fi.IsDir() {
			return dir
		}
	}
	return ""
}

func fillStatus(info *catalog.BackupInfo, st *postgres.Status) {
	info.PGData = st.DataDirectory
	info.Version = int64(st.ServerVersion)
	if st.WALSegmentSize != 0 {
		info.XLogSegmentSize = int64(st.WALSegmentSize)
	}
	info.ConfigFile, info.HBAFile, info.IdentFile = st.ConfigFile, st.HBAFile, st.IdentFile
	info.DataChecksums = "off"
	if st.DataChecksums {
		info.DataChecksums = "on"
	}
	info.SummarizeWAL = ""
	for _, ts := range st.Tablespaces {
		info.Tablespaces = append(info.Tablespaces, catalog.Tablespace{Name: ts.Name, OID: ts.OID, Location: ts.Location})
	}
}

// ErrStandbySetup refuses a backup whose conninfo and primary_conninfo do
// not name a standby and its primary (Barman's three standby checks).
var ErrStandbySetup = errors.New("invalid standby backup setup")

// ErrPromoted fails a backup from a standby that was promoted while it
// ran: the files may mix both timelines' states.
var ErrPromoted = errors.New("the standby was promoted during the backup")

// openPrimary connects to primary_conninfo for a backup from a standby,
// after the checks Barman runs for one: conninfo is a standby, the primary
// is not, and both have the same system identifier. It returns nil for a
// backup of a primary (no primary_conninfo).
func openPrimary(ctx context.Context, o *Options, st *postgres.Status) (*postgres.Conn, error) {
	if o.PrimaryConninfo == "" {
		if st.IsInRecovery {
			return nil, fmt.Errorf("server %s: %w: conninfo points to a standby; set primary_conninfo to back up from a standby", o.Server, ErrStandbySetup)
		}
		return nil, nil
	}
	if !st.IsInRecovery {
		return nil, fmt.Errorf("server %s: %w: conninfo should point to a standby server if primary_conninfo is set", o.Server, ErrStandbySetup)
	}
	pc, err := postgres.Connect(ctx, o.PrimaryConninfo)
	if err != nil {
		return nil, fmt.Errorf("server %s: primary_conninfo: %w", o.Server, err)
	}
	ps, err := pc.Status(ctx)
	if err == nil {
		err = checkPrimary(ps, st)
	}
	if err != nil {
		pc.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("server %s: %w", o.Server, err)
	}
	return pc, nil
}

// checkPrimary is Barman's "Primary server is not a standby" and "Primary
// and standby have same system ID".
func checkPrimary(primary, standby *postgres.Status) error {
	if primary.IsInRecovery {
		return fmt.Errorf("%w: primary_conninfo should point to a primary server, not a standby", ErrStandbySetup)
	}
	if primary.SystemID != standby.SystemID {
		return fmt.Errorf("%w: primary_conninfo and conninfo should point to primary and standby servers which share the same system identifier (%s, %s)",
			ErrStandbySetup, primary.SystemID, standby.SystemID)
	}
	return nil
}

// stillStandby fails a backup from a standby that left recovery or changed
// timeline while it ran. PostgreSQL itself fails BASE_BACKUP when the
// promotion comes before the backup's stop; this catches the rest of the
// window up to here.
func stillStandby(ctx context.Context, conn *postgres.Conn, s *stream) error {
	if s.End.Timeline != s.Start.Timeline {
		return fmt.Errorf("%w (timeline %d at the start, %d at the end)", ErrPromoted, s.Start.Timeline, s.End.Timeline)
	}
	var inRecovery bool
	if err := conn.PgxConn().QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("is the standby still in recovery: %w", err)
	}
	if !inRecovery {
		return fmt.Errorf("%w (it is no longer in recovery)", ErrPromoted)
	}
	return nil
}

// ErrSystemIDMismatch means the server is not the cluster this catalog's
// identity.json belongs to; backing it up into this catalog would mix two
// clusters' WAL and backups.
var ErrSystemIDMismatch = errors.New("system identifier does not match identity.json")

// ensureIdentity writes identity.json before the first backup (Barman's
// write_identity_file) and refuses a server whose system identifier differs
// from the one recorded.
func ensureIdentity(l catalog.Layout, st *postgres.Status) error {
	old, err := catalog.ReadIdentity(l)
	switch {
	case err == nil:
		if st.SystemID != "" && old.SystemID != st.SystemID {
			return fmt.Errorf("server %s: system identifier %s: %w (%s)", l.Server, st.SystemID, ErrSystemIDMismatch, old.SystemID)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return catalog.WriteIdentity(l, catalog.Identity{SystemID: st.SystemID, Version: st.MajorVersion()})
}

// newBackupID returns the id for a backup starting at t. Ids have one
// second resolution; a backup started within the same second as an
// existing one takes the next free second rather than colliding.
func newBackupID(cat *catalog.Catalog, t time.Time) (string, error) {
	l := cat.Layout()
	for i := range 120 {
		id := catalog.NewBackupID(t.Add(time.Duration(i) * time.Second))
		_, e1 := os.Stat(l.MetaBackupInfoPath(id))
		_, e2 := os.Stat(l.BackupDirPath(id))
		if errors.Is(e1, fs.ErrNotExist) && errors.Is(e2, fs.ErrNotExist) {
			return id, nil
		}
	}
	return "", errors.New("no free backup id")
}

func clusterSize(ctx context.Context, conn *postgres.Conn) (int64, error) {
	var n int64
	err := conn.PgxConn().QueryRow(ctx, "SELECT coalesce(sum(pg_tablespace_size(oid)), 0)::int8 FROM pg_tablespace").Scan(&n)
	return n, err
}

// DiskUsage returns the bytes of regular files under dir (Barman's size)
// and of those with a single link (deduplicated_size: what deleting the
// backup would free).
func DiskUsage(dir string) (size, dedup int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		size += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Nlink <= 1 {
			dedup += fi.Size()
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return size, dedup, nil
}

// MarkStaleFailed marks every EMPTY or STARTED backup FAILED when no backup
// process holds the server's backup lock: such a backup belongs to a process
// that died (kill -9, power loss). It returns the ids it marked. Run calls it
// first, under the lock.
func MarkStaleFailed(l catalog.Layout, logger *slog.Logger) ([]string, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lk, err := lock.TryLock(l.LockPath("backup"))
	if errors.Is(err, lock.ErrBusy) {
		return nil, nil // a backup is running: its STARTED backup is alive
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: backup lock: %w", l.Server, err)
	}
	defer lk.Release()
	return markStale(catalog.Open(l), logger)
}

func markStale(cat *catalog.Catalog, logger *slog.Logger) ([]string, error) {
	backups, err := cat.Backups()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, b := range backups {
		if b.Status != catalog.StatusEmpty && b.Status != catalog.StatusStarted {
			continue
		}
		action := "copying files"
		if b.Status == catalog.StatusEmpty {
			action = "starting backup"
		}
		b.Status = catalog.StatusFailed
		b.Error = failureText(action, errors.New("interrupted: backup process died"))
		if err := cat.Save(b); err != nil {
			return ids, err
		}
		logger.Warn("marked interrupted backup as FAILED", "server", cat.Layout().Server, "backup_id", b.ID)
		ids = append(ids, b.ID)
	}
	return ids, nil
}
