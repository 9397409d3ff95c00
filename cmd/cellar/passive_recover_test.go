package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// TestPassiveRecoverRealData: a real PG15 cluster archives into a primary
// Cellar catalog, `cellar backup` takes a base backup, more data and a
// restore point follow; a passive Cellar copies backup and WAL through a
// real sshd on 127.0.0.1 (sync-backup, sync-wals), and `cellar recover`
// from the passive catalog alone brings a new cluster to exactly the
// source's data. `cellar check` on the passive server asks PostgreSQL
// nothing, and its ssh check follows the primary's reachability.
func TestPassiveRecoverRealData(t *testing.T) {
	t.Parallel()
	start := time.Now()
	port, sshCmd := startSSHD(t)
	root := pgtest.MkdirForPostgres(t)
	bin := buildCellar(t, root)
	primaryHome, passiveHome := filepath.Join(root, "primary"), filepath.Join(root, "passive")
	primaryCfg, passiveCfg := filepath.Join(root, "primary.yaml"), filepath.Join(root, "passive.yaml")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// PostgreSQL (as postgres) only drops WAL into incoming/, atomically
	// (the archiver ignores dot files); every cellar command runs as root.
	pl := catalog.NewLayout("pg", filepath.Join(primaryHome, "pg"), primaryHome)
	if err := pl.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, pl.IncomingDir)
	archiveCmd := fmt.Sprintf("cp %%p %[1]s/.%%f.tmp && mv %[1]s/.%%f.tmp %[1]s/%%f", pl.IncomingDir)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: archiveCmd})
	write(primaryCfg, fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n    compression: zstd\n", primaryHome, c.ConnString()))
	primarySSH := fmt.Sprintf("%s -p %d root@127.0.0.1 env CELLAR_CONFIG=%s PATH=%s:/usr/local/bin:/usr/bin:/bin", sshCmd, port, primaryCfg, filepath.Dir(bin))
	write(passiveCfg, fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    primary_ssh_command: %q\n    compression: zstd\n", passiveHome, primarySSH))
	cellar := func(cfg string, args ...string) string {
		t.Helper()
		out, errOut, code := runBin(t, bin, append([]string{"-c", cfg}, args...)...)
		if code != 0 {
			t.Fatalf("cellar %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return string(out)
	}
	archiveAll := func() {
		t.Helper()
		c.WaitArchived(t, c.SwitchWAL(t))
		cellar(primaryCfg, "archive-wal", "pg")
	}

	c.Exec(t, "CREATE TABLE t (id serial, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 1000) g")
	archiveAll() // the pre-flight "WAL archive" check wants an archived WAL
	var bk struct {
		ID     string `json:"backup_id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(cellar(primaryCfg, "-f", "json", "backup", "--wait", "--wait-timeout", "60", "--immediate-checkpoint", "pg")), &bk); err != nil || bk.Status != "DONE" {
		t.Fatalf("backup: %+v %v", bk, err)
	}
	// Changes after the backup exist only in the archived WAL.
	for i := range 3 {
		c.Exec(t, fmt.Sprintf("INSERT INTO t (v) SELECT md5((g*%d)::text) FROM generate_series(1, 2000) g; UPDATE t SET v = v || 'x' WHERE id %% 5 = %d", i+2, i))
		c.GenerateWAL(t, 2)
	}
	want := c.QueryRow(t, "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t")
	c.Exec(t, "SELECT pg_create_restore_point('passive_test')")
	archiveAll()
	t.Logf("primary ready in %v", time.Since(start))

	// The passive node pulls everything through ssh.
	cellar(passiveCfg, "sync-backup", "pg", bk.ID)
	if out := cellar(passiveCfg, "sync-wals", "pg"); !strings.Contains(out, "Synchronised") {
		t.Fatalf("sync-wals: %q", out)
	}
	// A sync pass records primary.info: the copy is in step.
	cellar(passiveCfg, "cron")
	vl := catalog.NewLayout("pg", filepath.Join(passiveHome, "pg"), passiveHome)
	for _, p := range []string{vl.PrimaryInfoPath(), vl.SyncWALsInfoPath(), vl.MetaBackupInfoPath(bk.ID)} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("passive catalog: %v", err)
		}
	}
	t.Logf("passive synced in %v", time.Since(start))

	// Nothing of the primary's catalog is used from here on.
	if err := os.Rename(primaryHome, primaryHome+".gone"); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(pgtest.MkdirForPostgres(t), "data")
	cellar(passiveCfg, "recover", "--target-name", "passive_test", "--target-action", "promote", "pg", bk.ID, dest)
	// recover wrote restore_command (copying from its staging directory)
	// to postgresql.auto.conf, which overrides the "false" given here.
	if got := recoverCluster(t, c, dest, "false"); got != want {
		t.Fatalf("cluster recovered from the passive copy has %q, source has %q", got, want)
	}
	t.Logf("recovered from the passive copy in %v", time.Since(start))
	if err := os.Rename(primaryHome+".gone", primaryHome); err != nil {
		t.Fatal(err)
	}

	// check on the passive server: no PostgreSQL probe, ssh OK.
	out, errOut, code := runBin(t, bin, "-c", passiveCfg, "-f", "json", "check", "pg")
	var res map[string]map[string]struct{ Status, Hint string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("check -f json: %v (exit %d)\n%s%s", err, code, out, errOut)
	}
	if code != 0 || res["pg"]["ssh"].Status != "OK" || res["pg"]["ssh"].Hint != "Barman primary node" {
		t.Errorf("passive check: exit %d, ssh %+v\n%s%s", code, res["pg"]["ssh"], out, errOut)
	}
	for key := range res["pg"] {
		switch key {
		case "postgresql", "wal_level", "postgresql_streaming", "replication_slot", "archive_mode", "archive_command", "continuous_archiving", "superuser_or_standard_user_with_backup_privileges":
			t.Errorf("passive check ran PostgreSQL check %q", key)
		}
	}
	// A broken primary_ssh_command (nothing listens on that port) fails it.
	brokenCfg := filepath.Join(root, "broken.yaml")
	brokenSSH := fmt.Sprintf("%s -o ConnectTimeout=5 -p %d root@127.0.0.1", sshCmd, freeTCPPort(t))
	write(brokenCfg, fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    primary_ssh_command: %q\n    compression: zstd\n", passiveHome, brokenSSH))
	out, errOut, code = runBin(t, bin, "-c", brokenCfg, "check", "pg")
	if code != 1 || !strings.Contains(string(out), "\tssh: FAILED") || strings.Contains(string(out), "PostgreSQL") {
		t.Errorf("check with a broken primary_ssh_command: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("done in %v", time.Since(start))
}
