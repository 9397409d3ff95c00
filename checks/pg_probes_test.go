package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

func pgTarget(t *testing.T, c *pgtest.Cluster) *realTarget {
	t.Helper()
	tgt := newRealTarget(t, "pg")
	tgt.cfg.Conninfo = config.Conninfo(c.ConnString())
	return tgt
}

func writeIdentity(t *testing.T, tgt *realTarget, sysid string) {
	t.Helper()
	data := fmt.Sprintf(`{"systemid": %q, "version": "15"}`, sysid)
	if err := os.WriteFile(filepath.Join(tgt.dirs.Backup, "identity.json"), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresProbesLive walks one archiving cluster through the passing
// and failing states of the PostgreSQL, streaming, slot, archiver and
// identity probes.
func TestPostgresProbesLive(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	tgt := pgTarget(t, c)

	mustProbe(t, tgt, "postgresql", OK, "")
	mustProbe(t, tgt, "backup_privileges", OK, "")
	mustProbe(t, tgt, "postgresql_streaming", OK, "")
	mustProbe(t, tgt, "wal_level", OK, "")
	mustProbe(t, tgt, "archive_mode", OK, "")
	mustProbe(t, tgt, "archive_command", OK, "")
	c.WaitArchived(t, c.SwitchWAL(t))
	mustProbe(t, tgt, "continuous_archiving", OK, "")
	mustSkip(t, tgt, "replication_slot")
	mustSkip(t, tgt, "postgresql_server_is_standby")

	t.Run("systemid", func(t *testing.T) {
		mustProbe(t, tgt, "systemid_coherence", OK, "no system Id stored on disk")
		writeIdentity(t, tgt, c.SystemID(t))
		mustProbe(t, tgt, "systemid_coherence", OK, "")
		writeIdentity(t, tgt, "12345")
		mustProbe(t, tgt, "systemid_coherence", Critical, "system ID mismatch")
		writeIdentity(t, tgt, c.SystemID(t))
	})

	t.Run("unprivileged role", func(t *testing.T) {
		c.Exec(t, "CREATE ROLE plain LOGIN")
		plain := pgTarget(t, c)
		plain.cfg.Conninfo = config.Conninfo(strings.Replace(c.ConnString(), "user=postgres", "user=plain", 1))
		r := mustProbe(t, plain, "backup_privileges", Critical, "backup functions are required")
		if r.Check != "no access to backup functions" {
			t.Errorf("failure label = %q", r.Check)
		}
		mustProbe(t, plain, "postgresql_streaming", Critical, "")

		// A distinct wal_conninfo brings in the "(WAL streaming)" group
		// and replaces the plain slot check.
		tgt.cfg.WALConninfo = config.Conninfo(strings.Replace(c.TCPConnString(), "user=postgres", "user=plain", 1))
		r = mustProbe(t, tgt, "wal_streaming_monitoring_privileges", Critical, "monitoring functions")
		if r.Check != "no access to monitoring functions" {
			t.Errorf("failure label = %q", r.Check)
		}
		tgt.cfg.WALConninfo = config.Conninfo(c.TCPConnString())
		mustProbe(t, tgt, "wal_streaming_monitoring_privileges", OK, "")
		mustProbe(t, tgt, "wal_streaming_postgresql_streaming", OK, "")
		mustProbe(t, tgt, "wal_streaming_wal_level", OK, "")
		mustProbe(t, tgt, "wal_streaming_systemid_coherence", OK, "")
		tgt.cfg.SlotName = "cellar"
		tgt.cfg.StreamingArchiver = true
		mustSkip(t, tgt, "replication_slot")
		mustProbe(t, tgt, "wal_streaming_replication_slot", Critical, "doesn't exist")
		tgt.cfg.WALConninfo = ""
		tgt.cfg.SlotName = ""
		tgt.cfg.StreamingArchiver = false
	})

	t.Run("replication slot", func(t *testing.T) {
		tgt.cfg.SlotName = "cellar"
		tgt.cfg.StreamingArchiver = true
		mustProbe(t, tgt, "replication_slot", Critical, "replication slot 'cellar' doesn't exist. Please execute 'cellar receive-wal --create-slot pg'")
		c.Exec(t, "SELECT pg_create_physical_replication_slot('cellar')")
		mustProbe(t, tgt, "replication_slot", Critical, "slot 'cellar' not initialised: is 'receive-wal' running?")
		c.Exec(t, "SELECT pg_drop_replication_slot('cellar')")
		c.Exec(t, "SELECT pg_create_physical_replication_slot('cellar', true)")
		mustProbe(t, tgt, "replication_slot", Critical, "slot 'cellar' not active: is 'receive-wal' running?")

		// A real WAL receiver on the slot makes it active.
		dir := c.MkdirForPostgres(t)
		cmd := c.Command("pg_receivewal", "-D", dir, "-S", "cellar", "-n", "-d", "application_name="+tgt.cfg.StreamingArchiverName)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitFor(t, "slot active", func() bool {
			return c.QueryRow(t, "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'cellar'") == "true"
		})
		mustProbe(t, tgt, "replication_slot", OK, "")
		tgt.holdReceiveWALLock(t)
		r := mustProbe(t, tgt, "receive_wal_running", OK, "")
		if _, ok := r.Values["receive_wal_lag_bytes"]; !ok {
			t.Errorf("no lag gauge: %v", r.Values)
		}
		tgt.cfg.StreamingArchiver = false
		mustProbe(t, tgt, "replication_slot", OK, "WARNING: slot 'cellar' is initialised but not required by the current config")
		tgt.cfg.SlotName = ""
	})

	t.Run("server down", func(t *testing.T) {
		c.Stop(t)
		r := mustProbe(t, tgt, "postgresql", Critical, "")
		if r.Hint != "" || r.Detail == "" {
			t.Errorf("want no hint (as Barman) and a detail, got %q / %q", r.Hint, r.Detail)
		}
		for _, k := range []string{"backup_privileges", "postgresql_streaming", "wal_level", "archive_mode", "archive_command", "continuous_archiving"} {
			mustSkip(t, tgt, k)
		}
	})
}

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

func TestPostgresProbesMisconfigured(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	tgt := pgTarget(t, c)
	mustProbe(t, tgt, "archive_mode", Critical, "please set it to 'on' or 'always'")
	mustProbe(t, tgt, "archive_command", Critical, "please set it accordingly to documentation")
	mustProbe(t, tgt, "continuous_archiving", Critical, "")

	c.SetConf(t, "wal_level", "minimal")
	c.SetConf(t, "max_wal_senders", "0")
	c.Restart(t)
	mustProbe(t, tgt, "wal_level", Critical, "please set it to a higher level than 'minimal'")
}

func TestContinuousArchivingFailing(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: "false"})
	tgt := pgTarget(t, c)
	mustProbe(t, tgt, "archive_command", OK, "")
	c.SwitchWAL(t)
	waitFor(t, "an archiver failure", func() bool {
		return c.QueryRow(t, "SELECT failed_count FROM pg_stat_archiver") != "0"
	})
	r := mustProbe(t, tgt, "continuous_archiving", Critical, "")
	if !strings.Contains(r.Detail, "last failed WAL") {
		t.Errorf("detail = %q", r.Detail)
	}
}

