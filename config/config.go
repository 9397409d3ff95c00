// Package config loads and validates Cellar's configuration: a YAML file
// (config.yaml) whose option names and defaults are Barman's
// (barman/config.py), layered with CELLAR_* environment variables and
// command-line flags through koanf. It also converts a barman.conf INI file
// into that YAML (ImportBarmanINI).
//
// Load returns a fully defaulted, validated *Config or every problem at
// once (errors.Join of *Error). Downstream packages receive only values
// taken from a Config that Load returned; they never see koanf.
package config

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults that differ from, or are not part of, Barman.
const (
	DefaultBarmanHome       = "/var/lib/cellar"
	DefaultListenAddress    = "127.0.0.1:9533"
	DefaultScrapeTimeout    = 10 * time.Second
	DefaultMinProbeInterval = 15 * time.Second
	DefaultArchiveInterval  = 10 * time.Second
	DefaultCheckBackupEvery = 60 * time.Second
	DefaultRetentionEvery   = 5 * time.Minute
	DefaultCheckTimeout     = 30 * time.Second
	DefaultKeepalive        = 60 * time.Second
	DefaultStreamingName    = "barman_receive_wal"
	DefaultStreamingBackup  = "barman_streaming_backup"
	DefaultBasebackupSleep  = 30 * time.Second
	// DefaultVerifyMaxAge leaves a day of slack over a weekly
	// verify_backup_schedule before the verification check warns.
	DefaultVerifyMaxAge = 8 * 24 * time.Hour
)

// ScheduleOff, as a server's verify_backup_schedule, turns off a schedule
// inherited from the global section.
const ScheduleOff = "off"

// Config is the whole validated configuration.
type Config struct {
	Global  Global
	Servers map[string]*Server
	// File is the main configuration file Load read ("" when none).
	File string
	// Warnings are non-fatal notes (for example the archiver being forced
	// on); the caller logs them.
	Warnings []string
}

// Global is the `global:` section (Barman's [barman]).
type Global struct {
	BarmanHome                  string    `koanf:"barman_home"`
	BarmanLockDirectory         string    `koanf:"barman_lock_directory"`
	LockDirectoryCleanup        bool      `koanf:"lock_directory_cleanup"`
	LogFile                     string    `koanf:"log_file"`
	LogLevel                    LogLevel  `koanf:"log_level"`
	LogFormat                   LogFormat `koanf:"log_format"`
	ConfigurationFilesDirectory string    `koanf:"configuration_files_directory"`
	// VerifyBackupSchedule and VerifyBackupMaxAge are the defaults of the
	// server options of the same names.
	VerifyBackupSchedule string        `koanf:"verify_backup_schedule"`
	VerifyBackupMaxAge   time.Duration `koanf:"verify_backup_max_age"`
	// BarmanCompatibility is the Barman catalog format ("3.4" or "3.17")
	// written to a new, empty catalog; an existing catalog keeps the
	// format found on disk. Empty means the newest.
	BarmanCompatibility string `koanf:"barman_compatibility"`
	Web                 Web    `koanf:"web"`
	Daemon              Daemon `koanf:"daemon"`
}

// Web is `global.web`: the exporter's HTTP endpoint.
type Web struct {
	ListenAddress string `koanf:"listen_address"`
	// ConfigFile is an exporter-toolkit web configuration (TLS, basic auth).
	ConfigFile string `koanf:"config_file"`
	// ScrapeTimeout bounds one /metrics collection.
	ScrapeTimeout time.Duration `koanf:"scrape_timeout"`
	// MinProbeInterval: probe results younger than this are served from cache.
	MinProbeInterval time.Duration `koanf:"min_probe_interval"`
}

// Daemon is `global.daemon`: intervals of the in-process job runner.
type Daemon struct {
	// ArchiveInterval is the fallback period of archive-wal (incoming/ is
	// also watched).
	ArchiveInterval     time.Duration `koanf:"archive_interval"`
	CheckBackupInterval time.Duration `koanf:"check_backup_interval"`
	RetentionInterval   time.Duration `koanf:"retention_interval"`
}

