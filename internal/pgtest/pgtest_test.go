package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartConnectRestart(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{})

	if got := c.QueryRow(t, "SHOW wal_level"); got != "replica" {
		t.Errorf("wal_level = %q, want replica", got)
	}
	if got := c.QueryRow(t, "SHOW server_version_num"); !strings.HasPrefix(got, "15") {
		t.Errorf("server_version_num = %q, want 15xxxx", got)
	}
	if n := len(c.SocketDir) + len("/.s.PGSQL.65535"); n >= 107 {
		t.Errorf("socket path %d bytes, too long for sun_path", n)
	}

	// pgx over the socket and over TCP.
	for _, cs := range []string{c.ConnString(), c.TCPConnString()} {
		conn, err := pgx.Connect(t.Context(), cs)
		if err != nil {
			t.Fatalf("connect %s: %v", cs, err)
		}
		var one int
		if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("SELECT 1 = %d, %v", one, err)
		}
		conn.Close(t.Context())
	}

	c.Exec(t, "CREATE TABLE persist (x int); INSERT INTO persist VALUES (42)")
	sysid := c.SystemID(t)
	c.Stop(t)
	if c.Running() {
		t.Fatal("Running after Stop")
	}
	if got := c.SystemID(t); got != sysid {
		t.Errorf("SystemID from pg_controldata = %q, from SQL %q", got, sysid)
	}
	c.Start(t)
	if got := c.QueryRow(t, "SELECT x FROM persist"); got != "42" {
		t.Errorf("after restart: x = %q, want 42", got)
	}
	c.SetConf(t, "work_mem", "7MB")
	if got := c.QueryRow(t, "SHOW work_mem"); got != "7MB" {
		t.Errorf("work_mem after SetConf = %q", got)
	}
	c.SetConf(t, "max_wal_senders", "7")
	c.Restart(t)
	if got := c.QueryRow(t, "SHOW max_wal_senders"); got != "7" {
		t.Errorf("max_wal_senders after restart = %q", got)
	}
}

func TestTwoClustersInParallel(t *testing.T) {
	t.Parallel()
	a := Start(t, Options{})
	b := Start(t, Options{Unique: true})
	if a.Port == b.Port || a.DataDir == b.DataDir || a.SocketDir == b.SocketDir {
		t.Fatalf("clusters share resources: %+v %+v", a, b)
	}
	a.Exec(t, "CREATE TABLE only_in_a ()")
	if got := b.QueryRow(t, "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'"); got != "0" {
		t.Errorf("table leaked into the other cluster: %s", got)
	}
	if a.SystemID(t) == b.SystemID(t) {
		t.Errorf("Unique cluster has the template's system id %s", a.SystemID(t))
	}
}

func TestArchiveAndWAL(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Archive: true})
	names := c.GenerateWAL(t, 3)
	if len(names) != 3 {
		t.Fatalf("GenerateWAL returned %v", names)
	}
	for i := 1; i < len(names); i++ {
		if names[i] <= names[i-1] {
			t.Errorf("segments not increasing: %v", names)
		}
	}
	last := c.SwitchWAL(t)
	if last <= names[2] || len(last) != 24 {
		t.Errorf("SwitchWAL = %q after %v", last, names)
	}
	c.WaitArchived(t, last)
	for _, n := range append(names, last) {
		if fi, err := os.Stat(filepath.Join(c.ArchiveDir, n)); err != nil || fi.Size() != 16<<20 {
			t.Errorf("archived %s: %v", n, err)
		}
	}
}