func TestStandbyProbes(t *testing.T) {
	t.Parallel()
	primary := pgtest.Start(t, pgtest.Options{})
	standby := primary.NewStandby(t)
	other := pgtest.Start(t, pgtest.Options{Unique: true})

	tgt := pgTarget(t, standby)
	tgt.cfg.PrimaryConninfo = config.Conninfo(primary.ConnString())
	mustProbe(t, tgt, "postgresql_server_is_standby", OK, "")
	mustProbe(t, tgt, "primary_server_is_not_a_standby", OK, "")
	mustProbe(t, tgt, "primary_and_standby_have_same_system_id", OK, "")

	tgt.cfg.PrimaryConninfo = config.Conninfo(other.ConnString())
	mustProbe(t, tgt, "primary_and_standby_have_same_system_id", Critical, "share the same system identifier")

	wrong := pgTarget(t, primary)
	wrong.cfg.PrimaryConninfo = config.Conninfo(standby.ConnString())
	r := mustProbe(t, wrong, "postgresql_server_is_standby", Critical, "conninfo should point to a standby server")
	if r.Critical {
		t.Error("PostgreSQL server is standby is non-critical")
	}
	mustProbe(t, wrong, "primary_server_is_not_a_standby", Critical, "should point to a primary server, not a standby")

	mustSkip(t, pgTarget(t, primary), "postgresql_server_is_standby")
}
