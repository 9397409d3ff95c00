package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

func connect(t *testing.T, conninfo string) *Conn {
	t.Helper()
	c, err := Connect(t.Context(), conninfo)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// waitFor polls cond until it holds or 30 s pass (the server does the work
// asynchronously: archiver, walsender start-up).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStatusPrimary(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{
		Archive:     true,
		Tablespaces: 1,
		// synchronous_commit=local: otherwise every commit waits for the
		// absent standby "walrus".
		ExtraConf: []string{"archive_timeout = 90", "synchronous_standby_names = 'walrus'", "synchronous_commit = local"},
	})
	c := connect(t, pg.ConnString())
	ctx := t.Context()

	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantVersion, _ := strconv.Atoi(pg.QueryRow(t, "SHOW server_version_num"))
	if s.ServerVersion != wantVersion || s.ServerVersion/10000 != 15 || c.ServerVersion() != wantVersion {
		t.Errorf("ServerVersion = %d (conn %d), want %d", s.ServerVersion, c.ServerVersion(), wantVersion)
	}
	if !strings.HasPrefix(s.ServerVersionText, "15.") || strings.Contains(s.ServerVersionText, " ") {
		t.Errorf("ServerVersionText = %q", s.ServerVersionText)
	}
	if s.MajorVersion() != "15" {
		t.Errorf("MajorVersion = %q", s.MajorVersion())
	}
	if !s.IsSuperuser || !s.HasBackupPrivileges || !s.HasMonitoringPrivileges || !s.HasReplication || !s.CanCheckpoint {
		t.Errorf("superuser privileges: %+v", s)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"WALLevel", s.WALLevel, "replica"},
		{"ArchiveMode", s.ArchiveMode, "on"},
		{"ArchiveCommand", s.ArchiveCommand, pg.QueryRow(t, "SHOW archive_command")},
		{"ArchiveTimeout", s.ArchiveTimeout, 90 * time.Second},
		{"IsInRecovery", s.IsInRecovery, false},
		{"SystemID", s.SystemID, pg.SystemID(t)},
		{"DataDirectory", s.DataDirectory, pg.DataDir},
		{"ConfigFile", s.ConfigFile, pg.DataDir + "/postgresql.conf"},
		{"HBAFile", s.HBAFile, pg.DataDir + "/pg_hba.conf"},
		{"IdentFile", s.IdentFile, pg.DataDir + "/pg_ident.conf"},
		{"WALSegmentSize", s.WALSegmentSize, uint64(16 << 20)},
		{"DataChecksums", s.DataChecksums, false},
		{"MaxWALSenders", s.MaxWALSenders, 10},
		{"MaxReplicationSlots", s.MaxReplicationSlots, 10},
		{"SynchronousStandbyNames", s.SynchronousStandbyNames, "walrus"},
		{"Timeline", s.Timeline, uint32(1)},
		{"Archiver.IsArchiving", s.Archiver.IsArchiving, true},
	}
	for _, ch := range checks {
		if fmt.Sprint(ch.got) != fmt.Sprint(ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if !strings.Contains(s.ArchiveCommand, pg.ArchiveDir) {
		t.Errorf("ArchiveCommand %q does not mention %s", s.ArchiveCommand, pg.ArchiveDir)
	}
	if s.CurrentLSN == 0 || s.CurrentWAL != wal.NameForLSN(1, s.CurrentLSN, s.WALSegmentSize).String() {
		t.Errorf("CurrentLSN %v / CurrentWAL %q disagree", s.CurrentLSN, s.CurrentWAL)
	}
	if len(s.Tablespaces) != 1 || s.Tablespaces[0].Name != "ts1" || s.Tablespaces[0].Location != pg.TablespaceDirs[0] || s.Tablespaces[0].OID == 0 {
		t.Errorf("Tablespaces = %+v, want ts1 at %s", s.Tablespaces, pg.TablespaceDirs[0])
	}
	if s.Archiver.StatsReset == nil {
		t.Error("Archiver.StatsReset is nil on a fresh cluster")
	}

	// Archive something and see pg_stat_archiver through Status.
	closed := pg.SwitchWAL(t)
	var a ArchiverStats
	waitFor(t, "archiving of "+closed, func() bool {
		a, err = c.ArchiverStats(ctx, "on")
		return err == nil && a.LastArchivedWAL == closed
	})
	s2, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a = s2.Archiver
	if a.ArchivedCount < 1 || a.LastArchivedTime == nil || a.FailedCount != 0 || a.LastFailedWAL != "" || a.LastFailedTime != nil {
		t.Errorf("archiver after one success: %+v", a)
	}
	if !a.IsArchiving || a.CurrentArchivedWALsPerSecond <= 0 {
		t.Errorf("IsArchiving %v rate %v", a.IsArchiving, a.CurrentArchivedWALsPerSecond)
	}
	if s2.CurrentLSN <= s.CurrentLSN {
		t.Errorf("CurrentLSN did not advance: %v -> %v", s.CurrentLSN, s2.CurrentLSN)
	}

	// A failing archive_command shows up as not archiving.
	pg.SetConf(t, "archive_command", "false")
	failed := pg.SwitchWAL(t)
	waitFor(t, "failure of "+failed, func() bool {
		a, err = c.ArchiverStats(ctx, "on")
		return err == nil && a.LastFailedWAL == failed
	})
	if a.IsArchiving || a.FailedCount < 1 || a.LastFailedTime == nil {
		t.Errorf("archiver after failure: %+v", a)
	}
}

func TestPrivilegesOfOrdinaryRoles(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	pg.Exec(t, `CREATE ROLE plain LOGIN;
		CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
		CREATE ROLE backup LOGIN REPLICATION IN ROLE pg_monitor, pg_checkpoint;
		GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean) TO backup;
		GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO backup;
		GRANT EXECUTE ON FUNCTION pg_switch_wal() TO backup;
		GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO backup;`)
	tests := []struct {
		user                                          string
		super, backup, monitor, replication, checkpnt bool
	}{
		{"plain", false, false, false, false, false},
		{"monitor", false, false, true, false, false},
		{"backup", false, true, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			c := connect(t, strings.Replace(pg.ConnString(), "user=postgres", "user="+tt.user, 1))
			s, err := c.Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got := []bool{s.IsSuperuser, s.HasBackupPrivileges, s.HasMonitoringPrivileges, s.HasReplication, s.CanCheckpoint}
			want := []bool{tt.super, tt.backup, tt.monitor, tt.replication, tt.checkpnt}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("super/backup/monitor/replication/checkpoint = %v, want %v", got, want)
			}
			// Everyone can read the version and wal_level; data_directory
			// needs pg_read_all_settings (via pg_monitor).
			if s.ServerVersion == 0 || s.WALLevel != "replica" {
				t.Errorf("basic settings missing: %d %q", s.ServerVersion, s.WALLevel)
			}
			if (s.DataDirectory != "") != tt.monitor {
				t.Errorf("DataDirectory = %q with monitor=%v", s.DataDirectory, tt.monitor)
			}
		})
	}
}