// Hooks are Barman's pre/post scripts, carried as command strings.
type Hooks struct {
	PreArchiveScript         string `koanf:"pre_archive_script"`
	PreArchiveRetryScript    string `koanf:"pre_archive_retry_script"`
	PostArchiveScript        string `koanf:"post_archive_script"`
	PostArchiveRetryScript   string `koanf:"post_archive_retry_script"`
	PreBackupScript          string `koanf:"pre_backup_script"`
	PreBackupRetryScript     string `koanf:"pre_backup_retry_script"`
	PostBackupScript         string `koanf:"post_backup_script"`
	PostBackupRetryScript    string `koanf:"post_backup_retry_script"`
	PreDeleteScript          string `koanf:"pre_delete_script"`
	PreDeleteRetryScript     string `koanf:"pre_delete_retry_script"`
	PostDeleteScript         string `koanf:"post_delete_script"`
	PostDeleteRetryScript    string `koanf:"post_delete_retry_script"`
	PreRecoveryScript        string `koanf:"pre_recovery_script"`
	PreRecoveryRetryScript   string `koanf:"pre_recovery_retry_script"`
	PostRecoveryScript       string `koanf:"post_recovery_script"`
	PostRecoveryRetryScript  string `koanf:"post_recovery_retry_script"`
	PreWALDeleteScript       string `koanf:"pre_wal_delete_script"`
	PreWALDeleteRetryScript  string `koanf:"pre_wal_delete_retry_script"`
	PostWALDeleteScript      string `koanf:"post_wal_delete_script"`
	PostWALDeleteRetryScript string `koanf:"post_wal_delete_retry_script"`
}

