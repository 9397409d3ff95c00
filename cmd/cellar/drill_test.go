package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// TestDrillCommands runs a drill of a backup cellar took, with WAL archived
// after it and a user check that only passes when that WAL was replayed,
// then reads the record back with drill --list and show-drill.
func TestDrillCommands(t *testing.T) {
	cb := newCellarBackup(t, 100)
	cb.c.Exec(t, "INSERT INTO t (v) SELECT 'after' FROM generate_series(1, 50)")
	cb.c.WaitArchived(t, cb.c.SwitchWAL(t))
	cb.run(t, 0, "archive-wal", "pg")
	checks := t.TempDir()
	for name, body := range map[string]string{"t.sql": "SELECT count(*) FROM t WHERE v = 'after'", "t.expected": "50"} {
		if err := os.WriteFile(filepath.Join(checks, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	scratch := pgtest.MkdirForPostgres(t)
	out, _ := cb.run(t, 0, "drill", "--scratch-directory", scratch, "--checks-directory", checks, "pg")
	if !strings.Contains(out, "Result          : OK") || !strings.Contains(out, `Check t         : OK (got "50", expected "50")`) {
		t.Fatalf("drill output:\n%s", out)
	}
	if ents, err := os.ReadDir(scratch); err != nil || len(ents) != 0 {
		t.Fatalf("scratch directory after the drill: %v %v", ents, err)
	}
	out, _ = cb.run(t, 0, "drill", "--list", "pg")
	if !strings.Contains(out, cb.id) || !strings.Contains(out, " OK ") {
		t.Fatalf("drill --list:\n%s", out)
	}
	out, _ = cb.run(t, 0, "-f", "json", "show-drill", "pg", "latest")
	var rec struct {
		BackupID string `json:"backup_id"`
		Result   string `json:"result"`
		Phases   []struct {
			Name string `json:"name"`
		} `json:"phases"`
	}
	if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.BackupID != cb.id || rec.Result != "OK" || len(rec.Phases) != 4 {
		t.Fatalf("show-drill -f json: %v\n%s", err, out)
	}
	if st := drillProbeStatus(t, cb); st != "OK" {
		t.Fatalf("drill probe after a good drill: %s", st)
	}
	// A wrong expectation fails the drill with exit 1, naming both values.
	if err := os.WriteFile(filepath.Join(checks, "t.expected"), []byte("49"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut := cb.run(t, 1, "drill", "--scratch-directory", scratch, "--checks-directory", checks, "pg", cb.id)
	if !strings.Contains(out+errOut, `returned "50", expected "49"`) {
		t.Fatalf("failed drill output:\n%s%s", out, errOut)
	}
	if st := drillProbeStatus(t, cb); st != "FAILED" {
		t.Fatalf("drill probe after a failed drill: %q, want FAILED", st)
	}
	cb.run(t, 3, "show-drill", "pg", "nonsense")
}

// drillProbeStatus is the restore drill probe's status in `check -f json`.
func drillProbeStatus(t *testing.T, cb *cellarBackup) string {
	t.Helper()
	out, _, _ := runCLI(t, "-c", cb.cfg, "-f", "json", "check", "pg")
	var doc map[string]map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("check -f json: %v\n%s", err, out)
	}
	st, _ := doc["pg"]["restore_drill_maximum_age"]["status"].(string)
	return st
}
