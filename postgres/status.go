package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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

	WALSegmentSize uint64
	// SummarizeWAL is the summarize_wal setting (PostgreSQL 17+: "on" or
	// "off"; "" before 17), which incremental backups need on.
	SummarizeWAL            string
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
	"synchronous_standby_names", "summarize_wal",
}

type setting struct {
	value string
	unit  string
}

// Status reads the server status. It fails only when the server cannot be
// queried at all (connection lost, version unreadable); anything the role
// lacks privileges for is left empty.
func (c *Conn) Status(ctx context.Context) (*Status, error) {
	// Two round trips: the settings (the version decides the SQL of the
	// rest) with whether pg_control_system() may be called, then every
	// other query pipelined in one batch. A failing statement fails the
	// whole batch, so the system id is only asked for when allowed.
	var settings map[string]setting
	var canReadControl bool
	first := &pgx.Batch{}
	first.Queue(settingsQuery, statusSettings).Query(func(rows pgx.Rows) error {
		var err error
		settings, err = scanSettings(rows, len(statusSettings))
		return step("read pg_settings", err)
	})
	first.Queue(`SELECT coalesce((SELECT has_function_privilege(p.oid, 'EXECUTE') FROM pg_proc p
		WHERE p.proname = 'pg_control_system' AND p.pronamespace = 'pg_catalog'::regnamespace), false)`).QueryRow(func(row pgx.Row) error {
		return step("check access to pg_control_system", row.Scan(&canReadControl))
	})
	if err := c.sendBatch(ctx, first); err != nil {
		return nil, err
	}
	var err error
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
	s.SummarizeWAL = settings["summarize_wal"].value
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

	b := &pgx.Batch{}
	b.Queue(privilegesQuery(s.ServerVersion)).QueryRow(func(row pgx.Row) error {
		return step("read role privileges", row.Scan(&s.IsSuperuser, &s.HasReplication,
			&s.HasMonitoringPrivileges, &s.HasBackupPrivileges, &s.CanCheckpoint))
	})
	var lsn, walName *string
	b.Queue(recoveryQuery(s.ServerVersion)).QueryRow(func(row pgx.Row) error {
		return step("read recovery state and WAL position", row.Scan(&s.IsInRecovery, &lsn, &walName))
	})
	b.Queue(tablespacesQuery).Query(func(rows pgx.Rows) error {
		var err error
		s.Tablespaces, err = scanTablespaces(rows)
		return step("list tablespaces", err)
	})
	b.Queue(archiverQuery).QueryRow(func(row pgx.Row) error {
		var err error
		s.Archiver, err = scanArchiver(row, s.ArchiveMode)
		return step("read pg_stat_archiver", err)
	})
	// pg_control_system() is not executable by every role; a missing
	// system id is reported as empty (checks say "unknown").
	var sysid *string
	if canReadControl {
		b.Queue("SELECT system_identifier::text FROM pg_control_system()").QueryRow(func(row pgx.Row) error {
			return step("read system identifier", row.Scan(&sysid))
		})
	}
	if err := c.sendBatch(ctx, b); err != nil {
		return nil, err
	}
	if sysid != nil {
		s.SystemID = *sysid
	}
	if err := setWALPosition(s, lsn, walName); err != nil {
		return nil, c.wrap("current WAL position", err)
	}
	return s, nil
}

// stepError is a batch callback's failure with what it was reading.
type stepError struct {
	what string
	err  error
}

func (e *stepError) Error() string { return e.what + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// step names a batch callback's error (nil stays nil).
func step(what string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{what, err}
}

// sendBatch runs b and wraps its error like wrap: with what the failing
// callback was reading (step), else as a failure of the batch itself
// (connection lost).
func (c *Conn) sendBatch(ctx context.Context, b *pgx.Batch) error {
	err := c.conn.SendBatch(ctx, b).Close()
	var se *stepError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return c.wrap(se.what, se.err)
	}
	return c.wrap("read server status", err)
}

const settingsQuery = "SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name = ANY($1)"