func TestStandbyStatusAndReplication(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	standby := pg.NewStandby(t)
	ctx := t.Context()

	sc := connect(t, standby.ConnString())
	s, err := sc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.IsInRecovery || s.CurrentWAL != "" || s.CurrentLSN == 0 || s.SystemID != pg.SystemID(t) {
		t.Errorf("standby status: recovery=%v wal=%q lsn=%v sysid=%s", s.IsInRecovery, s.CurrentWAL, s.CurrentLSN, s.SystemID)
	}
	closed, switched, err := sc.SwitchWAL(ctx)
	if err != nil || switched || closed != "" {
		t.Errorf("SwitchWAL on standby = %q, %v, %v; want no-op", closed, switched, err)
	}

	// A WAL streamer on a slot, next to the standby.
	pc := connect(t, pg.ConnString())
	pg.Exec(t, "SELECT pg_create_physical_replication_slot('streamer', true)")
	dir := pg.MkdirForPostgres(t)
	cmd := pg.Command("pg_receivewal", "-D", dir, "-S", "streamer", "-n", "--status-interval=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
	})

	var stats []ReplicationStat
	waitFor(t, "two walsenders streaming", func() bool {
		stats, err = pc.ReplicationStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range stats {
			if r.State == "streaming" && r.FlushLSN != nil {
				n++
			}
		}
		return n == 2
	})
	var sawStandby, sawStreamer bool
	for _, r := range stats {
		if r.PID == 0 || r.UserName != "postgres" || r.BackendStart == nil || r.SentLSN == nil || r.SyncState != "async" {
			t.Errorf("incomplete row %+v", r)
		}
		if r.ClientAddr != "" {
			t.Errorf("unix-socket client has ClientAddr %q", r.ClientAddr)
		}
		switch {
		case r.IsWALStreamer():
			sawStreamer = true
			if r.SlotName != "streamer" || r.ApplicationName != "pg_receivewal" {
				t.Errorf("streamer row %+v", r)
			}
		default:
			sawStandby = true
			if r.SlotName != "" || r.ReplayLSN == nil {
				t.Errorf("standby row %+v", r)
			}
		}
	}
	if !sawStandby || !sawStreamer {
		t.Errorf("stats %+v: standby=%v streamer=%v", stats, sawStandby, sawStreamer)
	}

	slot, err := pc.ReplicationSlot(ctx, "streamer")
	if err != nil || slot == nil {
		t.Fatalf("ReplicationSlot = %v, %v", slot, err)
	}
	if !slot.Active || slot.ActivePID == nil || slot.RestartLSN == nil || slot.SlotType != "physical" || slot.WALStatus != "reserved" {
		t.Errorf("active slot %+v", slot)
	}
}