// Server is one `servers.<name>:` section, with Barman's option names.
// Load fills every default; zero values below mean "unset" only where the
// comment says so.
type Server struct {
	// Name is the map key (Barman's section name).
	Name        string `koanf:"-"`
	Description string `koanf:"description"`
	// Active false keeps the server configured but skipped by cron/daemon.
	Active bool `koanf:"active"`

	Conninfo             Conninfo `koanf:"conninfo"`
	StreamingConninfo    Conninfo `koanf:"streaming_conninfo"` // default: conninfo
	WALConninfo          Conninfo `koanf:"wal_conninfo"`
	WALStreamingConninfo Conninfo `koanf:"wal_streaming_conninfo"`
	PrimaryConninfo      Conninfo `koanf:"primary_conninfo"`
	// PrimarySSHCommand makes the server passive (see IsPassive).
	PrimarySSHCommand        string        `koanf:"primary_ssh_command"`
	PrimaryCheckpointTimeout time.Duration `koanf:"primary_checkpoint_timeout"` // 0 = off
	ForwardConfigPath        bool          `koanf:"forward_config_path"`

	BackupMethod           BackupMethod      `koanf:"backup_method"`
	BackupDirectory        string            `koanf:"backup_directory"` // default <barman_home>/<name>
	BackupCompression      BackupCompression `koanf:"backup_compression"`
	BackupCompressionLevel int               `koanf:"backup_compression_level"` // 0 = codec default
	// BackupSchedule is a cron expression for the daemon ("" = no
	// scheduled backups).
	BackupSchedule string `koanf:"backup_schedule"`
	// VerifyBackupSchedule is a cron expression on which the daemon
	// verifies the server's backups against their manifests ("" = no
	// scheduled verification). Unset takes the global value; "off" turns
	// an inherited schedule off (Load leaves "" then).
	VerifyBackupSchedule string `koanf:"verify_backup_schedule"`
	// VerifyBackupMaxAge: the backup verification check warns when the
	// newest DONE backup was last verified longer ago. Unset (0) takes the
	// global value.
	VerifyBackupMaxAge   time.Duration `koanf:"verify_backup_max_age"`
	ImmediateCheckpoint  bool          `koanf:"immediate_checkpoint"`
	ReuseBackup          ReuseBackup   `koanf:"reuse_backup"`
	BandwidthLimit       int           `koanf:"bandwidth_limit"` // KB/s, 0 = unlimited
	ParallelJobs         int           `koanf:"parallel_jobs"`
	BasebackupRetryTimes int           `koanf:"basebackup_retry_times"`
	BasebackupRetrySleep time.Duration `koanf:"basebackup_retry_sleep"`
	KeepaliveInterval    time.Duration `koanf:"keepalive_interval"`

	Archiver                   bool             `koanf:"archiver"`
	StreamingArchiver          bool             `koanf:"streaming_archiver"`
	ArchiverBatchSize          int              `koanf:"archiver_batch_size"` // 0 = unlimited
	StreamingArchiverBatchSize int              `koanf:"streaming_archiver_batch_size"`
	StreamingArchiverName      string           `koanf:"streaming_archiver_name"`
	StreamingBackupName        string           `koanf:"streaming_backup_name"`
	SlotName                   string           `koanf:"slot_name"`
	CreateSlot                 CreateSlot       `koanf:"create_slot"`
	Compression                Compression      `koanf:"compression"`
	CompressionLevel           CompressionLevel `koanf:"compression_level"`
	MaxIncomingWALsQueue       int              `koanf:"max_incoming_wals_queue"` // 0 = unset

	RetentionPolicy     RetentionPolicy     `koanf:"retention_policy"` // zero = not set
	RetentionPolicyMode RetentionPolicyMode `koanf:"retention_policy_mode"`
	WALRetentionPolicy  WALRetentionPolicy  `koanf:"wal_retention_policy"`
	MinimumRedundancy   int                 `koanf:"minimum_redundancy"`

	LastBackupMaximumAge  time.Duration `koanf:"last_backup_maximum_age"` // 0 = unset
	LastWALMaximumAge     time.Duration `koanf:"last_wal_maximum_age"`    // 0 = unset
	LastBackupMinimumSize Size          `koanf:"last_backup_minimum_size"`
	CheckTimeout          time.Duration `koanf:"check_timeout"`

	PathPrefix      string          `koanf:"path_prefix"`
	RecoveryOptions RecoveryOptions `koanf:"recovery_options"`
	StagingPath     string          `koanf:"staging_path"` // "" = system temp dir at restore

	// Restore drills (cellar drill): where the scratch restore goes ("" =
	// system temp dir), the server binaries ("" = found automatically;
	// "{major}" is replaced by the backup's major version), the user SQL
	// checks ("" = none), how many drill records are kept (0 = 20) and the
	// age after which the drill probe fails (0 = unset).
	RestoreDrillDirectory       string        `koanf:"restore_drill_directory"`
	RestoreDrillBinDirectory    string        `koanf:"restore_drill_bin_directory"`
	RestoreDrillChecksDirectory string        `koanf:"restore_drill_checks_directory"`
	RestoreDrillKeep            int           `koanf:"restore_drill_keep"`
	LastDrillMaximumAge         time.Duration `koanf:"last_drill_maximum_age"`

	Hooks
}

// DefaultGlobal returns the global section with every default applied.
func DefaultGlobal() Global {
	return Global{
		BarmanHome:           DefaultBarmanHome,
		LockDirectoryCleanup: true,
		LogLevel:             LogInfo,
		LogFormat:            LogFormatText,
		VerifyBackupMaxAge:   DefaultVerifyMaxAge,
		Web: Web{
			ListenAddress:    DefaultListenAddress,
			ScrapeTimeout:    DefaultScrapeTimeout,
			MinProbeInterval: DefaultMinProbeInterval,
		},
		Daemon: Daemon{
			ArchiveInterval:     DefaultArchiveInterval,
			CheckBackupInterval: DefaultCheckBackupEvery,
			RetentionInterval:   DefaultRetentionEvery,
		},
	}
}