func scanSettings(rows pgx.Rows, n int) (map[string]setting, error) {
	out := make(map[string]setting, n)
	var name string
	var st setting
	_, err := pgx.ForEachRow(rows, []any{&name, &st.value, &st.unit}, func() error {
		out[name] = st
		return nil
	})
	if err != nil {
		return nil, err
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

// privilegesQuery reads the role's privileges for a server of version
// (server_version_num): superuser, replication, monitoring, backup and
// checkpoint rights.
func privilegesQuery(version int) string {
	start, stop := "pg_backup_start(text, boolean)", "pg_backup_stop(boolean)"
	if version < 150000 {
		start, stop = "pg_start_backup(text, boolean, boolean)", "pg_stop_backup(boolean, boolean)"
	}
	switchFn := "pg_switch_wal()"
	if version < 100000 {
		switchFn = "pg_switch_xlog()"
	}
	checkpointRole := "false"
	if version >= 150000 {
		checkpointRole = "pg_has_role(current_user, 'pg_checkpoint', 'MEMBER')"
	}
	// Predefined monitoring roles exist from PG10; before that only a
	// superuser qualifies.
	monitor := "false"
	if version >= 100000 {
		monitor = `(pg_has_role(current_user, 'pg_monitor', 'MEMBER')
		   OR (pg_has_role(current_user, 'pg_read_all_settings', 'MEMBER')
		       AND pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')))`
	}
	return fmt.Sprintf(`SELECT r.rolsuper,
		r.rolsuper OR r.rolreplication,
		r.rolsuper OR %[1]s,
		r.rolsuper OR (%[1]s
			AND has_function_privilege(current_user, '%[2]s', 'EXECUTE')
			AND has_function_privilege(current_user, '%[3]s', 'EXECUTE')
			AND has_function_privilege(current_user, '%[4]s', 'EXECUTE')
			AND has_function_privilege(current_user, 'pg_create_restore_point(text)', 'EXECUTE')),
		r.rolsuper OR %[5]s
		FROM pg_roles r WHERE r.rolname = current_user`, monitor, start, stop, switchFn, checkpointRole)
}

// recoveryQuery reads whether the server is in recovery, the current WAL
// position (replayed position on a standby) and, on a primary, the WAL
// file name of that position. Before PostgreSQL 10 the xlog-era function
// names differ: the position is left unknown.
func recoveryQuery(version int) string {
	if version < 100000 {
		return "SELECT pg_is_in_recovery(), NULL::text, NULL::text"
	}
	return `SELECT r, CASE WHEN r THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END,
		CASE WHEN r THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END
		FROM pg_is_in_recovery() AS r`
}

// setWALPosition fills CurrentLSN, CurrentWAL and Timeline from the
// recovery query's text columns.
func setWALPosition(s *Status, lsn, name *string) error {
	if lsn != nil {
		l, err := wal.ParseLSN(*lsn)
		if err != nil {
			return err
		}
		s.CurrentLSN = l
	}
	if name != nil {
		s.CurrentWAL = *name
		if len(s.CurrentWAL) >= 8 {
			if tli, err := strconv.ParseUint(s.CurrentWAL[:8], 16, 32); err == nil {
				s.Timeline = uint32(tli)
			}
		}
	}
	return nil
}

const tablespacesQuery = `SELECT spcname::text, oid::int8, pg_tablespace_location(oid)
		FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`

// Tablespaces lists user tablespaces ordered by OID.
func (c *Conn) Tablespaces(ctx context.Context) ([]Tablespace, error) {
	rows, err := c.conn.Query(ctx, tablespacesQuery)
	if err != nil {
		return nil, c.wrap("list tablespaces", err)
	}
	out, err := scanTablespaces(rows)
	return out, c.wrapIf("list tablespaces", err)
}

func scanTablespaces(rows pgx.Rows) ([]Tablespace, error) {
	var out []Tablespace
	var ts Tablespace
	var oid int64
	_, err := pgx.ForEachRow(rows, []any{&ts.Name, &oid, &ts.Location}, func() error {
		ts.OID = uint32(oid)
		out = append(out, ts)
		return nil
	})
	return out, err
}

const archiverQuery = `SELECT archived_count, last_archived_wal, last_archived_time,
		failed_count, last_failed_wal, last_failed_time, stats_reset,
		extract(epoch FROM now() - stats_reset)::float8
		FROM pg_stat_archiver`

// ArchiverStats reads pg_stat_archiver. archiveMode (the archive_mode
// setting) decides IsArchiving; pass Status.ArchiveMode.
func (c *Conn) ArchiverStats(ctx context.Context, archiveMode string) (ArchiverStats, error) {
	a, err := scanArchiver(c.conn.QueryRow(ctx, archiverQuery), archiveMode)
	return a, c.wrapIf("read pg_stat_archiver", err)
}

func scanArchiver(row pgx.Row, archiveMode string) (ArchiverStats, error) {
	var a ArchiverStats
	var lastArchived, lastFailed *string
	var age *float64
	err := row.Scan(&a.ArchivedCount, &lastArchived, &a.LastArchivedTime,
		&a.FailedCount, &lastFailed, &a.LastFailedTime, &a.StatsReset, &age)
	if err != nil {
		return a, err
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

// MajorVersion is the server's major version as text ("15").
func (c *Conn) MajorVersion() string { return majorVersion(c.version) }