func TestReplicationSlotAbsentAndInactive(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	c := connect(t, pg.ConnString())
	ctx := t.Context()
	slot, err := c.ReplicationSlot(ctx, "nope")
	if slot != nil || err != nil {
		t.Errorf("absent slot = %+v, %v; want nil, nil", slot, err)
	}
	pg.Exec(t, "SELECT pg_create_physical_replication_slot('lazy')")
	slot, err = c.ReplicationSlot(ctx, "lazy")
	if err != nil || slot == nil {
		t.Fatalf("ReplicationSlot(lazy) = %v, %v", slot, err)
	}
	if slot.Name != "lazy" || slot.Active || slot.ActivePID != nil || slot.RestartLSN != nil || slot.WALStatus != "" {
		t.Errorf("uninitialised slot %+v", slot)
	}
	stats, err := c.ReplicationStats(ctx)
	if err != nil || len(stats) != 0 {
		t.Errorf("ReplicationStats without clients = %v, %v", stats, err)
	}
}

func TestSwitchWALCheckpointRestorePoint(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	c := connect(t, pg.ConnString())
	ctx := t.Context()

	pg.Exec(t, "CREATE TABLE w (x int); INSERT INTO w VALUES (1)")
	before := pg.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	closed, switched, err := c.SwitchWAL(ctx)
	if err != nil || !switched || closed != before {
		t.Fatalf("SwitchWAL = %q, %v, %v; want %q closed", closed, switched, err, before)
	}
	if now := pg.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())"); now <= before {
		t.Errorf("insert position still in %s after closing %s", now, before)
	}
	// Right after a switch there is nothing to close. Background processes
	// may log a record in between, so allow a few tries.
	noop := false
	for range 5 {
		closed, switched, err = c.SwitchWAL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !switched {
			noop = closed == ""
			break
		}
	}
	if !noop {
		t.Error("SwitchWAL without WAL activity kept switching")
	}

	if err := c.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	lsn, err := c.CreateRestorePoint(ctx, "before_upgrade")
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := wal.ParseLSN(pg.QueryRow(t, "SELECT pg_current_wal_insert_lsn()"))
	if lsn == 0 || lsn > cur {
		t.Errorf("restore point LSN %v, current %v", lsn, cur)
	}
	// Errors keep the PostgreSQL error reachable.
	_, err = c.CreateRestorePoint(ctx, strings.Repeat("x", 100))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(err.Error(), "restore point") {
		t.Errorf("too-long restore point name: %v", err)
	}
}

