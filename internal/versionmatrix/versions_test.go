package versionmatrix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// matrixTables are the tables compared between source and restore.
var matrixTables = []string{"acct", "hist"}

// compressions are the backup_compression values each version is backed up
// with. A server that cannot compress (pre-15, or a build without lz4/zstd)
// is compressed by Cellar instead, so every one applies to every version.
var compressions = []string{"none", "gzip", "lz4", "zstd"}

// TestVersionMatrix backs up each version with every compression and
// restores one of the backups, a different compression for consecutive
// versions so that each is restored somewhere: how a compressed backup is
// unpacked does not depend on the version, while the recovery and the
// server started on the result do. TestVersionMatrixE2E restores every
// backup of every version.
func TestVersionMatrix(t *testing.T) {
	t.Parallel()
	runMatrix(t, func(i int) []string { return []string{compressions[i%len(compressions)]} })
}

func runMatrix(t *testing.T, restores func(i int) []string) {
	bin := buildCellar(t)
	for i, v := range pgtest.Versions() {
		t.Run("pg"+strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			smoke(t, bin, v, restores(i))
		})
	}
}

// buildCellar builds the cellar binary into a directory the postgres user
// owns (archive_command runs it as postgres).
func buildCellar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(pgtest.MkdirForPostgres(t), "cellar")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cellar")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// env is one version's cluster and Cellar catalog; every cellar command
// runs as postgres, the README's "same host, one owner" setup.
type env struct {
	t    *testing.T
	bin  string
	cfg  string
	home string
	c    *pgtest.Cluster
}

// smoke runs one version: archiving, streaming, a backup per compression,
// then a PITR restore of the backups of the given compressions, each
// started and compared with the source at the restore point.
func smoke(t *testing.T, bin string, version int, restores []string) {
	start := time.Now()
	home := pgtest.MkdirForPostgres(t)
	e := &env{t: t, bin: bin, cfg: filepath.Join(home, "cellar.yaml"), home: filepath.Join(home, "cat")}
	e.c = pgtest.Start(t, pgtest.Options{
		Version:        version,
		ArchiveCommand: fmt.Sprintf("%s -c %s wal-archive pg %%p", bin, e.cfg),
		ExtraConf:      []string{"wal_keep_size = '256MB'"},
	})
	e.writeConfig("none")
	e.c.Exec(t, "CREATE TABLE acct (id int PRIMARY KEY, v text); INSERT INTO acct SELECT g, md5(g::text) FROM generate_series(1, 20000) g;"+
		"CREATE TABLE hist (id serial, note text)")
	e.startReceiveWAL()
	e.archiveAll()

	ids := map[string]string{}
	for _, comp := range compressions {
		e.writeConfig(comp)
		bstart := time.Now()
		ids[comp] = e.backup()
		t.Logf("PostgreSQL %d: %s backup %s in %v", version, comp, ids[comp], time.Since(bstart).Round(time.Millisecond))
		e.c.Exec(t, fmt.Sprintf("INSERT INTO hist (note) SELECT '%s ' || g FROM generate_series(1, 500) g; UPDATE acct SET v = v || 'x' WHERE id %% 7 = %d",
			comp, len(comp)))
	}
	// Every check passes (status SQL, archiver, streaming, slot ...).
	if out := e.cellar("check", "pg"); strings.Contains(out, "FAILED") {
		t.Errorf("cellar check on PostgreSQL %d:\n%s", version, out)
	}
	want := e.sums(e.c)
	e.c.Exec(t, "SELECT pg_create_restore_point('matrix')")
	// Changes after the restore point must not be in any restore.
	e.c.Exec(t, "INSERT INTO hist (note) VALUES ('after the restore point'); DELETE FROM acct WHERE id < 100")
	out := e.archiveAll()
	if !strings.Contains(out, "streaming") {
		t.Errorf("archive-wal never moved a streamed segment:\n%s", out)
	}
	t.Logf("PostgreSQL %d: %d backups and WAL in %v", version, len(ids), time.Since(start).Round(time.Millisecond))

	for _, comp := range restores {
		rstart := time.Now()
		dest := filepath.Join(pgtest.MkdirForPostgres(t), "data")
		e.cellar("recover", "--target-name", "matrix", "--target-action", "promote", "pg", ids[comp], dest)
		r := e.c.StartDataDir(t, dest)
		r.WaitRecovered(t)
		if got := e.sums(r); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("PostgreSQL %d, backup %s (%s): restored tables %v, source had %v at the restore point", version, ids[comp], comp, got, want)
		}
		if got := r.QueryRow(t, "SELECT current_setting('server_version_num')::int / 10000"); got != strconv.Itoa(version) {
			t.Errorf("restored server is PostgreSQL %s, want %d", got, version)
		}
		r.Stop(t)
		t.Logf("PostgreSQL %d: %s backup restored and compared in %v", version, comp, time.Since(rstart).Round(time.Millisecond))
	}
	t.Logf("PostgreSQL %d: done in %v", version, time.Since(start).Round(time.Millisecond))
}

func (e *env) writeConfig(compression string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`global:
  barman_home: %s
servers:
  pg:
    conninfo: %q
    archiver: true
    streaming_archiver: true
    slot_name: cellar_matrix
    create_slot: auto
    backup_compression: %s
`, e.home, e.c.ConnString(), compression)
	// Written whole then renamed: wal-archive may read it at any moment.
	// 0644 so the postgres user can read it (it holds no secret).
	tmp := e.cfg + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfg); err != nil {
		e.t.Fatal(err)
	}
}

// cellar runs a cellar command as postgres and fails the test on a
// non-zero exit.
func (e *env) cellar(args ...string) string {
	e.t.Helper()
	cmd := e.c.Command(e.bin, append([]string{"-c", e.cfg}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("cellar %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// startReceiveWAL runs `cellar receive-wal` until the test ends and waits
// until it streams (a .partial segment appears).
func (e *env) startReceiveWAL() {
	e.t.Helper()
	cmd := e.c.Command(e.bin, "-c", e.cfg, "receive-wal", "pg")
	logf, err := os.Create(filepath.Join(e.t.TempDir(), "receive-wal.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	e.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	streaming := filepath.Join(e.home, "pg", "streaming")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(streaming, "*.partial")); len(m) > 0 {
			return
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(logf.Name())
			e.t.Fatalf("receive-wal exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			e.t.Fatalf("receive-wal did not start streaming in 30 s\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// archiveAll closes the current segment, waits until PostgreSQL archived it
// and moves everything into the archive.
func (e *env) archiveAll() string {
	e.t.Helper()
	e.c.WaitArchived(e.t, e.c.SwitchWAL(e.t))
	return e.cellar("archive-wal", "pg")
}

func (e *env) backup() string {
	e.t.Helper()
	out := e.cellar("-f", "json", "backup", "--wait", "--wait-timeout", "60", "--immediate-checkpoint", "pg")
	var res struct {
		ID     string `json:"backup_id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Status != "DONE" {
		e.t.Fatalf("backup: %+v %v\n%s", res, err, out)
	}
	return res.ID
}

func (e *env) sums(c *pgtest.Cluster) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, tbl := range matrixTables {
		out[tbl] = c.QueryRow(e.t, fmt.Sprintf("SELECT count(*) || '/' || coalesce(sum(hashtext(x::text)), 0) FROM %s x", tbl))
	}
	return out
}
