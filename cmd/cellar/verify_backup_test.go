package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/recovery"
)

// cellarBackup is a real server whose table t was backed up by cellar.
type cellarBackup struct {
	c    *pgtest.Cluster
	cfg  string
	l    catalog.Layout
	id   string
	rel  string // t's data file, relative to PGDATA
	want string // t's content digest
}

func newCellarBackup(t *testing.T, rows int) *cellarBackup {
	t.Helper()
	home := pgtest.MkdirForPostgres(t)
	cb := &cellarBackup{l: catalog.NewLayout("pg", filepath.Join(home, "pg"), home), cfg: filepath.Join(home, "cellar.yaml")}
	if err := cb.l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, cb.l.IncomingDir)
	cb.c = pgtest.Start(t, pgtest.Options{ArchiveCommand: fmt.Sprintf("cp %%p %[1]s/.%%f.tmp && mv %[1]s/.%%f.tmp %[1]s/%%f", cb.l.IncomingDir)})
	if err := os.WriteFile(cb.cfg, []byte(fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n", home, cb.c.ConnString())), 0o600); err != nil {
		t.Fatal(err)
	}
	cb.c.Exec(t, fmt.Sprintf("CREATE TABLE t (id serial, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, %d) g; CHECKPOINT", rows))
	cb.rel = strings.TrimSpace(cb.c.QueryRow(t, "SELECT pg_relation_filepath('t')"))
	cb.want = strings.TrimSpace(cb.c.QueryRow(t, "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t"))
	cb.c.WaitArchived(t, cb.c.SwitchWAL(t))
	cb.run(t, 0, "archive-wal", "pg")
	out, _ := cb.run(t, 0, "-f", "json", "backup", "--wait", "--wait-timeout", "60", "--immediate-checkpoint", "pg")
	var bk struct {
		ID string `json:"backup_id"`
	}
	if err := json.Unmarshal([]byte(out), &bk); err != nil || bk.ID == "" {
		t.Fatalf("backup: %q %v", out, err)
	}
	cb.id = bk.ID
	return cb
}

// run runs cellar in-process and wants exit code wantCode.
func (cb *cellarBackup) run(t *testing.T, wantCode int, args ...string) (string, string) {
	t.Helper()
	out, errOut, code := runCLI(t, append([]string{"-c", cb.cfg}, args...)...)
	if code != wantCode {
		t.Fatalf("cellar %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
	}
	return out, errOut
}

// TestVerifyBackupAndRecoverDamaged runs the commands on a backup taken by
// cellar from a real server: verify-backup says OK, then FAILED naming the
// file once a data file is cut in half (and recover refuses it with a
// non-zero exit), then UNVERIFIABLE with its own exit code without a
// manifest; every verdict is saved.
func TestVerifyBackupAndRecoverDamaged(t *testing.T) {
	cb := newCellarBackup(t, 3000)
	var out, errOut string
	if out, _ = cb.run(t, 0, "verify-backup", "pg", "latest"); !strings.Contains(out, "backup "+cb.id+": OK") {
		t.Fatalf("verify-backup of an intact backup: %q", out)
	}
	data := filepath.Join(cb.l.BackupDataDir(cb.id), filepath.FromSlash(cb.rel))
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut = cb.run(t, 1, "verify-backup", "pg", "all")
	if !strings.Contains(out, "FAILED") || !strings.Contains(out, cb.rel) || !strings.Contains(errOut, "1 of 1 backups FAILED") {
		t.Fatalf("verify-backup of a damaged backup: %q %q", out, errOut)
	}
	v, ok, err := catalog.Open(cb.l).Verification(cb.id)
	if err != nil || !ok || v.Result != catalog.VerifyFailed || !strings.Contains(v.Error, cb.rel) {
		t.Fatalf("saved record %+v %v %v", v, ok, err)
	}
	dest := filepath.Join(pgtest.MkdirForPostgres(t), "pgdata")
	if _, errOut = cb.run(t, 1, "recover", "--target-immediate", "pg", cb.id, dest); !strings.Contains(errOut, cb.rel) || !strings.Contains(errOut, "size") {
		t.Fatalf("recover of a damaged backup: %q", errOut)
	}

	if err := os.Remove(filepath.Join(cb.l.BackupDataDir(cb.id), "backup_manifest")); err != nil {
		t.Fatal(err)
	}
	if out, errOut = cb.run(t, exitUnverifiable, "verify-backup", "pg", cb.id); !strings.Contains(out, "UNVERIFIABLE") || !strings.Contains(errOut, "not known to be good") {
		t.Fatalf("verify-backup without a manifest: %q %q", out, errOut)
	}
}

// TestRecoverKilledMidRestore: a recover killed with SIGKILL while copying
// never leaves a restore that looks complete; a plain rerun refuses the
// directory saying the restore is incomplete, and a rerun with
// --delta-restore finishes it into a cluster holding the source's data.
func TestRecoverKilledMidRestore(t *testing.T) {
	cb := newCellarBackup(t, 300000)
	bin := buildCellar(t, pgtest.MkdirForPostgres(t))
	dest := filepath.Join(pgtest.MkdirForPostgres(t), "pgdata")
	args := []string{"-c", cb.cfg, "recover", "--target-immediate", "--target-action", "promote", "-j", "1", "pg", cb.id, dest}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it as soon as it has started writing data (backup_label comes
	// right after PG_VERSION, long before the table's ~25 MB).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dest, "backup_label")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("recover wrote no backup_label in 60 s")
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(dest, recovery.RecoverInfoFile)); err == nil {
		t.Fatalf("the restore finished before it was killed: make the table bigger")
	}
	_, errOut, code := runBin(t, bin, args...)
	if code != 1 || !strings.Contains(errOut, "incomplete restore") || !strings.Contains(errOut, "--delta-restore") {
		t.Fatalf("rerun into the killed restore: exit %d %q", code, errOut)
	}
	if out, errOut, code := runBin(t, bin, append([]string{"-c", cb.cfg, "recover", "--delta-restore"}, args[3:]...)...); code != 0 {
		t.Fatalf("delta rerun: exit %d\n%s%s", code, out, errOut)
	}
	if got := recoverCluster(t, cb.c, dest, "false"); got != cb.want {
		t.Fatalf("cluster restored after the kill has %q, source has %q", got, cb.want)
	}
}
