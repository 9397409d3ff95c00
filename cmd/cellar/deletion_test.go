package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// realCatalog is a real PG15 cluster archiving into a Cellar catalog, with
// a table t that changes between backups.
type realCatalog struct {
	c      *pgtest.Cluster
	cfg    string
	layout catalog.Layout
}

func newRealCatalog(t *testing.T, extra string) *realCatalog {
	t.Helper()
	root := pgtest.MkdirForPostgres(t)
	home := filepath.Join(root, "home")
	l := catalog.NewLayout("pg", filepath.Join(home, "pg"), home)
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, l.IncomingDir)
	archiveCmd := fmt.Sprintf("cp %%p %[1]s/.%%f.tmp && mv %[1]s/.%%f.tmp %[1]s/%%f", l.IncomingDir)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: archiveCmd})
	cfg := filepath.Join(root, "cellar.yaml")
	text := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n%s", home, c.ConnString(), extra)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &realCatalog{c: c, cfg: cfg, layout: l}
	c.Exec(t, "CREATE TABLE t (id serial, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 500) g")
	r.archiveAll(t)
	return r
}

// cellar runs a command in-process and fails the test unless it exits 0.
func (r *realCatalog) cellar(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := r.try(t, args...)
	if code != 0 {
		t.Fatalf("cellar %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (r *realCatalog) try(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runCLI(t, append([]string{"-c", r.cfg}, args...)...)
}

func (r *realCatalog) archiveAll(t *testing.T) {
	t.Helper()
	r.c.WaitArchived(t, r.c.SwitchWAL(t))
	r.cellar(t, "archive-wal", "pg")
}

// backup changes the data, takes a backup and returns its id.
func (r *realCatalog) backup(t *testing.T, round int) string {
	t.Helper()
	r.c.Exec(t, fmt.Sprintf("INSERT INTO t (v) SELECT md5((g*%d)::text) FROM generate_series(1, 500) g", round+2))
	r.archiveAll(t)
	var bk struct {
		ID     string `json:"backup_id"`
		Status string `json:"status"`
	}
	out := r.cellar(t, "-f", "json", "backup", "--wait", "--wait-timeout", "60", "--immediate-checkpoint", "pg")
	if err := json.Unmarshal([]byte(out), &bk); err != nil || bk.Status != "DONE" {
		t.Fatalf("backup: %+v %v\n%s", bk, err, out)
	}
	return bk.ID
}

// walList is xlog.db's segment names, sorted.
func (r *realCatalog) walList(t *testing.T) []string {
	t.Helper()
	var names []string
	err := catalog.OpenXLogDB(r.layout).Scan(t.Context(), func(w catalog.WALInfo) error {
		if n, err := wal.ParseName(w.Name); err == nil && n.Kind == wal.KindSegment {
			names = append(names, w.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// TestUnreadableBackupInfoStopsRetentionRealCluster: three real backups,
// the oldest kept with keep full, REDUNDANCY 1. With the oldest's
// backup.info truncated to 300 bytes (or not parsable at all),
// list-backups shows it UNREADABLE (never EMPTY), retention and its dry
// run fail naming the file and delete nothing; with the file back,
// retention deletes only the middle backup and the oldest keeps every WAL
// from its begin_wal on.
func TestUnreadableBackupInfoStopsRetentionRealCluster(t *testing.T) {
	t.Parallel()
	r := newRealCatalog(t, "    retention_policy: REDUNDANCY 1\n")
	ids := []string{r.backup(t, 1), r.backup(t, 2), r.backup(t, 3)}
	r.archiveAll(t)
	r.cellar(t, "keep", "--target", "full", "pg", ids[0])
	path := r.layout.MetaBackupInfoPath(ids[0])
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	walBefore := r.walList(t)

	for _, tc := range []struct {
		name string
		bad  []byte
	}{
		{"truncated at a line end", good[:bytes.LastIndexByte(good[:300], '\n')+1]},
		{"truncated to 300 bytes", good[:300]},
		{"unparsable", []byte("<<<not a backup.info>>>\n")},
	} {
		name, bad := tc.name, tc.bad
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := r.try(t, "list-backups", "pg")
		if code == 0 || !strings.Contains(out, ids[0]+" - UNREADABLE") || strings.Contains(out, "EMPTY") {
			t.Fatalf("%s: list-backups exit %d:\n%s%s", name, code, out, errOut)
		}
		for _, args := range [][]string{{"retention", "--dry-run", "pg"}, {"retention", "pg"}} {
			out, errOut, code := r.try(t, args...)
			if code == 0 || !strings.Contains(out+errOut, path) || strings.Contains(out, "Deleted") {
				t.Fatalf("%s: %v exit %d:\n%s%s", name, args, code, out, errOut)
			}
		}
		if got := r.walList(t); !slices.Equal(got, walBefore) {
			t.Fatalf("%s: WAL pruned while a backup.info was unreadable: %v, was %v", name, got, walBefore)
		}
		r.cellar(t, "show-backup", "pg", ids[1]) // not deleted
	}

	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	r.cellar(t, "retention", "pg")
	if _, _, code := r.try(t, "show-backup", "pg", ids[1]); code == 0 {
		t.Fatalf("retention kept the obsolete backup %s", ids[1])
	}
	b, err := catalog.Open(r.layout).Get(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	got := r.walList(t)
	var need []string
	for _, n := range walBefore {
		if n >= b.BeginWAL {
			need = append(need, n)
		}
	}
	for _, n := range need {
		if !slices.Contains(got, n) {
			t.Fatalf("kept backup %s lost WAL %s (xlog.db now %v)", ids[0], n, got)
		}
	}
}

// TestHalfDeletedBackupRealCluster: a delete killed half-way (delete_this
// marker, part of the PGDATA copy gone) shows the backup DELETING in
// list-backups, show-backup, check-backup, status and check; `recover
// latest` picks the older intact backup and PostgreSQL recovers the
// source's data from it; the next cron pass finishes the deletion.
func TestHalfDeletedBackupRealCluster(t *testing.T) {
	t.Parallel()
	r := newRealCatalog(t, "")
	older := r.backup(t, 1)
	newer := r.backup(t, 2)
	r.c.Exec(t, "UPDATE t SET v = v || 'after' WHERE id % 7 = 0")
	want := r.c.QueryRow(t, "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t")
	r.c.Exec(t, "SELECT pg_create_restore_point('half_deleted')")
	r.archiveAll(t)

	cat := catalog.Open(r.layout)
	if err := cat.MarkDeleteThis(newer); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(r.layout.BackupDataDir(newer), "base")); err != nil {
		t.Fatal(err)
	}

	if out := r.cellar(t, "list-backups", "pg"); !strings.Contains(out, newer+" - F - DELETING") {
		t.Fatalf("list-backups:\n%s", out)
	}
	if out := r.cellar(t, "show-backup", "pg", newer); !strings.Contains(out, "  Status                 : DELETING\n") {
		t.Fatalf("show-backup:\n%s", out)
	}
	if out, errOut, code := r.try(t, "check-backup", "pg", newer); code == 0 || !strings.Contains(out+errOut, "DELETING") {
		t.Fatalf("check-backup: exit %d\n%s%s", code, out, errOut)
	}
	out := r.cellar(t, "status", "pg")
	if !strings.Contains(out, "Backups being deleted: "+newer) || !strings.Contains(out, "Last available backup: "+older) {
		t.Fatalf("status:\n%s", out)
	}
	if out, errOut, _ := r.try(t, "check", "pg"); !strings.Contains(out, "1 being deleted ("+newer+")") {
		t.Fatalf("check:\n%s%s", out, errOut)
	}

	dest := filepath.Join(pgtest.MkdirForPostgres(t), "data")
	var res struct{ BackupID string }
	out = r.cellar(t, "-f", "json", "recover", "--target-name", "half_deleted", "--target-action", "promote", "pg", "latest", dest)
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.BackupID != older {
		t.Fatalf("recover latest used %q, want the intact %s (%v)\n%s", res.BackupID, older, err, out)
	}
	if got := recoverCluster(t, r.c, dest, "false"); got != want {
		t.Fatalf("recovered %q, source has %q", got, want)
	}

	r.cellar(t, "cron")
	if _, err := os.Stat(r.layout.BackupDirPath(newer)); !os.IsNotExist(err) {
		t.Fatalf("cron left base/%s: %v", newer, err)
	}
	if out := r.cellar(t, "list-backups", "pg"); strings.Contains(out, newer) || !strings.Contains(out, older) {
		t.Fatalf("list-backups after cron:\n%s", out)
	}
	if ids, err := cat.PendingDeletions(); err != nil || len(ids) > 0 {
		t.Fatalf("markers left after cron: %v %v", ids, err)
	}
}

// TestDeleteRefusedWhileRestoring: while another process holds a backup's
// lock shared (as a restore does), `cellar delete` refuses naming it and
// `cellar retention` skips that backup, reports it and deletes the rest.
func TestDeleteRefusedWhileRestoring(t *testing.T) {
	t.Parallel()
	f := newKillFixture(t, "REDUNDANCY 1")
	holder := exec.Command("flock", "--shared", "--nonblock", f.layout.BackupLockPath(f.ids[0]), "-c", "echo locked; exec sleep 60")
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("flock: %q %v", line, err)
	}
	want := fmt.Sprintf("backup %s is being restored by PID %d", f.ids[0], holder.Process.Pid)

	out, errOut, code := runCLI(t, "-c", f.cfg, "delete", "pg", f.ids[0])
	if code == 0 || !strings.Contains(errOut, want) {
		t.Fatalf("delete: exit %d, want %q\n%s%s", code, want, out, errOut)
	}
	out, errOut, code = runCLI(t, "-c", f.cfg, "retention", "pg")
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("retention: exit %d, want %q reported\n%s%s", code, want, out, errOut)
	}
	out, errOut, code = runCLI(t, "-c", f.cfg, "list-backups", "--minimal", "pg")
	if got, want := strings.Fields(out), []string{f.ids[2], f.ids[0]}; code != 0 || !slices.Equal(got, want) {
		t.Fatalf("after retention: %v, want %v (exit %d %s)", got, want, code, errOut)
	}
}
