// Package drill proves that a backup restores: it restores the backup into
// a scratch directory, replays the archived WAL up to the newest archived
// segment (or a recovery target), starts a private PostgreSQL of the
// backup's major version on it, checks the recovered server (system
// identifier, timeline, recovered point, user SQL checks) and throws it
// all away again. Each drill leaves one durable Record in the catalog.
//
// What a drill does to the machine: it writes about the size of the
// cluster plus the WAL it replays into the scratch directory, uses CPU for
// the copy and the replay, and runs one postgres with no TCP listener and
// archiving off. The server is stopped and the scratch directory removed
// on every path out of Run; a drill killed outright leaves them behind and
// the next drill of the server removes them first.
package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/recovery"
)

// Options drives one drill.
type Options struct {
	Layout catalog.Layout
	// Backup is the backup to restore (already resolved from id/latest).
	Backup *catalog.BackupInfo
	// Target is where recovery stops; the zero value replays all archived
	// WAL. A target without an action is promoted when reached.
	Target recovery.Target
	// ScratchRoot holds the drill's scratch directory
	// (<ScratchRoot>/cellar-drill-<server>).
	ScratchRoot string
	// BinDirs maps a PostgreSQL major to its server binary directory;
	// missing majors are looked up in the usual places (see BinDir).
	BinDirs map[int]string
	// ChecksDir holds the user SQL checks (NAME.sql + NAME.expected); ""
	// runs none.
	ChecksDir    string
	CheckTimeout time.Duration
	// RecoveryTimeout bounds the start-up and WAL replay (0: no limit
	// besides ctx).
	RecoveryTimeout time.Duration
	// Parallel is the restore's copy parallelism.
	Parallel int
	// Keep is how many records the server keeps (0: DefaultKeep).
	Keep     int
	Logger   *slog.Logger
	Progress io.Writer
	Now      func() time.Time

	// afterRestore and afterStart, in tests, run once the restore copy is
	// done and once the server accepts queries.
	afterRestore, afterStart func()
}

// Run performs the drill and stores its record. The error is nil only for
// a successful drill; the record (nil only when the drill could not start
// at all: lock busy, bad options) says what happened either way.
func Run(ctx context.Context, opts Options) (*Record, error) {
	if err := validate(opts); err != nil {
		return nil, err
	}
	lk, err := lockDrill(opts.Layout)
	if err != nil {
		return nil, err
	}
	defer lk.Release()
	d := newRun(opts)
	d.err = d.run(ctx)
	d.finish()
	if err := Save(opts.Layout, d.rec, opts.Keep); err != nil {
		return d.rec, errors.Join(d.err, err)
	}
	return d.rec, d.err
}

func validate(opts Options) error {
	if opts.Backup == nil {
		return fmt.Errorf("server %s: drill: no backup given", opts.Layout.Server)
	}
	if opts.ScratchRoot == "" {
		return fmt.Errorf("server %s: drill: no scratch directory configured", opts.Layout.Server)
	}
	return opts.Target.Validate(opts.Backup)
}

// drillRun is one drill in progress.
type drillRun struct {
	opts    Options
	log     *slog.Logger
	rec     *Record
	sc      scratch
	own     owner
	phase   time.Time
	err     error
	entries []catalog.WALInfo
}

func newRun(opts Options) *drillRun {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = DefaultCheckTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := opts.Now()
	rec := &Record{ID: NewID(start), Server: opts.Layout.Server, BackupID: opts.Backup.ID,
		Target: describeTarget(opts.Target), Start: start.UTC()}
	return &drillRun{opts: opts, log: log, rec: rec, sc: newScratch(opts.ScratchRoot, opts.Layout.Server), phase: start}
}

func (d *drillRun) progress(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.log.Info(msg, "server", d.rec.Server, "backup", d.rec.BackupID)
	if d.opts.Progress != nil {
		fmt.Fprintln(d.opts.Progress, msg)
	}
}

// endPhase records the time since the previous phase ended.
func (d *drillRun) endPhase(name string) {
	now := d.opts.Now()
	d.rec.Phases = append(d.rec.Phases, Phase{Name: name, Seconds: now.Sub(d.phase).Seconds()})
	d.phase = now
}

// finish fills the result fields.
func (d *drillRun) finish() {
	d.rec.End = d.opts.Now().UTC()
	d.rec.Result = ResultOK
	if d.err != nil {
		d.rec.Result, d.rec.Error = ResultFailed, d.err.Error()
	}
}

