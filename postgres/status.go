package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/wal"
)

// Status is a snapshot of what Cellar needs to know about a server: the
// facts behind `check`, `status`, `show-servers` and backup pre-flight.
// Values the connected role may not read are left at their zero value
// (settings hidden by privileges, pg_control_system() without grants).
type Status struct {
	ServerVersion     int    // server_version_num, e.g. 150018
	ServerVersionText string // server_version's first word, e.g. "15.18"

	IsSuperuser bool
	// HasBackupPrivileges: superuser, or monitoring privileges plus EXECUTE
	// on the backup start/stop functions, pg_switch_wal and
	// pg_create_restore_point (Barman's "superuser or standard user with
	// backup privileges").
	HasBackupPrivileges bool
	// HasMonitoringPrivileges: superuser, pg_monitor, or both
	// pg_read_all_settings and pg_read_all_stats.
	HasMonitoringPrivileges bool
	// HasReplication: the role may open replication connections
	// (rolreplication or superuser).
	HasReplication bool
	// CanCheckpoint: superuser or member of pg_checkpoint (PG15+), as
	// `switch-wal --force` needs.
	CanCheckpoint bool

	WALLevel       string
	ArchiveMode    string
	ArchiveCommand string
	ArchiveTimeout time.Duration

	IsInRecovery bool
	SystemID     string  // decimal, as IDENTIFY_SYSTEM reports it
	CurrentLSN   wal.LSN // pg_current_wal_lsn(), or pg_last_wal_replay_lsn() on a standby
	CurrentWAL   string  // pg_walfile_name(CurrentLSN); "" on a standby
	Timeline     uint32  // timeline of CurrentWAL (primary only; 0 when unknown)

	DataDirectory string
	ConfigFile    string
	HBAFile       string
	IdentFile     string

	WALSegmentSize          uint64
	DataChecksums           bool
	MaxWALSenders           int
	MaxReplicationSlots     int
	SynchronousStandbyNames string

	Tablespaces []Tablespace
	Archiver    ArchiverStats
}

// MajorVersion is the major version as text ("15", or "9.6" before 10), as
// Barman writes it into identity.json.
func (s *Status) MajorVersion() string {
	return majorVersion(s.ServerVersion)
}

func majorVersion(v int) string {
	if v >= 100000 {
		return strconv.Itoa(v / 10000)
	}
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/10000, v/100%100)
}

// Tablespace is a user tablespace (pg_default and pg_global excluded).
type Tablespace struct {
	Name     string
	OID      uint32
	Location string
}

// ArchiverStats is pg_stat_archiver plus Barman's derived values.
type ArchiverStats struct {
	ArchivedCount    int64
	LastArchivedWAL  string
	LastArchivedTime *time.Time
	FailedCount      int64
	LastFailedWAL    string
	LastFailedTime   *time.Time
	StatsReset       *time.Time
	// IsArchiving: archive_mode is on/always and no failure happened after
	// the last success. A failed .history file of an older timeline than
	// the last archived WAL is ignored (Barman: get_archiver_stats).
	IsArchiving bool
	// CurrentArchivedWALsPerSecond is ArchivedCount over the time since
	// StatsReset (0 when there is no reset time).
	CurrentArchivedWALsPerSecond float64
}

// statusSettings are read from pg_settings, which silently omits settings
// the role may not see instead of failing like current_setting().
var statusSettings = []string{
	"server_version", "server_version_num", "wal_level", "archive_mode", "archive_command",
	"archive_timeout", "data_directory", "config_file", "hba_file", "ident_file",
	"wal_segment_size", "data_checksums", "max_wal_senders", "max_replication_slots",
	"synchronous_standby_names",
}

type setting struct {
	value string
	unit  string
}

