package postgres

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// The status, archiver, WAL, restore point, slot and replication SQL and
// the replication commands (TIMELINE_HISTORY of a promoted standby too)
// work on every supported major (the catalog views and function names
// differ between them).
func TestEveryVersion(t *testing.T) {
	t.Parallel()
	for _, v := range pgtest.Versions() {
		t.Run(strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			exerciseVersion(t, v)
		})
	}
}

func exerciseVersion(t *testing.T, version int) {
	pg := pgtest.Start(t, pgtest.Options{Version: version, Archive: true})
	c := connect(t, pg.ConnString())
	ctx := t.Context()

	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ServerVersion/10000 != version || s.MajorVersion() != strconv.Itoa(version) || c.ServerVersion()/10000 != version {
		t.Errorf("ServerVersion %d (conn %d, major %q), want PostgreSQL %d", s.ServerVersion, c.ServerVersion(), s.MajorVersion(), version)
	}
	if !s.IsSuperuser || !s.HasBackupPrivileges || !s.HasMonitoringPrivileges || !s.HasReplication || !s.CanCheckpoint {
		t.Errorf("superuser privileges: %+v", s)
	}
	if s.SystemID != pg.SystemID(t) || s.WALLevel != "replica" || s.ArchiveMode != "on" || s.IsInRecovery || s.CurrentWAL == "" {
		t.Errorf("status %+v", s)
	}

	checkBackupRole(t, pg, version)

	closed, switched, err := c.SwitchWAL(ctx)
	if err != nil || !switched || closed == "" {
		t.Fatalf("SwitchWAL = %q, %v, %v", closed, switched, err)
	}
	waitFor(t, "archiving of "+closed, func() bool {
		a, err := c.ArchiverStats(ctx, "on")
		return err == nil && a.LastArchivedWAL == closed && a.IsArchiving
	})
	if err := c.Checkpoint(ctx); err != nil {
		t.Error(err)
	}
	if lsn, err := c.CreateRestorePoint(ctx, "v"+strconv.Itoa(version)); err != nil || lsn == 0 {
		t.Errorf("CreateRestorePoint = %v, %v", lsn, err)
	}

	r, err := ConnectReplication(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if info, err := r.IdentifySystem(ctx); err != nil || info.SystemID != s.SystemID || info.Timeline != 1 {
		t.Errorf("IdentifySystem = %+v, %v", info, err)
	}
	if err := r.CreatePhysicalSlot(ctx, "cellar_v"); err != nil {
		t.Fatal(err)
	}
	if err := r.CreatePhysicalSlot(ctx, "cellar_v"); !errors.Is(err, ErrSlotExists) {
		t.Errorf("second create = %v, want ErrSlotExists", err)
	}
	slot, err := c.ReplicationSlot(ctx, "cellar_v")
	if err != nil || slot == nil || slot.SlotType != "physical" || slot.Active {
		t.Errorf("ReplicationSlot = %+v, %v", slot, err)
	}
	// The only walsender is this test's own replication connection.
	if stats, err := c.ReplicationStats(ctx); err != nil || len(stats) != 1 || stats[0].PID == 0 || stats[0].UserName != "postgres" {
		t.Errorf("ReplicationStats = %+v, %v", stats, err)
	}
	if err := r.DropSlot(ctx, "cellar_v"); err != nil {
		t.Error(err)
	}

	// A promoted standby is on timeline 2 and serves its history file.
	standby := pg.NewStandby(t)
	standby.Promote(t)
	rs, err := ConnectReplication(ctx, standby.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close(ctx)
	if info, err := rs.IdentifySystem(ctx); err != nil || info.Timeline != 2 {
		t.Fatalf("promoted standby IdentifySystem = %+v, %v; want timeline 2", info, err)
	}
	name, content, err := rs.TimelineHistory(ctx, 2)
	if err != nil || name != "00000002.history" || !strings.HasPrefix(string(content), "1\t") {
		t.Errorf("TimelineHistory(2) = %q, %q, %v", name, content, err)
	}
}

// checkBackupRole: an ordinary role granted the version's backup functions
// (renamed in 15) has backup privileges; without the grants it has not.
func checkBackupRole(t *testing.T, pg *pgtest.Cluster, version int) {
	t.Helper()
	start, stop := "pg_backup_start(text, boolean)", "pg_backup_stop(boolean)"
	if version < 15 {
		start, stop = "pg_start_backup(text, boolean, boolean)", "pg_stop_backup(boolean, boolean)"
	}
	pg.Exec(t, `CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
		CREATE ROLE backup LOGIN REPLICATION IN ROLE pg_monitor;
		GRANT EXECUTE ON FUNCTION `+start+` TO backup;
		GRANT EXECUTE ON FUNCTION `+stop+` TO backup;
		GRANT EXECUTE ON FUNCTION pg_switch_wal() TO backup;
		GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO backup;`)
	for user, want := range map[string]bool{"monitor": false, "backup": true} {
		c := connect(t, strings.Replace(pg.ConnString(), "user=postgres", "user="+user, 1))
		s, err := c.Status(t.Context())
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		if s.HasBackupPrivileges != want || !s.HasMonitoringPrivileges || s.IsSuperuser {
			t.Errorf("role %s: backup %v (want %v), monitoring %v, superuser %v", user, s.HasBackupPrivileges, want, s.HasMonitoringPrivileges, s.IsSuperuser)
		}
	}
}
