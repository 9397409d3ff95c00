package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// TestVerifyBackupAndRecoverDamaged runs the commands on a backup taken by
// cellar from a real server: verify-backup says OK, then FAILED naming the
// file once a data file is cut in half (and recover refuses it with a
// non-zero exit), then UNVERIFIABLE with its own exit code without a
// manifest; every verdict is saved.
func TestVerifyBackupAndRecoverDamaged(t *testing.T) {
	home := pgtest.MkdirForPostgres(t)
	l := catalog.NewLayout("pg", filepath.Join(home, "pg"), home)
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, l.IncomingDir)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: fmt.Sprintf("cp %%p %[1]s/.%%f.tmp && mv %[1]s/.%%f.tmp %[1]s/%%f", l.IncomingDir)})
	cfg := filepath.Join(home, "cellar.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n", home, c.ConnString())), 0o600); err != nil {
		t.Fatal(err)
	}
	cellar := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		out, errOut, code := runCLI(t, append([]string{"-c", cfg}, args...)...)
		if code != wantCode {
			t.Fatalf("cellar %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out, errOut
	}
	c.Exec(t, "CREATE TABLE t (id serial, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 3000) g; CHECKPOINT")
	rel := strings.TrimSpace(c.QueryRow(t, "SELECT pg_relation_filepath('t')"))
	c.WaitArchived(t, c.SwitchWAL(t))
	cellar(0, "archive-wal", "pg")
	out, _ := cellar(0, "-f", "json", "backup", "--wait", "--wait-timeout", "60", "--immediate-checkpoint", "pg")
	var bk struct {
		ID string `json:"backup_id"`
	}
	if err := json.Unmarshal([]byte(out), &bk); err != nil || bk.ID == "" {
		t.Fatalf("backup: %q %v", out, err)
	}

	if out, _ = cellar(0, "verify-backup", "pg", "latest"); !strings.Contains(out, "backup "+bk.ID+": OK") {
		t.Fatalf("verify-backup of an intact backup: %q", out)
	}
	data := filepath.Join(l.BackupDataDir(bk.ID), filepath.FromSlash(rel))
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut := cellar(1, "verify-backup", "pg", "all")
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, rel) || !strings.Contains(errOut, "1 of 1 backups FAILED") {
		t.Fatalf("verify-backup of a damaged backup: %q %q", out, errOut)
	}
	v, ok, err := catalog.Open(l).Verification(bk.ID)
	if err != nil || !ok || v.Result != catalog.VerifyFailed || !strings.Contains(v.Error, rel) {
		t.Fatalf("saved record %+v %v %v", v, ok, err)
	}
	dest := filepath.Join(pgtest.MkdirForPostgres(t), "pgdata")
	if _, errOut = cellar(1, "recover", "--target-immediate", "pg", bk.ID, dest); !strings.Contains(errOut, rel) || !strings.Contains(errOut, "size") {
		t.Fatalf("recover of a damaged backup: %q", errOut)
	}

	if err := os.Remove(filepath.Join(l.BackupDataDir(bk.ID), "backup_manifest")); err != nil {
		t.Fatal(err)
	}
	if out, errOut = cellar(exitUnverifiable, "verify-backup", "pg", bk.ID); !strings.Contains(out, "UNVERIFIABLE") || !strings.Contains(errOut, "not known to be good") {
		t.Fatalf("verify-backup without a manifest: %q %q", out, errOut)
	}
}
