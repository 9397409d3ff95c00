// Package server is the façade over one configured PostgreSQL server: it
// owns the server's catalog paths, locks and connection factories, turns the
// validated configuration into the Options structs of the operation
// packages, and implements checks.Target so that probes, the exporter and
// the job runner all see the same state.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/postgres"
)

// Server is one configured PostgreSQL server (Barman's barman.server.Server).
// It is cheap to build and safe for concurrent use by several goroutines.
type Server struct {
	name   string
	cfg    *config.Server
	global *config.Global
	layout catalog.Layout
	cat    *catalog.Catalog
	xlog   *catalog.XLogDB
	log    *slog.Logger
	now    func() time.Time
	// ops makes every catalog mutation of delete, WAL pruning and
	// retention (durable.OS(); tests inject failures).
	ops durable.Ops

	cfgSegSize uint64
	// cfgFile is the configuration file (BARMAN_CONFIGURATION for hooks).
	cfgFile string
	// hookRetry spaces retry-script tries (zero = Barman's 3 s / 60 s).
	hookRetry hooks.RetryPolicy
}

// New builds the server called name from a validated configuration.
func New(cfg *config.Config, name string, logger *slog.Logger) (*Server, error) {
	sc, err := cfg.Server(name)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := catalog.NewLayout(name, sc.BackupDirectory, cfg.Global.LockDirectory())
	format, err := catalog.ParseFormat(cfg.Global.BarmanCompatibility)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	l.DefaultFormat = format
	return &Server{
		name:    name,
		cfg:     sc,
		global:  &cfg.Global,
		layout:  l,
		cat:     catalog.Open(l),
		xlog:    catalog.OpenXLogDB(l),
		log:     logger,
		now:     time.Now,
		ops:     durable.OS(),
		cfgFile: cfg.File,
	}, nil
}

// NewSet builds every configured server, in name order.
func NewSet(cfg *config.Config, logger *slog.Logger) ([]*Server, error) {
	var out []*Server
	for _, n := range cfg.ServerNames() {
		s, err := New(cfg, n, logger.With("server", n))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// SetOps routes the catalog mutations of delete, WAL pruning and
// retention through ops. Tests use it (before any other call) to fail the
// N-th mutation.
func (s *Server) SetOps(ops durable.Ops) {
	s.ops = ops
	s.cat = catalog.OpenWithOps(s.layout, ops)
	s.xlog = catalog.OpenXLogDBWithOps(s.layout, ops)
}

// Name is the configured server name.
func (s *Server) Name() string { return s.name }

// Config is the server's validated configuration.
func (s *Server) Config() *config.Server { return s.cfg }

// Global is the global section of the configuration.
func (s *Server) Global() *config.Global { return s.global }

// Layout is the server's on-disk catalog layout.
func (s *Server) Layout() catalog.Layout { return s.layout }

// Catalog reads the server's backups.
func (s *Server) Catalog() *catalog.Catalog { return s.cat }

// XLogDB is the server's WAL catalog.
func (s *Server) XLogDB() *catalog.XLogDB { return s.xlog }

// Logger is the server-scoped logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Now is the server's clock (replaceable in tests).
func (s *Server) Now() time.Time { return s.now() }

// SetClock replaces the clock; tests use it to age backups.
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// MakeDirectories creates the server's catalog directories (seed
// _make_directories).
func (s *Server) MakeDirectories() error { return s.layout.MakeDirs() }

// Connect opens a normal connection through conninfo.
func (s *Server) Connect(ctx context.Context) (*postgres.Conn, error) {
	if !s.cfg.Conninfo.IsSet() {
		return nil, fmt.Errorf("server %s: conninfo is not set", s.name)
	}
	c, err := postgres.Connect(ctx, s.cfg.Conninfo.Raw())
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", s.name, err)
	}
	return c, nil
}

// ConnectReplication opens a replication connection through
// streaming_conninfo.
func (s *Server) ConnectReplication(ctx context.Context, appName string) (*postgres.ReplConn, error) {
	ci := s.cfg.StreamingConninfo
	if !ci.IsSet() {
		return nil, fmt.Errorf("server %s: streaming_conninfo is not set", s.name)
	}
	var opts []postgres.Option
	if appName != "" {
		opts = append(opts, postgres.ApplicationName(appName))
	}
	c, err := postgres.ConnectReplication(ctx, ci.Raw(), opts...)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", s.name, err)
	}
	return c, nil
}

// Status connects and reads the remote status.
func (s *Server) Status(ctx context.Context) (*postgres.Status, error) {
	c, err := s.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", s.name, err)
	}
	return st, nil
}

// IdentityPath is identity.json's path (seed get_identity_file_path).
func (s *Server) IdentityPath() string { return s.layout.IdentityPath() }