// Status reads the server status. It fails only when the server cannot be
// queried at all (connection lost, version unreadable); anything the role
// lacks privileges for is left empty.
func (c *Conn) Status(ctx context.Context) (*Status, error) {
	settings, err := c.settings(ctx, statusSettings)
	if err != nil {
		return nil, err
	}
	s := &Status{}
	s.ServerVersion, err = strconv.Atoi(settings["server_version_num"].value)
	if err != nil {
		return nil, c.wrap("server_version_num", fmt.Errorf("unreadable %q: %w", settings["server_version_num"].value, err))
	}
	c.version = s.ServerVersion
	if f := strings.Fields(settings["server_version"].value); len(f) > 0 {
		s.ServerVersionText = f[0]
	}
	s.WALLevel = settings["wal_level"].value
	s.ArchiveMode = settings["archive_mode"].value
	s.ArchiveCommand = settings["archive_command"].value
	if v, ok := settings["archive_timeout"]; ok {
		n, _ := strconv.ParseInt(v.value, 10, 64)
		s.ArchiveTimeout = time.Duration(n) * unitDuration(v.unit)
	}
	s.DataDirectory = settings["data_directory"].value
	s.ConfigFile = settings["config_file"].value
	s.HBAFile = settings["hba_file"].value
	s.IdentFile = settings["ident_file"].value
	if v, ok := settings["wal_segment_size"]; ok {
		n, _ := strconv.ParseUint(v.value, 10, 64)
		s.WALSegmentSize = n * unitBytes(v.unit)
	}
	s.DataChecksums = settings["data_checksums"].value == "on"
	s.MaxWALSenders, _ = strconv.Atoi(settings["max_wal_senders"].value)
	s.MaxReplicationSlots, _ = strconv.Atoi(settings["max_replication_slots"].value)
	s.SynchronousStandbyNames = settings["synchronous_standby_names"].value

	if err := c.privileges(ctx, s); err != nil {
		return nil, err
	}
	if err := c.recoveryAndWAL(ctx, s); err != nil {
		return nil, err
	}
	// pg_control_system() is not executable by every role; a missing
	// system id is reported as empty (checks say "unknown").
	var sysid *string
	err = c.conn.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&sysid)
	if err != nil && !isPrivilegeError(err) {
		return nil, c.wrap("read system identifier", err)
	}
	if sysid != nil {
		s.SystemID = *sysid
	}
	if s.Tablespaces, err = c.Tablespaces(ctx); err != nil {
		return nil, err
	}
	if s.Archiver, err = c.ArchiverStats(ctx, s.ArchiveMode); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *Conn) settings(ctx context.Context, names []string) (map[string]setting, error) {
	rows, err := c.conn.Query(ctx, "SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name = ANY($1)", names)
	if err != nil {
		return nil, c.wrap("read pg_settings", err)
	}
	out := make(map[string]setting, len(names))
	var name string
	var st setting
	_, err = pgx.ForEachRow(rows, []any{&name, &st.value, &st.unit}, func() error {
		out[name] = st
		return nil
	})
	if err != nil {
		return nil, c.wrap("read pg_settings", err)
	}
	return out, nil
}

// unitBytes converts a pg_settings memory unit ("B", "kB", "8kB", "MB") to
// bytes.
func unitBytes(unit string) uint64 {
	mult := uint64(1)
	num := strings.TrimRight(unit, "kMGTB")
	if num != "" {
		n, err := strconv.ParseUint(num, 10, 64)
		if err == nil {
			mult = n
		}
	}
	switch strings.TrimLeft(unit, "0123456789") {
	case "kB":
		return mult << 10
	case "MB":
		return mult << 20
	case "GB":
		return mult << 30
	case "TB":
		return mult << 40
	default:
		return mult
	}
}

// unitDuration converts a pg_settings time unit to a Duration.
func unitDuration(unit string) time.Duration {
	switch unit {
	case "us":
		return time.Microsecond
	case "ms":
		return time.Millisecond
	case "min":
		return time.Minute
	case "h":
		return time.Hour
	case "d":
		return 24 * time.Hour
	default:
		return time.Second
	}
}

func (c *Conn) privileges(ctx context.Context, s *Status) error {
	start, stop := "pg_backup_start(text, boolean)", "pg_backup_stop(boolean)"
	if s.ServerVersion < 150000 {
		start, stop = "pg_start_backup(text, boolean, boolean)", "pg_stop_backup(boolean, boolean)"
	}
	switchFn := "pg_switch_wal()"
	if s.ServerVersion < 100000 {
		switchFn = "pg_switch_xlog()"
	}
	checkpointRole := "false"
	if s.ServerVersion >= 150000 {
		checkpointRole = "pg_has_role(current_user, 'pg_checkpoint', 'MEMBER')"
	}
	// Predefined monitoring roles exist from PG10; before that only a
	// superuser qualifies.
	monitor := "false"
	if s.ServerVersion >= 100000 {
		monitor = `(pg_has_role(current_user, 'pg_monitor', 'MEMBER')
		   OR (pg_has_role(current_user, 'pg_read_all_settings', 'MEMBER')
		       AND pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')))`
	}
	q := fmt.Sprintf(`SELECT r.rolsuper,
		r.rolsuper OR r.rolreplication,
		r.rolsuper OR %[1]s,
		r.rolsuper OR (%[1]s
			AND has_function_privilege(current_user, '%[2]s', 'EXECUTE')
			AND has_function_privilege(current_user, '%[3]s', 'EXECUTE')
			AND has_function_privilege(current_user, '%[4]s', 'EXECUTE')
			AND has_function_privilege(current_user, 'pg_create_restore_point(text)', 'EXECUTE')),
		r.rolsuper OR %[5]s
		FROM pg_roles r WHERE r.rolname = current_user`, monitor, start, stop, switchFn, checkpointRole)
	err := c.conn.QueryRow(ctx, q).Scan(&s.IsSuperuser, &s.HasReplication, &s.HasMonitoringPrivileges,
		&s.HasBackupPrivileges, &s.CanCheckpoint)
	if err != nil {
		return c.wrap("read role privileges", err)
	}
	return nil
}