// DefaultServer returns a server with Barman's defaults. The derived
// defaults (backup_directory, streaming_conninfo, archiver forced on) are
// applied by Load after all layers are merged.
func DefaultServer(name string) *Server {
	return &Server{
		Name:                  name,
		Active:                true,
		BackupMethod:          BackupMethodPostgres,
		BackupCompression:     BackupCompressionNone,
		ReuseBackup:           ReuseOff,
		ParallelJobs:          1,
		BasebackupRetrySleep:  DefaultBasebackupSleep,
		KeepaliveInterval:     DefaultKeepalive,
		StreamingArchiverName: DefaultStreamingName,
		StreamingBackupName:   DefaultStreamingBackup,
		CreateSlot:            CreateSlotManual,
		Compression:           CompressionNone,
		CompressionLevel:      CompressionLevelMedium,
		RetentionPolicyMode:   RetentionModeAuto,
		WALRetentionPolicy:    WALRetentionMain,
		CheckTimeout:          DefaultCheckTimeout,
	}
}

// ServerNames returns the configured server names, sorted.
func (c *Config) ServerNames() []string {
	names := make([]string, 0, len(c.Servers))
	for n := range c.Servers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Server returns the named server (inactive ones included), or an error
// wrapping ErrUnknownServer.
func (c *Config) Server(name string) (*Server, error) {
	if s, ok := c.Servers[name]; ok {
		return s, nil
	}
	known := strings.Join(c.ServerNames(), ", ")
	if known == "" {
		known = "none"
	}
	return nil, fmt.Errorf("server %q: %w (configured: %s)", name, ErrUnknownServer, known)
}

// IsPassive reports whether the server is a passive node (Barman: primary_ssh_command set).
func (s *Server) IsPassive() bool { return strings.TrimSpace(s.PrimarySSHCommand) != "" }

// LockDirectory returns the directory holding the lock files.
func (g *Global) LockDirectory() string {
	if g.BarmanLockDirectory != "" {
		return g.BarmanLockDirectory
	}
	return g.BarmanHome
}

// SlogLevel maps LogLevel to slog (CRITICAL has no slog level: it becomes
// above Error).
func (l LogLevel) SlogLevel() slog.Level {
	switch l {
	case LogDebug:
		return slog.LevelDebug
	case LogWarning:
		return slog.LevelWarn
	case LogError:
		return slog.LevelError
	case LogCritical:
		return slog.LevelError + 4
	}
	return slog.LevelInfo
}

// Option is one key and its display value.
type Option struct {
	Key   string
	Value any
}

// Options returns every option of the server with its effective value,
// sorted by key, secrets redacted; for `show-servers`.
func (s *Server) Options() []Option {
	m := s.Redacted()
	out := make([]Option, 0, len(m))
	for k, v := range m {
		out = append(out, Option{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b Option) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Redacted returns the server's options as a map of display values (bool,
// int, int64 or string; durations as Go strings like "30s"), including
// `name`, with secrets redacted. encoding/json prints it with sorted keys.
func (s *Server) Redacted() map[string]any {
	m := encodeStruct(s, true)
	m["name"] = s.Name
	return m
}

// Redacted returns {"global": {...}, "servers": {name: {...}}} with secrets redacted.
func (c *Config) Redacted() map[string]any {
	servers := make(map[string]any, len(c.Servers))
	for n, s := range c.Servers {
		servers[n] = s.Redacted()
	}
	return map[string]any{"global": encodeStruct(&c.Global, true), "servers": servers}
}

// LogValue implements slog.LogValuer with the identifying options only
// (secrets redacted); log Redacted() for the full set.
func (s *Server) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", s.Name),
		slog.Bool("active", s.Active),
		slog.Bool("passive", s.IsPassive()),
		slog.String("conninfo", s.Conninfo.String()),
		slog.String("streaming_conninfo", s.StreamingConninfo.String()),
		slog.String("backup_directory", s.BackupDirectory),
	)
}

// cleanPath makes comparable directory paths for the uniqueness check.
func cleanPath(p string) string { return filepath.Clean(p) }
