package checks

import (
	"context"
	"errors"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/wal"
)

// ErrNotConfigured is returned by a Target method asked about a connection
// the server's configuration does not have (for example PrimaryStatus with no
// primary_conninfo). Probes check it with errors.Is and then produce no
// result.
var ErrNotConfigured = errors.New("not configured")

// Target is everything a probe may look at for one server. *server.Server
// implements it; checks never imports server. Every method returns plain
// data, is free of side effects and may be called concurrently. Methods
// taking a context may block on PostgreSQL; Registry.Run calls each of them
// at most once per run (results are shared between probes), so
// implementations need not cache.
type Target interface {
	// Name is the configured server name.
	Name() string
	// Config is the server's validated configuration (never nil).
	Config() *config.Server
	// Directories are the server's catalog paths (catalog.Layout).
	Directories() Directories
	// Now is the clock the age checks use.
	Now() time.Time

	// PostgresStatus queries the server through conninfo. An error means
	// PostgreSQL could not be reached or its version read.
	PostgresStatus(ctx context.Context) (*PGStatus, error)
	// StreamingStatus runs IDENTIFY_SYSTEM through streaming_conninfo.
	// ErrNotConfigured when there is no streaming connection.
	StreamingStatus(ctx context.Context) (*StreamingStatus, error)
	// WALPostgresStatus and WALStreamingStatus are the same through
	// wal_conninfo / wal_streaming_conninfo. ErrNotConfigured unless those
	// resolve to something other than conninfo / streaming_conninfo.
	WALPostgresStatus(ctx context.Context) (*PGStatus, error)
	WALStreamingStatus(ctx context.Context) (*StreamingStatus, error)
	// PrimaryStatus queries primary_conninfo (ErrNotConfigured without it).
	PrimaryStatus(ctx context.Context) (*PGStatus, error)

	// Backups returns every backup of the catalog (any status), oldest
	// first.
	Backups(ctx context.Context) ([]Backup, error)
	// WALs calls fn for each xlog.db entry in archival order; a non-nil
	// error from fn stops the scan and is returned. A missing xlog.db is
	// an empty archive, not an error.
	WALs(ctx context.Context, fn func(WAL) error) error
	// Identity reads identity.json; (nil, nil) when the file is absent.
	Identity() (*Identity, error)
	// ReceiveWAL reports whether a live process holds the server's
	// receive-wal lock (.<server>-receive-wal.lock) and its PID.
	ReceiveWAL() (pid int, running bool, err error)

	// Passive asks the primary node over primary_ssh_command whether it
	// answers, and reads how far this passive copy trails it.
	// ErrNotConfigured for a server without primary_ssh_command. Failures
	// to reach the primary are reported in PassiveStatus.PrimaryErr, not
	// as the error, so the lag is still known.
	Passive(ctx context.Context) (*PassiveStatus, error)
}

// PassiveStatus is what a passive node (primary_ssh_command set) knows
// about its primary.
type PassiveStatus struct {
	// PrimaryErr is nil when the primary answered over
	// primary_ssh_command, else why it did not.
	PrimaryErr error
	// LagKnown is false until a sync has recorded the primary's state
	// (primary.info); the lag fields are zero then.
	LagKnown bool
	// LagSeconds and LagSegments measure how far the local copy trails
	// the primary as of the last sync-info answer (passive.Lag).
	LagSeconds  float64
	LagSegments int64
}

// Directories are the server's catalog paths, as catalog.Layout resolves
// them from backup_directory.
type Directories struct {
	Backup    string // <bd>
	Base      string // <bd>/base
	Wals      string // <bd>/wals
	Incoming  string // <bd>/incoming
	Streaming string // <bd>/streaming
	Errors    string // <bd>/errors
	Meta      string // <bd>/meta
	XLogDB    string // <bd>/wals/<server>-xlog.db
	// DefaultFormat is the catalog format of a new, empty catalog
	// (barman_compatibility); see catalog.Layout.DefaultFormat.
	DefaultFormat catalog.Format
}

