// Package checktarget adapts a *server.Server to checks.Target, so that the
// probes (which may not import server) read the same catalog and
// connections as every other command. The CLI's check command, the
// exporter and the job runner's pre-flight all build their targets here.
package checktarget

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/passive"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/server"
)

// Target is a server seen by the probes.
//
// A Target caches what it parsed from the catalog (backup.info files,
// the running xlog.db summary; see cache.go), so a long-lived Target (the
// exporter's) re-reads only what changed. It is safe for concurrent use.
type Target struct {
	s       *server.Server
	backups backupCache
	wals    walCache
	verify  verifyCache
	state   stateTrack
}

var (
	_ checks.Target        = (*Target)(nil)
	_ checks.WALSummarizer = (*Target)(nil)
)

// New wraps s.
func New(s *server.Server) *Target { return &Target{s: s} }

// All wraps every server.
func All(srvs []*server.Server) []checks.Target {
	out := make([]checks.Target, len(srvs))
	for i, s := range srvs {
		out[i] = New(s)
	}
	return out
}

// Server returns the wrapped server.
func (t *Target) Server() *server.Server { return t.s }

func (t *Target) Name() string           { return t.s.Name() }
func (t *Target) Config() *config.Server { return t.s.Config() }
func (t *Target) Now() time.Time         { return t.s.Now() }

func (t *Target) Directories() checks.Directories {
	l := t.s.Layout()
	return checks.Directories{
		Backup: l.BackupDir, Base: l.BaseDir, Wals: l.WalsDir, Incoming: l.IncomingDir,
		Streaming: l.StreamingDir, Errors: l.ErrorsDir, Meta: l.MetaDir, XLogDB: l.XLogDBPath(),
		DefaultFormat: l.DefaultFormat,
	}
}

func (t *Target) PostgresStatus(ctx context.Context) (*checks.PGStatus, error) {
	return t.pgStatus(ctx, t.s.Config().Conninfo, true)
}

func (t *Target) WALPostgresStatus(ctx context.Context) (*checks.PGStatus, error) {
	c := t.s.Config()
	if !c.WALConninfo.IsSet() || c.WALConninfo == c.Conninfo {
		return nil, checks.ErrNotConfigured
	}
	return t.pgStatus(ctx, c.WALConninfo, true)
}

func (t *Target) PrimaryStatus(ctx context.Context) (*checks.PGStatus, error) {
	c := t.s.Config()
	if !c.PrimaryConninfo.IsSet() {
		return nil, checks.ErrNotConfigured
	}
	return t.pgStatus(ctx, c.PrimaryConninfo, false)
}

func (t *Target) StreamingStatus(ctx context.Context) (*checks.StreamingStatus, error) {
	c := t.s.Config()
	if !c.StreamingConninfo.IsSet() {
		return nil, checks.ErrNotConfigured
	}
	return t.identify(ctx, c.StreamingConninfo)
}

func (t *Target) WALStreamingStatus(ctx context.Context) (*checks.StreamingStatus, error) {
	c := t.s.Config()
	if !c.WALStreamingConninfo.IsSet() || c.WALStreamingConninfo == c.StreamingConninfo {
		return nil, checks.ErrNotConfigured
	}
	return t.identify(ctx, c.WALStreamingConninfo)
}

func (t *Target) identify(ctx context.Context, ci config.Conninfo) (*checks.StreamingStatus, error) {
	rc, err := postgres.ConnectReplication(ctx, ci.Raw())
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", t.s.Name(), err)
	}
	defer rc.Close(context.WithoutCancel(ctx))
	si, err := rc.IdentifySystem(ctx)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", t.s.Name(), err)
	}
	return &checks.StreamingStatus{SystemID: si.SystemID, Timeline: si.Timeline, XLogPos: si.XLogPos, ServerVersion: rc.ServerVersion()}, nil
}