func TestIdentifySystem(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{Unique: true})
	ctx := t.Context()
	r, err := ConnectReplication(ctx, pg.ConnString()) // replication keyword added by ConnectReplication
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	info, err := r.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	control := pg.RunAsPostgres(t, "pg_controldata", "-D", pg.DataDir)
	if !strings.Contains(control, "Database system identifier:           "+info.SystemID+"\n") {
		t.Errorf("IDENTIFY_SYSTEM id %s not in pg_controldata:\n%s", info.SystemID, control)
	}
	if sql := pg.QueryRow(t, "SELECT system_identifier FROM pg_control_system()"); sql != info.SystemID {
		t.Errorf("system id: IDENTIFY_SYSTEM %s, SQL %s", info.SystemID, sql)
	}
	cur, _ := wal.ParseLSN(pg.QueryRow(t, "SELECT pg_current_wal_flush_lsn()"))
	if info.Timeline != 1 || info.XLogPos == 0 || info.XLogPos > cur || info.DBName != "" {
		t.Errorf("IdentifySystem = %+v (flush %v)", info, cur)
	}
	if r.ServerVersion()/10000 != 15 || r.MajorVersion() != "15" || r.PgConn() == nil {
		t.Errorf("ServerVersion %d MajorVersion %q", r.ServerVersion(), r.MajorVersion())
	}
	// Through the harness's replication conninfo too, and over TCP.
	for _, cs := range []string{pg.ReplConnString(), pg.TCPConnString()} {
		r2, err := ConnectReplication(ctx, cs, ApplicationName("barman_receive_wal"))
		if err != nil {
			t.Fatal(err)
		}
		if i2, err := r2.IdentifySystem(ctx); err != nil || i2.SystemID != info.SystemID {
			t.Errorf("IdentifySystem via %s = %+v, %v", cs, i2, err)
		}
		r2.Close(ctx)
	}
	// A normal connection cannot run IDENTIFY_SYSTEM: prove the
	// replication parameter really is what makes it work.
	conn, err := pgconn.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll(); err == nil {
		t.Error("IDENTIFY_SYSTEM worked on a normal connection")
	}
}

func TestApplicationName(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	ctx := t.Context()
	tests := []struct {
		conninfo string
		opts     []Option
		want     string
	}{
		{pg.ConnString(), nil, "cellar"},
		{pg.ConnString() + " application_name=mine", nil, "mine"},
		{pg.ConnString(), []Option{ApplicationName("barman_check")}, "barman_check"},
		{pg.ConnString() + " application_name=mine", []Option{ApplicationName("other")}, "mine"},
	}
	for _, tt := range tests {
		c, err := Connect(ctx, tt.conninfo, tt.opts...)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := c.PgxConn().QueryRow(ctx, "SHOW application_name").Scan(&got); err != nil || got != tt.want {
			t.Errorf("%q: application_name = %q (%v), want %q", tt.conninfo, got, err, tt.want)
		}
		c.Close(ctx)
	}
}