func (c *Conn) recoveryAndWAL(ctx context.Context, s *Status) error {
	if err := c.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&s.IsInRecovery); err != nil {
		return c.wrap("pg_is_in_recovery", err)
	}
	if s.ServerVersion < 100000 {
		return nil // xlog-era function names: LSN left unknown
	}
	var lsn, name *string
	var err error
	if s.IsInRecovery {
		err = c.conn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&lsn)
	} else {
		err = c.conn.QueryRow(ctx, "SELECT l::text, pg_walfile_name(l) FROM pg_current_wal_lsn() AS l").Scan(&lsn, &name)
	}
	if err != nil {
		return c.wrap("read current WAL position", err)
	}
	if lsn != nil {
		if s.CurrentLSN, err = wal.ParseLSN(*lsn); err != nil {
			return c.wrap("current WAL position", err)
		}
	}
	if name != nil {
		s.CurrentWAL = *name
		if len(s.CurrentWAL) >= 8 {
			tli, err := strconv.ParseUint(s.CurrentWAL[:8], 16, 32)
			if err == nil {
				s.Timeline = uint32(tli)
			}
		}
	}
	return nil
}

// Tablespaces lists user tablespaces ordered by OID.
func (c *Conn) Tablespaces(ctx context.Context) ([]Tablespace, error) {
	rows, err := c.conn.Query(ctx, `SELECT spcname::text, oid::int8, pg_tablespace_location(oid)
		FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`)
	if err != nil {
		return nil, c.wrap("list tablespaces", err)
	}
	var out []Tablespace
	var ts Tablespace
	var oid int64
	_, err = pgx.ForEachRow(rows, []any{&ts.Name, &oid, &ts.Location}, func() error {
		ts.OID = uint32(oid)
		out = append(out, ts)
		return nil
	})
	if err != nil {
		return nil, c.wrap("list tablespaces", err)
	}
	return out, nil
}

// ArchiverStats reads pg_stat_archiver. archiveMode (the archive_mode
// setting) decides IsArchiving; pass Status.ArchiveMode.
func (c *Conn) ArchiverStats(ctx context.Context, archiveMode string) (ArchiverStats, error) {
	var a ArchiverStats
	var lastArchived, lastFailed *string
	var age *float64
	err := c.conn.QueryRow(ctx, `SELECT archived_count, last_archived_wal, last_archived_time,
		failed_count, last_failed_wal, last_failed_time, stats_reset,
		extract(epoch FROM now() - stats_reset)::float8
		FROM pg_stat_archiver`).Scan(&a.ArchivedCount, &lastArchived, &a.LastArchivedTime,
		&a.FailedCount, &lastFailed, &a.LastFailedTime, &a.StatsReset, &age)
	if err != nil {
		return a, c.wrap("read pg_stat_archiver", err)
	}
	if lastArchived != nil {
		a.LastArchivedWAL = *lastArchived
	}
	if lastFailed != nil {
		a.LastFailedWAL = *lastFailed
	}
	a.IsArchiving = isArchiving(archiveMode, a)
	if age != nil && *age > 0 {
		a.CurrentArchivedWALsPerSecond = float64(a.ArchivedCount) / *age
	}
	return a, nil
}

// isArchiving mirrors Barman's derived is_archiving column: archiving is on
// and the last failure (if any) is not newer than the last success, where a
// failed .history file whose timeline is not after the last archived WAL's
// does not count.
func isArchiving(mode string, a ArchiverStats) bool {
	if mode != "on" && mode != "always" {
		return false
	}
	if a.LastFailedWAL == "" {
		return true
	}
	if strings.HasSuffix(a.LastFailedWAL, ".history") && len(a.LastFailedWAL) >= 8 &&
		len(a.LastArchivedWAL) >= 8 && a.LastFailedWAL[:8] <= a.LastArchivedWAL[:8] {
		return true
	}
	return a.LastFailedTime != nil && a.LastArchivedTime != nil && !a.LastFailedTime.After(*a.LastArchivedTime)
}

// isPrivilegeError reports SQLSTATE 42501 (insufficient_privilege).
func isPrivilegeError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

// MajorVersion is the server's major version as text ("15").
func (c *Conn) MajorVersion() string { return majorVersion(c.version) }