func (t *Target) pgStatus(ctx context.Context, ci config.Conninfo, withSlot bool) (*checks.PGStatus, error) {
	c, err := postgres.Connect(ctx, ci.Raw())
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", t.s.Name(), err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", t.s.Name(), err)
	}
	out := &checks.PGStatus{
		ServerVersion:           st.ServerVersion,
		ServerVersionText:       st.ServerVersionText,
		IsSuperuser:             st.IsSuperuser,
		HasBackupPrivileges:     st.HasBackupPrivileges,
		HasMonitoringPrivileges: st.HasMonitoringPrivileges,
		WALLevel:                st.WALLevel,
		ArchiveMode:             st.ArchiveMode,
		ArchiveCommand:          st.ArchiveCommand,
		IsInRecovery:            st.IsInRecovery,
		SystemID:                st.SystemID,
		CurrentLSN:              st.CurrentLSN,
		WALSegmentSize:          st.WALSegmentSize,
		SummarizeWAL:            st.SummarizeWAL,
		Archiver: checks.ArchiverStats{
			ArchivedCount:   st.Archiver.ArchivedCount,
			LastArchivedWAL: st.Archiver.LastArchivedWAL,
			FailedCount:     st.Archiver.FailedCount,
			LastFailedWAL:   st.Archiver.LastFailedWAL,
			IsArchiving:     st.Archiver.IsArchiving,
		},
	}
	if st.Archiver.LastArchivedTime != nil {
		out.Archiver.LastArchivedTime = *st.Archiver.LastArchivedTime
	}
	if st.Archiver.LastFailedTime != nil {
		out.Archiver.LastFailedTime = *st.Archiver.LastFailedTime
	}
	if !withSlot {
		return out, nil
	}
	cfg := t.s.Config()
	if cfg.SlotName != "" {
		slot, err := c.ReplicationSlot(ctx, cfg.SlotName)
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", t.s.Name(), err)
		}
		out.SlotChecked = true
		if slot != nil {
			out.Slot = &checks.ReplicationSlot{Name: slot.Name, Active: slot.Active, RestartLSN: slot.RestartLSN}
		}
	}
	if cfg.StreamingArchiver {
		stats, err := c.ReplicationStats(ctx)
		if err == nil {
			for _, r := range stats {
				if r.ApplicationName == cfg.StreamingArchiverName && r.FlushLSN != nil {
					l := *r.FlushLSN
					out.ReceiverFlushLSN = &l
					break
				}
			}
		}
	}
	return out, nil
}

// Backups reads the catalog's backups, parsing only the backup.info files
// that changed since the previous call.
func (t *Target) Backups(ctx context.Context) ([]checks.Backup, error) {
	return t.backups.backups(t.s.Layout())
}

// WALSummary implements checks.WALSummarizer: the summary of xlog.db for
// backups, reading only the lines appended since the previous call.
func (t *Target) WALSummary(ctx context.Context, backups []checks.Backup) (*checks.WALSummary, error) {
	s, err := t.wals.summary(ctx, t.s.Layout().XLogDBPath(), backups)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", t.s.Name(), err)
	}
	return s, nil
}

func (t *Target) WALs(ctx context.Context, fn func(checks.WAL) error) error {
	if _, err := os.Stat(t.s.Layout().XLogDBPath()); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return t.s.XLogDB().Scan(ctx, func(w catalog.WALInfo) error {
		return fn(toWAL(w))
	})
}

func (t *Target) Identity() (*checks.Identity, error) {
	id, err := t.s.ReadIdentity()
	if err != nil || id == nil {
		return nil, err
	}
	return &checks.Identity{SystemID: id.SystemID, Version: id.Version}, nil
}

func (t *Target) ReceiveWAL() (int, bool, error) {
	return lock.Holder(t.s.Layout().LockPath("receive-wal"))
}

// Passive implements checks.Target for passive nodes: the primary must
// answer sync-info over primary_ssh_command (resuming from the last synced
// WAL, so the answer stays small), and the lag is read from primary.info,
// the last answer a sync stored. The check itself writes nothing.
func (t *Target) Passive(ctx context.Context) (*checks.PassiveStatus, error) {
	cfg := t.s.Config()
	if !cfg.IsPassive() {
		return nil, checks.ErrNotConfigured
	}
	opts := t.s.PassiveOptions()
	st := &checks.PassiveStatus{}
	if _, err := passive.PrimaryInfo(ctx, opts); err != nil {
		st.PrimaryErr = err
	}
	secs, segs, err := passive.Lag(t.s.Layout())
	switch {
	case err == nil:
		st.LagKnown, st.LagSeconds, st.LagSegments = true, secs, segs
	case errors.Is(err, fs.ErrNotExist):
		// No sync has run yet: the lag is unknown, not an error.
	default:
		return st, fmt.Errorf("server %s: passive sync lag: %w", t.s.Name(), err)
	}
	return st, nil
}
