package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/internal/walclient"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// spoolSource is one archived cluster of TestWALRestoreDefaultSpoolPerServer.
type spoolSource struct {
	name string
	c    *pgtest.Cluster
	base string // pg_basebackup taken before the data below
}

// archiveAll runs archive-wal for the named servers in process.
func archiveAll(t *testing.T, cfgFile string, names ...string) {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		s, err := server.New(cfg, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := s.ArchiveWAL(t.Context(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Unknown)+len(rep.Duplicates) != 0 {
			t.Fatalf("archive-wal %s report %+v", n, rep)
		}
	}
}

// cleanDefaultSpool removes what the test leaves in the machine-wide spool
// root (entries that were not there before).
func cleanDefaultSpool(t *testing.T) {
	before := map[string]bool{}
	ents, _ := os.ReadDir(walclient.DefaultSpoolDir)
	for _, e := range ents {
		before[e.Name()] = true
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(walclient.DefaultSpoolDir)
		for _, e := range ents {
			if !before[e.Name()] {
				os.RemoveAll(filepath.Join(walclient.DefaultSpoolDir, e.Name()))
			}
		}
	})
}

// TestWALRestoreDefaultSpoolPerServer: two servers with their own system
// identifiers are restored one after the other through the restore_command
// `recover --get-wal` writes (wal-restore -P -p 4, default spool). The
// first restore stops at a recovery target, leaving prefetched segments
// behind; the second must still replay its own WAL, never the first
// server's segments of the same name, and reach its own data.
func TestWALRestoreDefaultSpoolPerServer(t *testing.T) {
	t.Parallel()
	cleanDefaultSpool(t)
	root := pgtest.MkdirForPostgres(t)
	bin := buildCellar(t, root)
	home := filepath.Join(root, "home")
	bases := filepath.Join(root, "bases")
	cfgFile := filepath.Join(root, "config.yaml")
	for _, d := range []string{home, bases} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, root)
	var srcs []*spoolSource
	cfgText := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n", home)
	for _, name := range []string{"a", "b"} {
		archiveCmd := fmt.Sprintf("%s -c %s wal-archive %s %%p", bin, cfgFile, name)
		c := pgtest.Start(t, pgtest.Options{Unique: true, ArchiveCommand: archiveCmd})
		cfgText += fmt.Sprintf("  %s:\n    conninfo: %q\n", name, c.ConnString())
		srcs = append(srcs, &spoolSource{name: name, c: c, base: filepath.Join(bases, name+"-base")})
	}
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, cfgFile)
	if srcs[0].c.SystemID(t) == srcs[1].c.SystemID(t) {
		t.Fatal("the two clusters share a system identifier")
	}
	const sum = "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t"
	for _, s := range srcs {
		s.c.Exec(t, "CREATE TABLE t (id serial, v text)")
		s.c.RunAsPostgres(t, "pg_basebackup", "-D", s.base, "-X", "none", "-c", "fast", "--no-sync")
	}

	// Server a: a recovery target in the fifth segment after its base
	// backup (segment 6: wal-restore -p 4 fetches 2 and prefetches 3-5,
	// then fetches 6 and prefetches 7-9), then more WAL, so that a restore
	// to the target leaves prefetched segments in the spool.
	a, b := srcs[0], srcs[1]
	a.c.Exec(t, "INSERT INTO t (v) SELECT 'a' || g FROM generate_series(1, 1000) g")
	a.c.GenerateWAL(t, 3)
	a.c.Exec(t, "INSERT INTO t (v) SELECT 'a2' || g FROM generate_series(1, 1000) g")
	wantA := a.c.QueryRow(t, sum)
	target := a.c.QueryRow(t, "SELECT pg_current_wal_insert_lsn()")
	a.c.GenerateWAL(t, 6)
	a.c.Exec(t, "INSERT INTO t (v) SELECT 'late' || g FROM generate_series(1, 1000) g")
	a.c.WaitArchived(t, a.c.SwitchWAL(t))

	for i := range 8 {
		b.c.Exec(t, fmt.Sprintf("INSERT INTO t (v) SELECT 'b%d-' || g FROM generate_series(1, 2000) g", i))
		b.c.GenerateWAL(t, 1)
	}
	wantB := b.c.QueryRow(t, sum)
	b.c.WaitArchived(t, b.c.SwitchWAL(t))

	archiveAll(t, cfgFile, "a", "b")
	chownTree(t, home)

	restore := func(s *spoolSource, extra string) string {
		dir := filepath.Join(bases, s.name+"-restored")
		if out, err := exec.Command("cp", "-a", s.base, dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		cmd := fmt.Sprintf("%s -c %s wal-restore -P -p 4 %s %%f %%p", bin, cfgFile, s.name)
		return recoverClusterWith(t, s.c, dir, cmd, extra)
	}
	if got := restore(a, fmt.Sprintf("recovery_target_lsn = '%s'\nrecovery_target_action = 'promote'\n", target)); got != wantA {
		t.Fatalf("server a restored to %s has %q, want %q", target, got, wantA)
	}
	if got := restore(b, ""); got != wantB {
		t.Fatalf("server b restored after server a has %q, want %q (served another server's WAL?)", got, wantB)
	}
	if log, _ := os.ReadFile(filepath.Join(bases, "b-restored", "recovery.log")); strings.Contains(string(log), "different database system") {
		t.Fatalf("server b was offered another cluster's WAL:\n%s", log)
	}
	checkForeignWALRefused(t, bin, cfgFile, a.base, b.base, b.c.SystemID(t), a.c.SystemID(t))
	checkRecoveryAborts(t, b.c, bin, cfgFile, b.base, filepath.Join(bases, "b-wrong"))
}