func TestConnectErrorsHidePassword(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	// Require passwords for TCP so authentication really fails.
	hba := pg.DataDir + "/pg_hba.conf"
	if err := os.WriteFile(hba, []byte("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, "SELECT pg_reload_conf()")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	const secret = "Sup3rSecretPw"
	tcp := fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres sslmode=disable", pg.Port)
	cases := []string{
		tcp + " user=postgres password=" + secret,                                                    // auth failure
		tcp + " user=nobody password='" + secret + "'",                                               // auth failure, quoted
		fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", secret, pg.Port), // URI
		"host=127.0.0.1 port=1 user=x password=" + secret + " connect_timeout=2",                     // refused
		"host='unterminated password=" + secret,                                                      // parse error
		"postgres://u:" + secret + "@[bad/x",                                                         // parse error, URI
		tcp + " user=postgres password=" + secret + " bogus_option=1",                                // server rejects option
	}
	for _, cs := range cases {
		c, err := Connect(ctx, cs)
		if err == nil {
			c.Close(ctx)
			t.Errorf("Connect(%s) succeeded", RedactConninfo(cs))
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(fmt.Sprintf("%+v %#v", err, err.Error()), secret) {
			t.Errorf("Connect error leaks the password: %v", err)
		}
		r, err := ConnectReplication(ctx, cs)
		if err == nil {
			r.Close(ctx)
			t.Errorf("ConnectReplication(%s) succeeded", RedactConninfo(cs))
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ConnectReplication error leaks the password: %v", err)
		}
	}
	// The authentication failure is still a *pgconn.PgError underneath.
	_, err := Connect(ctx, tcp+" user=postgres password="+secret)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("auth failure = %v, want SQLSTATE 28P01 reachable with errors.As", err)
	}
}

func TestSlotsAndTimelineHistory(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	ctx := t.Context()
	r, err := ConnectReplication(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	c := connect(t, pg.ConnString())

	if err := r.CreatePhysicalSlot(ctx, "cellar_slot"); err != nil {
		t.Fatal(err)
	}
	slot, err := c.ReplicationSlot(ctx, "cellar_slot")
	if err != nil || slot == nil || slot.SlotType != "physical" || slot.RestartLSN != nil {
		t.Errorf("created slot = %+v, %v", slot, err)
	}
	if err := r.CreatePhysicalSlot(ctx, "cellar_slot"); !errors.Is(err, ErrSlotExists) {
		t.Errorf("second create = %v, want ErrSlotExists", err)
	}
	if err := r.DropSlot(ctx, "cellar_slot"); err != nil {
		t.Fatal(err)
	}
	if err := r.DropSlot(ctx, "cellar_slot"); !errors.Is(err, ErrSlotNotFound) {
		t.Errorf("second drop = %v, want ErrSlotNotFound", err)
	}
	// The connection survives the errors above.
	if _, err := r.IdentifySystem(ctx); err != nil {
		t.Errorf("IdentifySystem after slot errors: %v", err)
	}
	if err := r.CreatePhysicalSlot(ctx, "x; DROP TABLE y"); !errors.Is(err, ErrInvalidSlotName) {
		t.Errorf("injected name = %v, want ErrInvalidSlotName", err)
	}

	if _, _, err := r.TimelineHistory(ctx, 1); err == nil {
		t.Error("TimelineHistory(1) on timeline 1 succeeded")
	}
	standby := pg.NewStandby(t)
	standby.Promote(t)
	rs, err := ConnectReplication(ctx, standby.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close(ctx)
	info, err := rs.IdentifySystem(ctx)
	if err != nil || info.Timeline != 2 {
		t.Fatalf("promoted standby IdentifySystem = %+v, %v; want timeline 2", info, err)
	}
	name, content, err := rs.TimelineHistory(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(standby.DataDir + "/pg_wal/00000002.history")
	if err != nil {
		t.Fatal(err)
	}
	if name != "00000002.history" || string(content) != string(onDisk) || !strings.HasPrefix(string(content), "1\t") {
		t.Errorf("TimelineHistory(2) = %q, %q; on disk %q", name, content, onDisk)
	}
}

func TestValidateSlotName(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"barman": true, "slot_1": true, "a": true, strings.Repeat("a", 63): true,
		"": false, "Barman": false, "with-dash": false, "x y": false, "x;y": false, strings.Repeat("a", 64): false,
	} {
		err := ValidateSlotName(name)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrInvalidSlotName)) {
			t.Errorf("ValidateSlotName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

// TestStatusWithoutControlAccess: a role that may not call
// pg_control_system() still gets a status (the queries are pipelined, and
// one failing statement would fail them all), with an unknown system id.
func TestStatusWithoutControlAccess(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	pg.Exec(t, `CREATE ROLE plain LOGIN; REVOKE EXECUTE ON FUNCTION pg_control_system() FROM public`)
	c := connect(t, strings.Replace(pg.ConnString(), "user=postgres", "user=plain", 1))
	s, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("Status as a role without pg_control_system(): %v", err)
	}
	if s.SystemID != "" {
		t.Errorf("SystemID = %q, want unknown", s.SystemID)
	}
	if s.ServerVersion < 150000 || s.CurrentLSN == 0 || s.CurrentWAL == "" || s.Timeline != 1 || s.IsInRecovery {
		t.Errorf("status incomplete: version %d lsn %v wal %q tli %d recovery %v", s.ServerVersion, s.CurrentLSN, s.CurrentWAL, s.Timeline, s.IsInRecovery)
	}
	admin := connect(t, pg.ConnString())
	as, err := admin.Status(t.Context())
	if err != nil || as.SystemID == "" || !as.IsSuperuser {
		t.Errorf("superuser status: sysid %q super %v err %v", as.SystemID, as.IsSuperuser, err)
	}
}