func TestPostgresDirsAndTools(t *testing.T) {
	t.Parallel()
	c := Start(t, Options{Tablespaces: 1})
	if got := c.QueryRow(t, "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'"); got != c.TablespaceDirs[0] {
		t.Errorf("ts1 location %q, want %q", got, c.TablespaceDirs[0])
	}
	dir := c.MkdirForPostgres(t)
	c.Exec(t, "COPY (SELECT 1) TO '"+filepath.Join(dir, "out")+"'")
	if b, err := os.ReadFile(filepath.Join(dir, "out")); err != nil || string(b) != "1\n" {
		t.Errorf("server-side COPY into MkdirForPostgres dir: %q %v", b, err)
	}

	td := filepath.Join(t.TempDir(), "granted")
	if err := os.Mkdir(td, 0o700); err != nil {
		t.Fatal(err)
	}
	GrantPostgres(t, td)
	c.Exec(t, "COPY (SELECT 2) TO '"+filepath.Join(td, "out")+"'")

	out := c.RunAsPostgres(t, "pg_isready")
	if !strings.Contains(out, "accepting connections") {
		t.Errorf("pg_isready: %s", out)
	}
	c.Pgbench(t, "-i", "-s", "1", "-q")
	if got := c.QueryRow(t, "SELECT count(*) FROM pgbench_accounts"); got != "100000" {
		t.Errorf("pgbench_accounts rows = %s", got)
	}
	if _, err := c.RunAsPostgresErr("pg_controldata", "-D", "/nonexistent"); err == nil {
		t.Error("RunAsPostgresErr: expected an error for a bad data dir")
	}
}

func TestStandby(t *testing.T) {
	t.Parallel()
	for _, v := range []int{15, 17} {
		t.Run(strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			testStandby(t, v)
		})
	}
}

func testStandby(t *testing.T, version int) {
	p := Start(t, Options{Version: version})
	p.Exec(t, "CREATE TABLE rep (x int); INSERT INTO rep VALUES (1)")
	s := p.NewStandby(t)
	if got := s.QueryRow(t, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("standby pg_is_in_recovery = %s", got)
	}
	if s.SystemID(t) != p.SystemID(t) {
		t.Error("standby system id differs from primary")
	}
	p.Exec(t, "INSERT INTO rep VALUES (2)")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for s.QueryRow(t, "SELECT count(*) FROM rep") != "2" {
		if ctx.Err() != nil {
			t.Fatalf("standby did not replay; log:\n%s", s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := p.QueryRow(t, "SELECT count(*) FROM pg_stat_replication"); got != "1" {
		t.Errorf("primary pg_stat_replication rows = %s", got)
	}
}

// A machine without PostgreSQL must fail with install instructions, not
// skip. (Not parallel: it changes PG_BINDIR.)
func TestMissingBinariesMessage(t *testing.T) {
	t.Setenv("PG_BINDIR", t.TempDir())
	_, err := loadEnv()
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y postgresql-15") || !strings.Contains(err.Error(), "PG_BINDIR") {
		t.Errorf("loadEnv without binaries = %v", err)
	}
}

// Every major the harness offers starts, reports its version, keeps data
// across a restart and reads its system identifier with the server stopped.
func TestVersions(t *testing.T) {
	t.Parallel()
	for _, v := range Versions() {
		t.Run(strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			c := Start(t, Options{Version: v})
			if c.Version != v {
				t.Errorf("Cluster.Version = %d, want %d", c.Version, v)
			}
			if got := c.QueryRow(t, "SELECT current_setting('server_version_num')::int / 10000"); got != strconv.Itoa(v) {
				t.Errorf("server major = %s, want %d", got, v)
			}
			c.Exec(t, "CREATE TABLE persist (x int); INSERT INTO persist VALUES (42)")
			sysid := c.SystemID(t)
			c.Stop(t)
			if got := c.SystemID(t); got != sysid {
				t.Errorf("SystemID from pg_control = %q, from SQL %q", got, sysid)
			}
			c.Start(t)
			if got := c.QueryRow(t, "SELECT x FROM persist"); got != "42" {
				t.Errorf("after restart: x = %q, want 42", got)
			}
		})
	}
}

// A major missing from the cache fails with the install command to run.
func TestMissingVersionMessage(t *testing.T) {
	t.Setenv("CELLAR_PG_CACHE", t.TempDir())
	_, err := loadVersionEnv(&runEnv{}, 17)
	if err == nil || !strings.Contains(err.Error(), "scripts/install-pg.sh 17") || !strings.Contains(err.Error(), "PostgreSQL 17") {
		t.Errorf("loadVersionEnv without binaries = %v", err)
	}
}