// runInDir runs the cellar binary as postgres in dir (where PostgreSQL
// runs restore_command: the data directory).
func runInDir(t *testing.T, dir, bin string, args ...string) (stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	asPostgres(t, cmd)
	cmd.Dir = dir
	var e strings.Builder
	cmd.Stderr = &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return e.String(), code
}

// walSysID reads the system identifier from a segment's long header.
func walSysID(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := wal.ParsePageHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h.SystemID
}

// checkForeignWALRefused: in b's data directory, a segment of server a
// found in the spool is discarded and b's own copy restored; asked for
// server a's segment directly, wal-restore refuses with RestoreWrongWAL
// and one line naming the server, the file and both identifiers.
func checkForeignWALRefused(t *testing.T, bin, cfgFile, aData, pgdata, bSys, aSys string) {
	const seg = "000000010000000000000007"
	spool := filepath.Join(filepath.Dir(pgdata), "shared-spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	chownTree(t, spool)
	if _, code := runInDir(t, aData, bin, "-c", cfgFile, "wal-restore", "--spool-dir", spool, "a", seg, filepath.Join(spool, seg)); code != 0 {
		t.Fatalf("fetch a's %s into the spool: exit %d", seg, code)
	}
	dest := filepath.Join(filepath.Dir(pgdata), "RECOVERYXLOG")
	errOut, code := runInDir(t, pgdata, bin, "-c", cfgFile, "wal-restore", "--spool-dir", spool, "b", seg, dest)
	if code != 0 || fmt.Sprint(walSysID(t, dest)) != bSys {
		t.Fatalf("b's restore with a's segment spooled: exit %d, restored sysid %d, want %s: %s", code, walSysID(t, dest), bSys, errOut)
	}
	if _, err := os.Lstat(filepath.Join(spool, seg)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("foreign spooled segment kept: %v", err)
	}
	os.Remove(dest)
	errOut, code = runInDir(t, pgdata, bin, "-c", cfgFile, "wal-restore", "a", seg, dest)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != walclient.RestoreWrongWAL || len(lines) != 1 || !strings.Contains(errOut, "server a") ||
		!strings.Contains(errOut, seg) || !strings.Contains(errOut, aSys) || !strings.Contains(errOut, bSys) {
		t.Fatalf("restoring a's WAL into b: exit %d (want %d), stderr %q", code, walclient.RestoreWrongWAL, errOut)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("foreign WAL handed over: %v", err)
	}
}

// checkRecoveryAborts: PostgreSQL restoring b's base backup through a
// restore_command for server a stops (FATAL) at the first foreign segment
// instead of promoting.
func checkRecoveryAborts(t *testing.T, src *pgtest.Cluster, bin, cfgFile, base, dir string) {
	if out, err := exec.Command("cp", "-a", base, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	sock := pgtest.MkdirForPostgres(t)
	conf := fmt.Sprintf("\nport = %d\nunix_socket_directories = '%s'\nlisten_addresses = ''\narchive_mode = off\nrestore_command = '%s -c %s wal-restore a %%f %%p'\n",
		freeTCPPort(t), sock, bin, cfgFile)
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, dir)
	logFile := filepath.Join(dir, "recovery.log")
	_, err = src.RunAsPostgresErr("pg_ctl", "-D", dir, "-l", logFile, "-w", "-t", "60", "start")
	t.Cleanup(func() { _, _ = src.RunAsPostgresErr("pg_ctl", "-D", dir, "-m", "immediate", "-w", "stop") })
	log, _ := os.ReadFile(logFile)
	if err == nil || bytes.Contains(log, []byte("ready to accept connections")) || !bytes.Contains(log, []byte("is from database system")) {
		t.Fatalf("recovery with another server's WAL was not aborted (pg_ctl: %v); log:\n%s", err, log)
	}
}