// run is the drill between taking the lock and recording the result.
// Whatever happens, the server is stopped and the scratch removed; the
// clean-up must finish even when ctx was cancelled (Ctrl-C, SIGTERM).
func (d *drillRun) run(ctx context.Context) (err error) {
	cleanCtx := context.WithoutCancel(ctx)
	if err := d.sc.cleanLeftover(cleanCtx); err != nil {
		return err
	}
	if d.own, err = serverOwner(); err != nil {
		return err
	}
	bin, err := BinDir(int(d.opts.Backup.Version/10000), d.opts.BinDirs)
	if err != nil {
		return fmt.Errorf("backup %s: %w", d.opts.Backup.ID, err)
	}
	if err := d.prepare(ctx); err != nil {
		return err
	}
	defer func() {
		if rerr := d.sc.remove(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	if err := d.restore(ctx); err != nil {
		return err
	}
	return d.startAndVerify(ctx, bin)
}

// prepare plans the WAL, checks the free space and creates the scratch
// directory; nothing is written before the space check passed.
func (d *drillRun) prepare(ctx context.Context) error {
	if err := d.readArchive(ctx); err != nil {
		return err
	}
	segs, err := d.planWAL()
	if err != nil {
		return err
	}
	need := restoreSize(d.opts.Layout, d.opts.Backup, segs)
	if err := checkSpace(d.opts.ScratchRoot, need); err != nil {
		return fmt.Errorf("server %s: backup %s: %w", d.rec.Server, d.rec.BackupID, err)
	}
	return d.sc.create(d.own)
}

func (d *drillRun) readArchive(ctx context.Context) error {
	return catalog.OpenXLogDB(d.opts.Layout).Scan(ctx, func(w catalog.WALInfo) error {
		d.entries = append(d.entries, w)
		return nil
	})
}

// restore copies the backup and the WAL it needs into the scratch
// directory with the same code as cellar recover.
func (d *drillRun) restore(ctx context.Context) error {
	d.progress("drill: restoring backup %s into %s", d.rec.BackupID, d.sc.data)
	target := d.opts.Target
	if target.TLI == "" {
		target.TLI = "latest"
	}
	if hasStop(target) && target.Action == "" {
		target.Action = "promote"
	}
	_, err := recovery.Recover(ctx, recovery.Options{
		Layout: d.opts.Layout, Backup: d.opts.Backup, Dest: d.sc.data, Target: target,
		XLogEntries: walEntries(d.entries), Parallel: d.opts.Parallel, Logger: d.log,
		Progress: d.opts.Progress,
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	d.endPhase(PhaseRestore)
	if d.opts.afterRestore != nil {
		d.opts.afterRestore()
	}
	return nil
}

func walEntries(in []catalog.WALInfo) []recovery.WALEntry {
	out := make([]recovery.WALEntry, 0, len(in))
	for _, w := range in {
		e := recovery.WALEntry{Name: w.Name}
		if w.Compression != "None" {
			e.Compression = w.Compression
		}
		out = append(out, e)
	}
	return out
}

// startAndVerify runs the restored server, checks it and stops it.
func (d *drillRun) startAndVerify(ctx context.Context, bin string) (err error) {
	if err := d.own.chownTree(d.sc.dir); err != nil {
		return fmt.Errorf("drill scratch directory: %w", err)
	}
	d.progress("drill: starting PostgreSQL from %s on socket %s", bin, d.sc.sock)
	pm, err := startPostmaster(bin, d.sc.data, d.sc.sock, d.sc.log, d.own)
	if err != nil {
		return err
	}
	defer func() {
		if serr := pm.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	rctx, cancel := d.recoveryContext(ctx)
	defer cancel()
	conn, err := pm.connect(rctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	d.endPhase(PhaseStartup)
	if d.opts.afterStart != nil {
		d.opts.afterStart()
	}
	d.progress("drill: PostgreSQL accepts queries; waiting for the end of recovery")
	if err := pm.waitRecovered(rctx, conn); err != nil {
		return fmt.Errorf("%w; server log:\n%s", err, pm.logTail())
	}
	d.endPhase(PhaseReplay)
	err = d.verify(ctx, conn)
	d.endPhase(PhaseChecks)
	return err
}

func (d *drillRun) recoveryContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.opts.RecoveryTimeout > 0 {
		return context.WithTimeout(ctx, d.opts.RecoveryTimeout)
	}
	return context.WithCancel(ctx)
}

// describeTarget renders a target for the record ("" for the end of the
// archive).
func describeTarget(t recovery.Target) string {
	var parts []string
	switch {
	case t.Time != nil:
		parts = append(parts, "time "+t.Time.UTC().Format(time.RFC3339Nano))
	case t.XID != "":
		parts = append(parts, "xid "+t.XID)
	case t.LSN != nil:
		parts = append(parts, "lsn "+t.LSN.String())
	case t.Name != "":
		parts = append(parts, "name "+t.Name)
	case t.Immediate:
		parts = append(parts, "immediate")
	}
	if t.TLI != "" {
		parts = append(parts, "timeline "+t.TLI)
	}
	return strings.Join(parts, ", ")
}

// hasStop reports whether t names a point where recovery stops.
func hasStop(t recovery.Target) bool {
	return t.Time != nil || t.XID != "" || t.LSN != nil || t.Name != "" || t.Immediate
}
