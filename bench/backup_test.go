//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// backupIDs lists the backup directories of a Cellar server.
func backupIDs(t testing.TB, serverDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(serverDir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids
}

// duBytes is `du -s -B1` over paths, counting hard-linked inodes once
// (du's own rule); it returns one figure per path, in order.
func duBytes(t testing.TB, paths ...string) []int64 {
	t.Helper()
	out, err := exec.Command("du", append([]string{"-s", "-B1"}, paths...)...).Output()
	if err != nil {
		t.Fatalf("du %v: %v", paths, err)
	}
	var res []int64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		n, _ := strconv.ParseInt(f[0], 10, 64)
		res = append(res, n)
	}
	return res
}

// TestPeerBackupRestore: scenario 4, cellar backup (plain, lz4, zstd) vs
// pg_basebackup and pgBackRest on a pgbench database, reuse_backup=link
// disk usage, and cellar recover vs pgbackrest restore.
func TestPeerBackupRestore(t *testing.T) {
	for _, cmd := range []string{"backup", "recover", "archive-wal"} {
		if !cellarHas(cmd) {
			t.Fatalf("`cellar %s` is not registered in the CLI of this tree: the backup/restore comparison cannot run", cmd)
		}
	}
	needBinary(t, "/usr/bin/pgbackrest", "pgbackrest")
	scale := envInt(t, "CELLAR_BENCH_SCALE", 100)
	rounds := envInt(t, "CELLAR_BENCH_ROUNDS", 3)
	pgUID, pgGID := osUser(t, "postgres")

	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: "/bin/true", ExtraConf: []string{"max_wal_size = 4GB", "checkpoint_timeout = 30min"}})
	c.Pgbench(t, "-i", "-s", strconv.Itoa(scale), "-q")
	c.Exec(t, "CHECKPOINT")
	dbSize := c.QueryRow(t, "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database")

	root := benchDir(t, "cellar-bench-backup")
	ce := newCellarEnv(t, root, c.TCPConnString(), map[string][]string{
		"plain": {"backup_compression: none", "immediate_checkpoint: true", "archiver: true"},
		"lz4":   {"backup_compression: lz4", "immediate_checkpoint: true", "archiver: true"},
		"zstd":  {"backup_compression: zstd", "immediate_checkpoint: true", "archiver: true"},
		"link":  {"backup_compression: none", "immediate_checkpoint: true", "archiver: true", "reuse_backup: link"},
	})
	// WAL shipping into every server's incoming/ (postgres writes there).
	var ac []string
	for _, srv := range []string{"plain", "lz4", "zstd", "link"} {
		dir := ce.serverDir(srv)
		for _, d := range []string{"base", "wals", "incoming", "streaming", "errors", "meta"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{ce.home, dir} {
			if err := os.Chmod(p, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(filepath.Join(dir, "incoming"), 0o1777); err != nil {
			t.Fatal(err)
		}
		ac = append(ac, fmt.Sprintf("install -m 0644 %%p %s/incoming/%%f", dir))
	}
	c.SetConf(t, "archive_command", strings.Join(ac, " && "))
	c.Exec(t, "SELECT pg_switch_wal()")

	// pgBackRest, run as postgres.
	br := filepath.Join(root, "pgbackrest")
	for _, d := range []string{"repo", "log", "lock"} {
		if err := os.MkdirAll(filepath.Join(br, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(br, "pgbackrest.conf"), fmt.Sprintf(`[global]
repo1-path=%s/repo
log-path=%s/log
lock-path=%s/lock
log-level-console=warn
log-level-file=off
process-max=2
compress-type=lz4
start-fast=y
archive-check=n
repo1-retention-full=9999

[bench]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
pg1-user=postgres
`, br, br, br, c.DataDir, c.Port, c.SocketDir), 0o644)
	chownTree(t, br, pgUID, pgGID)
	pgbr := func(args ...string) *exec.Cmd {
		return asUser(exec.Command("/usr/bin/pgbackrest", append([]string{"--config=" + filepath.Join(br, "pgbackrest.conf"), "--stanza=bench"}, args...)...), pgUID, pgGID, br)
	}
	if out, err := pgbr("stanza-create").CombinedOutput(); err != nil {
		t.Fatalf("pgbackrest stanza-create: %v\n%s", err, out)
	}

	scratch := filepath.Join(root, "out")
	fresh := func() string {
		_ = os.RemoveAll(scratch)
		if err := os.MkdirAll(scratch, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(scratch, pgUID, pgGID); err != nil {
			t.Fatal(err)
		}
		syncFS()
		return scratch
	}
	clearCellar := func(srv string) {
		for _, id := range backupIDs(t, ce.serverDir(srv)) {
			_ = os.RemoveAll(filepath.Join(ce.serverDir(srv), "base", id))
		}
		syncFS()
	}
	pgBaseBackup := func(extra ...string) sample {
		dst := fresh()
		args := append([]string{"-h", c.SocketDir, "-p", strconv.Itoa(c.Port), "-U", "postgres", "-D", dst, "-Ft", "-X", "none", "-c", "fast", "--no-sync"}, extra...)
		waitQuiet(t)
		s, _ := timeCmd(t, c.Command("pg_basebackup", args...))
		return s
	}
	cellarBackup := func(srv string, keep bool) sample {
		if !keep {
			clearCellar(srv)
		}
		waitQuiet(t)
		s, _ := timeCmd(t, ce.cmd("backup", srv))
		return s
	}

	var cPlain, pPlain, cLZ4, pLZ4, cZstd, pZstd, brLZ4 []sample
	for r := range rounds {
		cPlain = append(cPlain, cellarBackup("plain", false))
		pPlain = append(pPlain, pgBaseBackup())
		cLZ4 = append(cLZ4, cellarBackup("lz4", false))
		pLZ4 = append(pLZ4, pgBaseBackup("--compress=server-lz4"))
		cZstd = append(cZstd, cellarBackup("zstd", false))
		pZstd = append(pZstd, pgBaseBackup("--compress=client-zstd"))
		waitQuiet(t)
		s, _ := timeCmd(t, pgbr("backup", "--type=full"))
		brLZ4 = append(brLZ4, s)
		t.Logf("backup round %d: cellar plain %s, pg_basebackup %s, cellar lz4 %s, pg_basebackup server-lz4 %s, cellar zstd %s, pg_basebackup client-zstd %s, pgbackrest lz4 %s",
			r+1, secs(cPlain[r].wall), secs(pPlain[r].wall), secs(cLZ4[r].wall), secs(pLZ4[r].wall), secs(cZstd[r].wall), secs(pZstd[r].wall), secs(brLZ4[r].wall))
	}
	_ = os.RemoveAll(scratch)
	sizes := duBytes(t, filepath.Join(ce.serverDir("plain"), "base"), filepath.Join(ce.serverDir("lz4"), "base"), filepath.Join(ce.serverDir("zstd"), "base"))
	emit(t, fmt.Sprintf("backup dataset: pgbench scale %d, databases %s; cellar backup sizes plain %.0f MB, lz4 %.0f MB, zstd %.0f MB", scale, dbSize, float64(sizes[0])/1e6, float64(sizes[1])/1e6, float64(sizes[2])/1e6))
	compare(t, fmt.Sprintf("backup plain (scale %d): cellar backup vs pg_basebackup -Ft -X none -c fast", scale), cPlain, pPlain, 0.9)
	compare(t, fmt.Sprintf("backup lz4 (scale %d): cellar backup_compression lz4 vs pg_basebackup --compress=server-lz4", scale), cLZ4, pLZ4, 1.0)
	compare(t, fmt.Sprintf("backup lz4 (scale %d): cellar backup_compression lz4 vs pgbackrest backup lz4 process-max 2", scale), cLZ4, brLZ4, 0.8)
	compare(t, fmt.Sprintf("backup zstd (scale %d): cellar backup_compression zstd vs pg_basebackup --compress=client-zstd", scale), cZstd, pZstd, 1.0)
	compare(t, fmt.Sprintf("backup zstd (scale %d): cellar backup_compression zstd vs pgbackrest backup lz4 process-max 2", scale), cZstd, brLZ4, 0.8)

	// reuse_backup=link: a second backup of an unchanged cluster.
	c.Exec(t, "CHECKPOINT")
	cellarBackup("link", false)
	s2 := cellarBackup("link", true)
	ids := backupIDs(t, ce.serverDir("link"))
	if len(ids) != 2 {
		t.Fatalf("link server has backups %v, want 2", ids)
	}
	du := duBytes(t, filepath.Join(ce.serverDir("link"), "base", ids[0]), filepath.Join(ce.serverDir("link"), "base", ids[1]))
	pct := 100 * float64(du[1]) / float64(du[0])
	verdict := "MET"
	if pct >= 5 {
		verdict = "MISSED"
	}
	emit(t, fmt.Sprintf("reuse_backup=link second backup of an unchanged cluster: new disk %.1f MB of %.1f MB = %.2f %% (target < 5 %%) %s [second backup wall %s s, cpu %s s]",
		float64(du[1])/1e6, float64(du[0])/1e6, pct, verdict, secs(s2.wall), secs(s2.cpu)))
	clearCellar("link")

	// Restore: the newest zstd and lz4 backups vs pgbackrest restore pm2.
	// Archive the WAL the backups need first (untimed).
	for _, srv := range []string{"zstd", "lz4"} {
		if out, err := ce.cmd("archive-wal", srv).CombinedOutput(); err != nil {
			t.Fatalf("cellar archive-wal %s: %v\n%s", srv, err, out)
		}
	}
	restore := func(srv string) sample {
		ids := backupIDs(t, ce.serverDir(srv))
		dst := filepath.Join(fresh(), "data")
		waitQuiet(t)
		s, _ := timeCmd(t, ce.cmd("recover", srv, ids[len(ids)-1], dst))
		return s
	}
	pgbrRestore := func() sample {
		dst := filepath.Join(fresh(), "data")
		if err := os.Mkdir(dst, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dst, pgUID, pgGID); err != nil {
			t.Fatal(err)
		}
		waitQuiet(t)
		s, _ := timeCmd(t, pgbr("--pg1-path="+dst, "restore"))
		return s
	}
	var rZstd, rLZ4, rBR []sample
	for r := range rounds {
		rZstd = append(rZstd, restore("zstd"))
		rBR = append(rBR, pgbrRestore())
		rLZ4 = append(rLZ4, restore("lz4"))
		t.Logf("restore round %d: cellar zstd %s, pgbackrest %s, cellar lz4 %s", r+1, secs(rZstd[r].wall), secs(rBR[r].wall), secs(rLZ4[r].wall))
	}
	_ = os.RemoveAll(scratch)
	compare(t, fmt.Sprintf("restore zstd (scale %d): cellar recover vs pgbackrest restore process-max 2", scale), rZstd, rBR, 0.8)
	compare(t, fmt.Sprintf("restore lz4 (scale %d): cellar recover vs pgbackrest restore process-max 2", scale), rLZ4, rBR, 0.8)
	for _, srv := range []string{"plain", "lz4", "zstd"} {
		clearCellar(srv)
	}
}
