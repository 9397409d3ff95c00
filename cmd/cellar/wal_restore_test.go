package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// chownTree gives a directory tree to the postgres user (the supported
// same-host setup: one OS user owns the catalog and runs every cellar
// command that touches it).
func chownTree(t *testing.T, dir string) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWALArchiveRestoreRealCluster: PostgreSQL archives through
// `cellar wal-archive` (local mode, run by PostgreSQL as the postgres
// user), archive-wal stores the segments zstd-compressed, get-wal returns
// PostgreSQL's exact bytes for every one of them, and two clusters
// restored from a pg_basebackup base replay the archive through
// `cellar wal-restore` (without and with -p 4 prefetch) to the source's
// data.
func TestWALArchiveRestoreRealCluster(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	root := pgtest.MkdirForPostgres(t)
	bin := buildCellar(t, root)
	home := filepath.Join(root, "home")
	cfgFile := filepath.Join(root, "config.yaml")
	ref := filepath.Join(root, "ref")
	for _, d := range []string{home, ref} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, root)
	archiveCmd := fmt.Sprintf("%s -c %s wal-archive pg %%p && cp %%p %s/%%f", bin, cfgFile, ref)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: archiveCmd})
	cfgText := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n    compression: zstd\n", home, c.ConnString())
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, cfgFile)

	c.Exec(t, "CREATE TABLE t (id serial, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 1000) g")
	bases := filepath.Join(root, "bases")
	if err := os.Mkdir(bases, 0o700); err != nil {
		t.Fatal(err)
	}
	chownTree(t, bases)
	base := filepath.Join(bases, "base")
	start := time.Now()
	c.RunAsPostgres(t, "pg_basebackup", "-D", base, "-X", "none", "-c", "fast", "--no-sync")
	t.Logf("base backup in %v", time.Since(start))

	start = time.Now()
	for i := range 5 {
		c.Exec(t, fmt.Sprintf("INSERT INTO t (v) SELECT md5((g*%d)::text) FROM generate_series(1, 2000) g; UPDATE t SET v = v || 'x' WHERE id %% 7 = %d", i+2, i))
		c.GenerateWAL(t, 10)
	}
	want := c.QueryRow(t, "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t")
	last := c.SwitchWAL(t)
	c.WaitArchived(t, last)
	t.Logf("%s archived through wal-archive in %v", last, time.Since(start))

	// archive-wal, in process as root; then hand the catalog back to
	// postgres, which reads it in restore_command.
	start = time.Now()
	cfg, err := config.Load(config.LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.ArchiveWAL(ctx, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unknown)+len(rep.Duplicates) != 0 {
		t.Fatalf("archive-wal report %+v", rep)
	}
	chownTree(t, home)
	t.Logf("archive-wal: %d files in %v", len(rep.Archived), time.Since(start))

	// Every file PostgreSQL archived comes back byte for byte.
	start = time.Now()
	refs, err := os.ReadDir(ref)
	if err != nil {
		t.Fatal(err)
	}
	segments := 0
	for _, r := range refs {
		want, err := os.ReadFile(filepath.Join(ref, r.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got, errOut, code := runBin(t, bin, "-c", cfgFile, "get-wal", "pg", r.Name())
		if code != 0 || !bytes.Equal(got, want) {
			t.Fatalf("get-wal %s: exit %d, %d bytes (want %d, equal %v): %s", r.Name(), code, len(got), len(want), bytes.Equal(got, want), errOut)
		}
		if wal.IsSegmentName(r.Name()) {
			segments++
		}
	}
	if segments < 50 {
		t.Fatalf("only %d segments archived", segments)
	}
	t.Logf("get-wal verified %d files (%d segments) in %v", len(refs), segments, time.Since(start))
	if _, errOut, code := runBin(t, bin, "-c", cfgFile, "get-wal", "pg", "0000000100000000000000FF"); code != 1 || !strings.Contains(errOut, "not found in server 'pg'") {
		t.Fatalf("get-wal of a missing WAL: exit %d %q", code, errOut)
	}
	if _, _, code := runBin(t, bin, "-c", cfgFile, "get-wal", "pg", "../wals"); code != 3 {
		t.Fatalf("get-wal of a bad name: exit %d, want 3", code)
	}
	out, _, code := runBin(t, bin, "-c", cfgFile, "get-wal", "--peek", "3", "pg", last)
	if code != 0 || strings.TrimSpace(string(out)) != last {
		t.Fatalf("get-wal --peek 3 of the newest segment: %d %q", code, out)
	}

	// Point-in-time recovery through restore_command, two variants in parallel.
	for _, tc := range []struct {
		name  string
		flags string
	}{{"plain", ""}, {"prefetch", "-p 4 --spool-dir " + filepath.Join(root, "spool")}} {
		dir := filepath.Join(bases, tc.name)
		if out, err := exec.Command("cp", "-a", base, dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			restoreCmd := fmt.Sprintf("%s -c %s wal-restore %s pg %%f %%p", bin, cfgFile, tc.flags)
			got := recoverCluster(t, c, dir, restoreCmd)
			if got != want {
				t.Fatalf("restored cluster has %q, source has %q", got, want)
			}
			if tc.flags != "" {
				ents, _ := os.ReadDir(filepath.Join(root, "spool"))
				if len(ents) != 0 {
					t.Errorf("spool not drained after recovery: %d files, first %s", len(ents), ents[0].Name())
				}
			}
		})
	}
}

// recoverCluster starts the data directory dir (a base backup) in archive
// recovery with restoreCmd, waits for the end of recovery (promotion at
// the end of the archive) and returns the checksum query's answer.
func recoverCluster(t *testing.T, src *pgtest.Cluster, dir, restoreCmd string) string {
	t.Helper()
	return recoverClusterWith(t, src, dir, restoreCmd, "")
}

// recoverClusterWith is recoverCluster with extra postgresql.conf lines
// (a recovery target, for example).
func recoverClusterWith(t *testing.T, src *pgtest.Cluster, dir, restoreCmd, extraConf string) string {
	t.Helper()
	sock := pgtest.MkdirForPostgres(t)
	port := freeTCPPort(t)
	conf := fmt.Sprintf("\nport = %d\nunix_socket_directories = '%s'\nlisten_addresses = ''\narchive_mode = off\nrestore_command = '%s'\n%s",
		port, sock, strings.ReplaceAll(restoreCmd, "'", "''"), extraConf)
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
	start := time.Now()
	src.RunAsPostgres(t, "pg_ctl", "-D", dir, "-l", logFile, "-w", "-t", "60", "start")
	t.Cleanup(func() { _, _ = src.RunAsPostgresErr("pg_ctl", "-D", dir, "-m", "immediate", "-w", "stop") })
	psql := func(sql string) (string, error) {
		out, err := src.RunAsPostgresErr("psql", "-h", sock, "-p", strconv.Itoa(port), "-d", "postgres", "-XAtc", sql)
		return strings.TrimSpace(out), err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := psql("SELECT pg_is_in_recovery()")
		if err == nil && out == "f" {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("recovery did not finish in 60 s (%q, %v); log:\n%s", out, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("recovered in %v", time.Since(start))
	out, err := psql("SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if log, _ := os.ReadFile(logFile); !bytes.Contains(log, []byte("restored log file")) {
		t.Fatalf("no WAL restored through restore_command; log:\n%s", log)
	}
	return out
}