// ReadIdentity reads identity.json; (nil, nil) when it does not exist yet
// (seed read_identity_file).
func (s *Server) ReadIdentity() (*catalog.Identity, error) {
	id, err := catalog.ReadIdentity(s.layout)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return &id, nil
}

// WriteIdentity records the server's system identifier and major version
// (seed write_identity_file). Barman writes it once, before the first
// backup; an existing file with a different systemid is refused.
func (s *Server) WriteIdentity(ctx context.Context) (*catalog.Identity, error) {
	id, err := s.fetchIdentity(ctx)
	if err != nil {
		return nil, err
	}
	old, err := s.ReadIdentity()
	if err != nil {
		return nil, err
	}
	if old != nil {
		if old.SystemID != id.SystemID {
			return nil, fmt.Errorf("server %s: system identifier %s does not match identity.json (%s): %w", s.name, id.SystemID, old.SystemID, ErrSystemIDMismatch)
		}
		if *old == id {
			return old, nil
		}
	}
	if err := s.layout.MakeDirs(); err != nil {
		return nil, err
	}
	if err := catalog.WriteIdentity(s.layout, id); err != nil {
		return nil, fmt.Errorf("server %s: %w", s.name, err)
	}
	return &id, nil
}

// ErrSystemIDMismatch means PostgreSQL is not the cluster this catalog
// belongs to.
var ErrSystemIDMismatch = errors.New("system identifier mismatch")

// SystemID returns the server's system identifier, through the normal
// connection when possible, else the streaming one (seed systemid).
func (s *Server) SystemID(ctx context.Context) (string, error) {
	id, err := s.fetchIdentity(ctx)
	if err != nil {
		return "", err
	}
	return id.SystemID, nil
}

func (s *Server) fetchIdentity(ctx context.Context) (catalog.Identity, error) {
	var errs []error
	if s.cfg.Conninfo.IsSet() {
		st, err := s.Status(ctx)
		if err == nil && st.SystemID != "" {
			return catalog.Identity{SystemID: st.SystemID, Version: st.MajorVersion()}, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if s.cfg.StreamingConninfo.IsSet() {
		rc, err := s.ConnectReplication(ctx, "")
		if err == nil {
			defer rc.Close(context.WithoutCancel(ctx))
			si, err := rc.IdentifySystem(ctx)
			if err == nil {
				return catalog.Identity{SystemID: si.SystemID, Version: rc.MajorVersion()}, nil
			}
			errs = append(errs, err)
		} else {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return catalog.Identity{}, fmt.Errorf("server %s: no connection configured to read the system identifier", s.name)
	}
	return catalog.Identity{}, errors.Join(errs...)
}

// RemoteStatus returns PostgreSQL's status as Barman-style keys for
// show-servers and status; connection problems are reported in the map
// rather than failing, as Barman does.
func (s *Server) RemoteStatus(ctx context.Context) map[string]any {
	st, err := s.Status(ctx)
	if err != nil {
		return map[string]any{"connection_error": err.Error()}
	}
	m := map[string]any{
		"server_txt_version":               st.ServerVersionText,
		"version":                          st.ServerVersion,
		"wal_level":                        st.WALLevel,
		"archive_mode":                     st.ArchiveMode,
		"archive_command":                  st.ArchiveCommand,
		"is_in_recovery":                   st.IsInRecovery,
		"is_superuser":                     st.IsSuperuser,
		"has_backup_privileges":            st.HasBackupPrivileges,
		"systemid":                         st.SystemID,
		"current_lsn":                      st.CurrentLSN.String(),
		"current_xlog":                     st.CurrentWAL,
		"data_directory":                   st.DataDirectory,
		"config_file":                      st.ConfigFile,
		"hba_file":                         st.HBAFile,
		"ident_file":                       st.IdentFile,
		"xlog_segment_size":                st.WALSegmentSize,
		"data_checksums":                   st.DataChecksums,
		"max_wal_senders":                  st.MaxWALSenders,
		"max_replication_slots":            st.MaxReplicationSlots,
		"synchronous_standby_names":        st.SynchronousStandbyNames,
		"is_archiving":                     st.Archiver.IsArchiving,
		"failed_count":                     st.Archiver.FailedCount,
		"last_archived_wal":                st.Archiver.LastArchivedWAL,
		"last_failed_wal":                  st.Archiver.LastFailedWAL,
		"current_archived_wals_per_second": st.Archiver.CurrentArchivedWALsPerSecond,
	}
	if st.Archiver.LastArchivedTime != nil {
		m["last_archived_time"] = st.Archiver.LastArchivedTime.Format(time.RFC3339)
	}
	if st.Archiver.LastFailedTime != nil {
		m["last_failed_time"] = st.Archiver.LastFailedTime.Format(time.RFC3339)
	}
	return m
}
