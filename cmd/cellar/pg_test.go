package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// pgConfig writes a config for one server backed by a real cluster.
func pgConfig(t *testing.T, c *pgtest.Cluster, extra string) (cfgFile, home string) {
	t.Helper()
	home = t.TempDir()
	cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n%s", home, c.ConnString(), extra)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile, home
}

func TestCheckNagiosAgainstRealServer(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	cfg, _ := pgConfig(t, c, "    last_backup_maximum_age: 1 day\n")

	// No catalog directories and no backups yet: CRITICAL with exit 2.
	out, _, code := runCLI(t, "-c", cfg, "check", "--nagios", "pg")
	if code != 2 || !strings.HasPrefix(out, "CELLAR CRITICAL - ") || !strings.Contains(out, "backup maximum age") {
		t.Fatalf("nagios: code %d\n%s", code, out)
	}
	if strings.Contains(out, "PostgreSQL: CRITICAL") {
		t.Fatalf("PostgreSQL is up but reported failing:\n%s", out)
	}
	out, _, code = runCLI(t, "-c", cfg, "-f", "json", "check", "pg")
	var doc map[string]map[string]map[string]any
	if code != 1 || json.Unmarshal([]byte(out), &doc) != nil || doc["pg"]["postgresql"]["status"] != "OK" {
		t.Fatalf("json check: code %d\n%s", code, out)
	}

	// A stopped server makes the PostgreSQL probe fail.
	c.Stop(t)
	out, _, code = runCLI(t, "-c", cfg, "check", "pg")
	if code != 1 || !strings.Contains(out, "PostgreSQL: FAILED") {
		t.Fatalf("stopped server: code %d\n%s", code, out)
	}
}

func TestSwitchWALAndReplicationStatus(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	cfg, _ := pgConfig(t, c, "")
	c.Exec(t, "CREATE TABLE t AS SELECT 1 AS x")
	out, errOut, code := runCLI(t, "-c", cfg, "switch-wal", "pg")
	if code != 0 || !strings.Contains(out, "has been closed on server 'pg'") {
		t.Fatalf("switch-wal: %d %q %q", code, out, errOut)
	}
	out, _, code = runCLI(t, "-c", cfg, "switch-wal", "pg")
	if code != 0 || !strings.Contains(out, "No switch required for server 'pg'") {
		t.Fatalf("second switch-wal: %d %q", code, out)
	}
	out, _, code = runCLI(t, "-c", cfg, "switch-wal", "--force", "pg")
	if code != 0 || !strings.Contains(out, "has been closed") {
		t.Fatalf("switch-wal --force: %d %q", code, out)
	}

	c.NewStandby(t)
	// A fresh standby reports its replay position only after its first
	// status message; poll for it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, errOut, code = runCLI(t, "-c", cfg, "replication-status", "pg")
		if strings.Contains(out, "Hot standby") || time.Now().After(deadline) {
			break
		}
		c.Exec(t, "INSERT INTO t VALUES (2)")
		time.Sleep(100 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(out, "Number of streaming clients: 1") || !strings.Contains(out, "Hot standby") {
		t.Fatalf("replication-status: %d %q %q", code, out, errOut)
	}
	out, _, code = runCLI(t, "-c", cfg, "replication-status", "--target", "wal-streamer", "pg")
	if code != 0 || !strings.Contains(out, "No streaming clients attached") {
		t.Fatalf("--target wal-streamer: %d %q", code, out)
	}
	_, _, code = runCLI(t, "-c", cfg, "replication-status", "--target", "bogus", "pg")
	if code != exitUsage {
		t.Fatalf("bad --target exit %d", code)
	}
}