// All lists the `*_directory` paths the `directories` check verifies, in a
// stable order.
func (d Directories) All() []string {
	return []string{d.Backup, d.Base, d.Wals, d.Incoming, d.Streaming, d.Errors, d.Meta}
}

// PGStatus is what probes need to know about one PostgreSQL connection. The
// server fills it from postgres.Status; values the role may not read stay
// at their zero value.
type PGStatus struct {
	ServerVersion     int    // server_version_num, e.g. 150018
	ServerVersionText string // e.g. "15.18"

	IsSuperuser             bool
	HasBackupPrivileges     bool
	HasMonitoringPrivileges bool

	WALLevel       string // "" when unreadable (Barman: a null value passes)
	ArchiveMode    string // "" when unreadable
	ArchiveCommand string

	IsInRecovery   bool
	SystemID       string // decimal; "" when unreadable
	CurrentLSN     wal.LSN
	WALSegmentSize uint64
	// SummarizeWAL is summarize_wal ("on"/"off"; "" before PostgreSQL 17).
	SummarizeWAL string

	Archiver ArchiverStats

	// Slot is slot_name's state; nil when slot_name is unset or the slot
	// does not exist (SlotChecked tells which).
	Slot        *ReplicationSlot
	SlotChecked bool

	// ReceiverFlushLSN is the flush position pg_stat_replication shows for
	// Cellar's receive-wal (application_name = streaming_archiver_name);
	// nil when it is not connected.
	ReceiverFlushLSN *wal.LSN
}

// ArchiverStats is pg_stat_archiver with Barman's derived IsArchiving.
type ArchiverStats struct {
	ArchivedCount    int64
	LastArchivedWAL  string
	LastArchivedTime time.Time // zero when never
	FailedCount      int64
	LastFailedWAL    string
	LastFailedTime   time.Time // zero when never
	// IsArchiving: archive_mode on/always and no failure newer than the
	// last success (older-timeline .history failures ignored).
	IsArchiving bool
}

// ReplicationSlot is a row of pg_replication_slots.
type ReplicationSlot struct {
	Name       string
	Active     bool
	RestartLSN *wal.LSN // nil when not initialised
}

// StreamingStatus is the answer to IDENTIFY_SYSTEM on a replication
// connection.
type StreamingStatus struct {
	SystemID      string
	Timeline      uint32
	XLogPos       wal.LSN
	ServerVersion int
}

// Identity is identity.json.
type Identity struct {
	SystemID string
	Version  string // major version, e.g. "15"
}

// Backup is the part of backup.info the probes read.
type Backup struct {
	ID        string
	Status    string // EMPTY, STARTED, WAITING_FOR_WALS, DONE, FAILED, SYNCING, or DELETING (shown)
	BeginTime time.Time
	EndTime   time.Time // zero when unknown
	Size      int64
	BeginWAL  string
	EndWAL    string
	Timeline  uint32
	ParentID  string // set for incremental backups
	// WALSegmentSize is xlog_segment_size (0 = 16 MiB).
	WALSegmentSize uint64
}

// Available reports whether the backup counts for "latest backup" (Barman's
// default filter: WAITING_FOR_WALS or DONE).
func (b *Backup) Available() bool { return b.Status == StatusDone || b.Status == StatusWaitingForWALs }

// Backup statuses (catalog.BackupStatus spelling).
const (
	StatusEmpty          = "EMPTY"
	StatusStarted        = "STARTED"
	StatusWaitingForWALs = "WAITING_FOR_WALS"
	StatusDone           = "DONE"
	StatusFailed         = "FAILED"
	StatusSyncing        = "SYNCING"
	// StatusDeleting is shown (never stored) for a backup with a
	// delete_this marker: an interrupted delete that cron or the daemon
	// finishes. It is not available.
	StatusDeleting = "DELETING"
)

// BackupStatuses lists every status, for gauges exported at 0.
func BackupStatuses() []string {
	return []string{StatusEmpty, StatusStarted, StatusWaitingForWALs, StatusDone, StatusFailed, StatusSyncing, StatusDeleting}
}

// WAL is one xlog.db entry.
type WAL struct {
	Name string
	Size int64     // stored bytes
	Time time.Time // original mtime
}
