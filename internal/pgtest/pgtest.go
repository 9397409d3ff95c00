// Package pgtest runs throwaway PostgreSQL clusters for tests: PostgreSQL 15
// by default (Debian's postgresql-15), or another major chosen per cluster
// with Options.Version (13, 14, 16, 17, 18 from the shared cache that
// scripts/install-pg.sh fills).
//
// It is imported only by _test.go files. Every cluster is real: initdb'd
// data directory, postmaster started with pg_ctl as the `postgres` OS user
// (the test binary usually runs as root, and PostgreSQL refuses to run as
// root), its own Unix socket directory and a loopback TCP port. Clusters are
// stopped with `pg_ctl -m immediate` and deleted in t.Cleanup.
//
// Speed: initdb costs ~0.8 s, so a template cluster is initdb'd once per
// machine (per PostgreSQL version and harness version) into a cache directory
// under os.TempDir() (cellar-pgtest-<uid>/), guarded by flock so that the
// parallel test binaries of `go test ./...` never race, and then `cp -a`'d
// per cluster (~0.2 s on an idle machine). The cache is a single ~40 MB
// directory reused by later runs. Copies share the template's system
// identifier; use Options.Unique for a fresh initdb when a test needs
// distinct sysids.
//
// Everything else a test process creates lives in its own run directory
// (os.TempDir()/cellar-pgrun-*/) and is removed by t.Cleanup. A test binary
// that is killed (or hits -timeout) cannot clean up; the next process that
// uses pgtest kills the postmasters left in dead runs and deletes them, so
// nothing accumulates in /tmp.
//
// Versions: Options.Version selects the server major per cluster. The
// server binaries (initdb, pg_ctl, postgres) of a non-default major live in
// ${CELLAR_PG_CACHE:-/var/cache/cellar-pg}/<major>/package/native/bin;
// client tools (pgbench, pg_basebackup, pg_controldata ...) always come from
// the PostgreSQL 15 bin directory. Templates are cached per version.
//
// Missing PostgreSQL binaries fail the test with install instructions; the
// harness never skips.
package pgtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultBinDir is where Debian's postgresql-15 package installs the server
// binaries. PG_BINDIR overrides it.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// DefaultVersion is the major a cluster runs when Options.Version is 0.
const DefaultVersion = 15

// DefaultCacheDir holds the other majors' server builds (CELLAR_PG_CACHE
// overrides it); scripts/install-pg.sh installs them.
const DefaultCacheDir = "/var/cache/cellar-pg"

// Versions returns the majors the harness can run (15 from Debian, the
// others from the cache).
func Versions() []int { return []int{13, 14, 15, 16, 17, 18} }

// harnessVersion is part of the template cache key: bump it whenever the
// template's initdb flags or common configuration change.
const harnessVersion = "v2"

// Options selects how a cluster is configured.
type Options struct {
	// Archive turns archive_mode on. Without ArchiveCommand the command
	// copies each segment into Cluster.ArchiveDir (a directory postgres can
	// write).
	Archive bool
	// ArchiveCommand, if set, is used verbatim as archive_command (and
	// implies Archive).
	ArchiveCommand string
	// ExtraConf lines are appended to postgresql.conf ("key = value").
	ExtraConf []string
	// Unique runs a fresh initdb instead of copying the template, so the
	// cluster gets its own system identifier (~0.8 s slower).
	Unique bool
	// Tablespaces creates this many tablespaces (ts1, ts2, ...) with
	// locations under the cluster's base directory (Cluster.TablespaceDirs).
	Tablespaces int
	// DataChecksums initdb's with --data-checksums (implies Unique).
	DataChecksums bool
	// Version is the PostgreSQL major to run (0 means DefaultVersion). A
	// major whose binaries are missing fails the test naming the install
	// command.
	Version int
}

// Cluster is one running (or stopped) PostgreSQL cluster. Its exported fields
// are fixed after Start; methods are safe for concurrent use.
type Cluster struct {
	BaseDir        string   // owned by postgres; holds data, log, archive, tablespaces
	DataDir        string   // PGDATA
	SocketDir      string   // short Unix socket directory
	Port           int      // TCP port on 127.0.0.1 (also the socket's port)
	BinDir         string   // PostgreSQL server binaries of Version
	Version        int      // PostgreSQL major (15, 17, ...)
	LogFile        string   // server log written by pg_ctl -l
	ArchiveDir     string   // target of the default archive_command ("" unless Options.Archive)
	TablespaceDirs []string // one location per Options.Tablespaces
	Standby        bool     // created by NewStandby

	env *runEnv

	mu      sync.Mutex
	running bool
}

// runEnv is what is needed to run PostgreSQL binaries as the postgres user.
type runEnv struct {
	binDir string
	// clientDir holds the client tools (PostgreSQL 15's), used for any
	// binary binDir lacks.
	clientDir string
	major     int
	cred      *syscall.Credential // nil when the test itself is not root
	uid       int
	gid       int
	version   string // "15.18"
	// runRoot holds every directory this process creates (cluster bases,
	// socket dirs, MkdirForPostgres dirs), so a later process can sweep
	// what a killed or timed-out test binary left behind.
	runRoot string
}

// env setup is per process, immutable once built.
var (
	envOnce   sync.Once
	envResult *runEnv
	envErr    error

	// versions and templates are filled lazily, one entry per major.
	versionsMu sync.Mutex
	versionEnv = map[int]*onceEnv{}
	templates  = map[string]*onceTemplate{}
)

type onceEnv struct {
	once sync.Once
	env  *runEnv
	err  error
}

type onceTemplate struct {
	once sync.Once
	dir  string
	err  error
}

// Start creates and starts a cluster, registering its teardown with
// t.Cleanup. It fails the test (never skips) if PostgreSQL is unavailable.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	c.Start(t)
	if opts.Tablespaces > 0 {
		for i, dir := range c.TablespaceDirs {
			c.Exec(t, fmt.Sprintf("CREATE TABLESPACE ts%d LOCATION '%s'", i+1, dir))
		}
	}
	return c
}

// newCluster prepares the data directory and configuration without starting.
func newCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	env := environmentFor(t, opts.Version)

	base := env.tempDir(t, "pg")
	sock := socketDir(t, env)

	c := &Cluster{
		BaseDir:   base,
		DataDir:   filepath.Join(base, "data"),
		SocketDir: sock,
		BinDir:    env.binDir,
		Version:   env.major,
		LogFile:   filepath.Join(base, "postgres.log"),
		env:       env,
	}
	// Registered after the directory removals, so it runs before them.
	t.Cleanup(c.teardown)

	start := time.Now()
	if opts.Unique || opts.DataChecksums {
		if err := env.initdb(c.DataDir, opts.DataChecksums); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if err := appendFile(c.DataDir, "postgresql.conf", commonConf()); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	} else {
		tpl := template(t, env)
		if out, err := exec.Command("cp", "-a", tpl, c.DataDir).CombinedOutput(); err != nil {
			t.Fatalf("pgtest: copy template %s: %v: %s", tpl, err, out)
		}
	}
	t.Logf("pgtest: data directory %s ready in %v", c.DataDir, time.Since(start).Round(time.Millisecond))

	var conf []string
	conf = append(conf,
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", sock),
	)
	if opts.Archive || opts.ArchiveCommand != "" {
		cmd := opts.ArchiveCommand
		if cmd == "" {
			c.ArchiveDir = filepath.Join(base, "archive")
			env.mkdir(t, c.ArchiveDir)
			cmd = fmt.Sprintf("test ! -f '%s/%%f' && cp %%p '%s/%%f'", c.ArchiveDir, c.ArchiveDir)
		}
		conf = append(conf, "archive_mode = on", "archive_command = '"+strings.ReplaceAll(cmd, "'", "''")+"'")
	}
	conf = append(conf, opts.ExtraConf...)
	if err := appendFile(c.DataDir, "postgresql.conf", conf); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	for i := range opts.Tablespaces {
		dir := filepath.Join(base, fmt.Sprintf("ts%d", i+1))
		env.mkdir(t, dir)
		c.TablespaceDirs = append(c.TablespaceDirs, dir)
	}
	return c
}

// commonConf is the configuration every cluster (and the template) gets.
func commonConf() []string {
	return []string{
		"# pgtest common settings",
		"wal_level = replica",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"fsync = off", // tests never survive a host crash anyway
		"full_page_writes = on",
		"wal_init_zero = off", // new segments need not be zero-filled: much faster GenerateWAL
		"shared_buffers = 32MB",
		"max_connections = 40",
		"log_min_messages = warning",
		"log_line_prefix = '%m [%p] '",
	}
}

// hbaLines make trust auth explicit for normal and replication connections
// over the socket and loopback (initdb --auth=trust already has most of them).
var hbaLines = []string{
	"local all all trust",
	"local replication all trust",
	"host all all 127.0.0.1/32 trust",
	"host replication all 127.0.0.1/32 trust",
}

// environment resolves binaries and the postgres user once per process.
func environment(t testing.TB) *runEnv {
	t.Helper()
	envOnce.Do(func() { envResult, envErr = loadEnv() })
	if envErr != nil {
		t.Fatalf("pgtest: %v", envErr)
	}
	return envResult
}

func loadEnv() (*runEnv, error) {
	bin := os.Getenv("PG_BINDIR")
	if bin == "" {
		bin = DefaultBinDir
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Errorf("PostgreSQL 15 server binary %s not found (%v); install it with "+
				"`apt-get install -y postgresql-15` or point PG_BINDIR at a PostgreSQL 15 bin directory", filepath.Join(bin, name), err)
		}
	}
	e := &runEnv{binDir: bin, clientDir: bin, uid: os.Getuid(), gid: os.Getgid()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("tests run as root but there is no `postgres` OS user to run PostgreSQL as (%v); "+
				"install postgresql-15 (it creates the user) or run the tests as a non-root user", err)
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("postgres user ids: %w", err)
		}
		e.uid, e.gid = uid, gid
		e.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	var err error
	if e.version, e.major, err = serverVersion(bin); err != nil {
		return nil, err
	}
	e.sweepDeadRuns()
	if e.runRoot, err = newRunRoot(); err != nil {
		return nil, err
	}
	return e, nil
}

// serverVersion runs `postgres -V` in bin: "15.18" and 15.
func serverVersion(bin string) (string, int, error) {
	postgres := filepath.Join(bin, "postgres")
	out, err := exec.Command(postgres, "-V").Output()
	if err != nil {
		return "", 0, fmt.Errorf("%s -V: %w", postgres, err)
	}
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
	fields := strings.Fields(string(out))
	for i, f := range fields {
		if f != "(PostgreSQL)" || i+1 >= len(fields) {
			continue
		}
		v := fields[i+1]
		major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
		if err == nil {
			return v, major, nil
		}
	}
	return "", 0, fmt.Errorf("%s -V: unexpected output %q", postgres, out)
}

// CacheBinDir is where the server binaries of major live in the shared
// cache (they may be missing).
func CacheBinDir(major int) string {
	cache := os.Getenv("CELLAR_PG_CACHE")
	if cache == "" {
		cache = DefaultCacheDir
	}
	return filepath.Join(cache, strconv.Itoa(major), "package", "native", "bin")
}

// environmentFor is environment for a given major (0: the default). Other
// majors share the default's user, run root and client tools.
func environmentFor(t testing.TB, major int) *runEnv {
	t.Helper()
	base := environment(t)
	if major == 0 || major == base.major {
		return base
	}
	versionsMu.Lock()
	o := versionEnv[major]
	if o == nil {
		o = &onceEnv{}
		versionEnv[major] = o
	}
	versionsMu.Unlock()
	o.once.Do(func() { o.env, o.err = loadVersionEnv(base, major) })
	if o.err != nil {
		t.Fatalf("pgtest: %v", o.err)
	}
	return o.env
}

func loadVersionEnv(base *runEnv, major int) (*runEnv, error) {
	bin := CacheBinDir(major)
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return nil, fmt.Errorf("PostgreSQL %d server binary %s not found (%v); install it with "+
				"`scripts/install-pg.sh %d` from the repository root (CELLAR_PG_CACHE overrides %s)",
				major, filepath.Join(bin, name), err, major, DefaultCacheDir)
		}
	}
	version, got, err := serverVersion(bin)
	if err != nil {
		return nil, err
	}
	if got != major {
		return nil, fmt.Errorf("%s holds PostgreSQL %s, not %d; reinstall with `scripts/install-pg.sh %d`", bin, version, major, major)
	}
	e := *base
	e.binDir, e.version, e.major = bin, version, major
	return &e, nil
}

// command builds an exec.Cmd for a PostgreSQL binary running as postgres.
// PG* variables of the test environment are dropped so they cannot redirect
// the tools to another server.
func (e *runEnv) command(name string, args ...string) *exec.Cmd {
	path := name
	if !filepath.IsAbs(name) {
		path = filepath.Join(e.binDir, name)
		if _, err := os.Stat(path); err != nil {
			path = filepath.Join(e.clientDir, name)
		}
	}
	cmd := exec.Command(path, args...)
	env := []string{"LC_ALL=C.UTF-8", "LANG=C.UTF-8", "TZ=UTC"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || k == "LC_ALL" || k == "LANG" || k == "TZ" || strings.HasPrefix(k, "LC_") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	cmd.Dir = os.TempDir() // a cwd postgres can enter
	if e.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
	}
	return cmd
}

func (e *runEnv) run(name string, args ...string) (string, error) {
	cmd := e.command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (e *runEnv) initdb(dataDir string, checksums bool) error {
	args := []string{"-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"}
	if checksums {
		args = append(args, "--data-checksums")
	}
	if _, err := e.run("initdb", args...); err != nil {
		return err
	}
	return appendFile(dataDir, "pg_hba.conf", hbaLines)
}

// chown gives path to the postgres user with the given mode. Directories
// created by the root test process are otherwise unreachable for postgres.
func (e *runEnv) chown(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if e.cred != nil {
		if err := os.Chown(path, e.uid, e.gid); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
}

func (e *runEnv) mkdir(t testing.TB, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	e.chown(t, path, 0o700)
}

// socketDir makes a short directory for the Unix socket: the socket path
// (dir + "/.s.PGSQL.<port>") must stay under 107 bytes, so a long TMPDIR
// falls back to /tmp.
func socketDir(t testing.TB, e *runEnv) string {
	t.Helper()
	if len(e.runRoot) <= 60 {
		return e.tempDir(t, "s")
	}
	dir, err := os.MkdirTemp("/tmp", "pgs")
	if err != nil {
		t.Fatalf("pgtest: socket dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	e.chown(t, dir, 0o700)
	return dir
}

// tempDir creates a postgres-owned 0700 directory under the run root,
// removed at cleanup.
func (e *runEnv) tempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp(e.runRoot, prefix)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	e.chown(t, dir, 0o700)
	return dir
}

// appendFile appends lines to a file inside the data directory, keeping the
// file's owner (appending as root does not change it).
func appendFile(dataDir, name string, lines []string) error {
	path := filepath.Join(dataDir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString("\n" + strings.Join(lines, "\n") + "\n")
	return errors.Join(werr, f.Close())
}

// template returns the cached template data directory, creating it under an
// exclusive flock when it does not exist yet.
func template(t testing.TB, e *runEnv) string {
	t.Helper()
	versionsMu.Lock()
	o := templates[e.binDir]
	if o == nil {
		o = &onceTemplate{}
		templates[e.binDir] = o
	}
	versionsMu.Unlock()
	o.once.Do(func() { o.dir, o.err = buildTemplate(e) })
	if o.err != nil {
		t.Fatalf("pgtest: template (PostgreSQL %s): %v", e.version, o.err)
	}
	return o.dir
}

func buildTemplate(e *runEnv) (string, error) {
	root := filepath.Join(os.TempDir(), fmt.Sprintf("cellar-pgtest-%d", os.Getuid()))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("flock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing the file unlocks anyway

	key := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, fmt.Sprintf("pg%s-%s-%s", e.version, harnessVersion, strings.Trim(e.binDir, "/")))
	final := filepath.Join(root, key)
	data := filepath.Join(final, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil {
		// Mark it used: the sweep below drops only templates nobody used
		// for a day, and several majors' templates are in use at once.
		now := time.Now()
		_ = os.Chtimes(final, now, now)
		return data, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	// Templates of other harness/PostgreSQL versions that nobody used
	// for a day are stale: drop them so the cache stays one directory.
	if old, _ := filepath.Glob(filepath.Join(root, "pg*")); len(old) > 0 {
		for _, dir := range old {
			if fi, err := os.Stat(dir); err == nil && dir != final && time.Since(fi.ModTime()) > 24*time.Hour {
				_ = os.RemoveAll(dir)
			}
		}
	}
	// Build beside the final name and rename, so a crash never leaves a
	// half-made template that later runs would trust.
	_ = os.RemoveAll(final)
	tmp, err := os.MkdirTemp(root, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if e.cred != nil {
		if err := os.Chown(tmp, e.uid, e.gid); err != nil {
			return "", err
		}
	}
	if err := e.initdb(filepath.Join(tmp, "data"), false); err != nil {
		return "", err
	}
	if err := appendFile(filepath.Join(tmp, "data"), "postgresql.conf", commonConf()); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return data, nil
}

// freePort asks the kernel for an unused loopback port. Another process may
// grab it before postgres binds; Start retries with a new port then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the (stopped) cluster and waits until it accepts connections.
// The first start picks a free port, retrying on bind failures.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return
	}
	const attempts = 5
	var lastErr error
	for range attempts {
		if c.Port == 0 || lastErr != nil {
			p, err := freePort()
			if err != nil {
				t.Fatalf("pgtest: free port: %v", err)
			}
			if err := appendFile(c.DataDir, "postgresql.conf", []string{fmt.Sprintf("port = %d", p)}); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
			c.Port = p
		}
		_, err := c.env.run("pg_ctl", "-D", c.DataDir, "-l", c.LogFile, "-w", "-t", "60", "start")
		if err == nil {
			c.running = true
			return
		}
		lastErr = err
		log := c.logTail()
		if !strings.Contains(log, "could not bind") && !strings.Contains(log, "could not create listen socket") {
			break
		}
	}
	t.Fatalf("pgtest: start cluster %s: %v\nserver log:\n%s", c.DataDir, lastErr, c.logTail())
}

// logTail returns the end of the server log, for failure messages.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Log returns the server log so far (for test failure output).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.LogFile)
	return string(b)
}

// Stop shuts the cluster down with a fast shutdown (clean checkpoint).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return
	}
	if _, err := c.env.run("pg_ctl", "-D", c.DataDir, "-w", "-t", "60", "-m", "fast", "stop"); err != nil {
		t.Fatalf("pgtest: stop %s: %v\nserver log:\n%s", c.DataDir, err, c.logTail())
	}
	c.running = false
}

// Restart stops (fast) and starts the cluster, e.g. after SetConf of a
// setting that needs a restart.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// Running reports whether the harness started the cluster and has not
// stopped it.
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// teardown stops the server without a checkpoint; it is a t.Cleanup.
func (c *Cluster) teardown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return
	}
	_, _ = c.env.run("pg_ctl", "-D", c.DataDir, "-w", "-t", "30", "-m", "immediate", "stop")
	c.running = false
}

// ConnString is a keyword/value conninfo for a normal connection over the
// Unix socket.
func (c *Cluster) ConnString() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.SocketDir, c.Port)
}

// TCPConnString connects over 127.0.0.1 instead of the socket.
func (c *Cluster) TCPConnString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", c.Port)
}

// ReplConnString is ConnString for a physical replication connection.
func (c *Cluster) ReplConnString() string {
	return c.ConnString() + " replication=yes"
}

func (c *Cluster) connect(t testing.TB) (*pgconn.PgConn, context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	conn, err := pgconn.Connect(ctx, c.ConnString())
	if err != nil {
		cancel()
		t.Fatalf("pgtest: connect %s: %v", c.SocketDir, err)
	}
	return conn, ctx, cancel
}

// Exec runs one or more SQL statements (simple protocol) and fails the test
// on error.
func (c *Cluster) Exec(t testing.TB, sql string) {
	t.Helper()
	conn, ctx, cancel := c.connect(t)
	defer cancel()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("pgtest: exec %q: %v", sql, err)
	}
}

// QueryRow runs sql and returns the first column of the first row in
// PostgreSQL's text form ("" for NULL). No row fails the test.
func (c *Cluster) QueryRow(t testing.TB, sql string) string {
	t.Helper()
	conn, ctx, cancel := c.connect(t)
	defer cancel()
	defer conn.Close(context.Background())
	return queryRow(t, ctx, conn, sql)
}

func queryRow(t testing.TB, ctx context.Context, conn *pgconn.PgConn, sql string) string {
	t.Helper()
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("pgtest: query %q: %v", sql, err)
	}
	for i := len(res) - 1; i >= 0; i-- {
		if len(res[i].Rows) > 0 && len(res[i].Rows[0]) > 0 {
			return string(res[i].Rows[0][0])
		}
	}
	t.Fatalf("pgtest: query %q returned no rows", sql)
	return ""
}

// SetConf appends `key = 'value'` to postgresql.conf and reloads a running
// server. Settings that need a restart take effect after Restart.
func (c *Cluster) SetConf(t testing.TB, key, value string) {
	t.Helper()
	line := fmt.Sprintf("%s = '%s'", key, strings.ReplaceAll(value, "'", "''"))
	if err := appendFile(c.DataDir, "postgresql.conf", []string{line}); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if c.Running() {
		c.Exec(t, "SELECT pg_reload_conf()")
	}
}

// SwitchWAL writes a little WAL (so the switch cannot be a no-op) and
// switches to a new segment, returning the name of the segment it closed.
func (c *Cluster) SwitchWAL(t testing.TB) string {
	t.Helper()
	names := c.GenerateWAL(t, 1)
	return names[0]
}

// GenerateWAL closes `segments` WAL segments with real writes: each round
// inserts rows into a scratch table and calls pg_switch_wal(). It returns
// the closed segment names in order.
func (c *Cluster) GenerateWAL(t testing.TB, segments int) []string {
	t.Helper()
	conn, ctx, cancel := c.connect(t)
	defer cancel()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS pgtest_wal (id serial, payload text)").ReadAll(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	names := make([]string, 0, segments)
	for range segments {
		// pg_walfile_name of the switch's end LSN (a segment boundary)
		// names the segment that was just closed.
		name := queryRow(t, ctx, conn, "INSERT INTO pgtest_wal (payload) SELECT md5(g::text) FROM generate_series(1, 100) g; "+
			"SELECT pg_walfile_name(pg_switch_wal())")
		names = append(names, name)
	}
	return names
}

// WaitArchived waits (up to 30 s) until pg_stat_archiver reports walName
// (or a later file) as archived, failing the test with the server log
// otherwise. Use it after SwitchWAL on an Archive cluster.
func (c *Cluster) WaitArchived(t testing.TB, walName string) {
	t.Helper()
	conn, ctx, cancel := c.connect(t)
	defer cancel()
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := queryRow(t, ctx, conn, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if got != "" && got >= walName {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: %s not archived after 30 s (last archived %q); server log:\n%s", walName, got, c.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SystemID returns the cluster's system identifier (decimal text).
func (c *Cluster) SystemID(t testing.TB) string {
	t.Helper()
	if !c.Running() {
		// pg_controldata of 15 cannot read other majors' control files,
		// but the system identifier is the file's first field in all of
		// them: a little-endian uint64.
		b, err := os.ReadFile(filepath.Join(c.DataDir, "global", "pg_control"))
		if err != nil || len(b) < 8 {
			t.Fatalf("pgtest: read system identifier of %s: %v (%d bytes)", c.DataDir, err, len(b))
		}
		return strconv.FormatUint(binary.LittleEndian.Uint64(b[:8]), 10)
	}
	return c.QueryRow(t, "SELECT system_identifier FROM pg_control_system()")
}

// RunAsPostgres runs a binary from BinDir (or an absolute path) as the
// postgres user with PGHOST/PGPORT/PGUSER/PGDATABASE pointing at this
// cluster, failing the test on error. It returns combined output.
func (c *Cluster) RunAsPostgres(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := c.RunAsPostgresErr(name, args...)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return out
}

// RunAsPostgresErr is RunAsPostgres returning the error instead of failing,
// for tests that expect a tool to fail.
func (c *Cluster) RunAsPostgresErr(name string, args ...string) (string, error) {
	cmd := c.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Command returns an unstarted exec.Cmd running a PostgreSQL binary as the
// postgres user against this cluster (see RunAsPostgres), for tests that
// need to stream output or signal the process.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd {
	cmd := c.env.command(name, args...)
	cmd.Env = append(cmd.Env,
		"PGHOST="+c.SocketDir,
		"PGPORT="+strconv.Itoa(c.Port),
		"PGUSER=postgres",
		"PGDATABASE=postgres",
	)
	return cmd
}

// Pgbench runs pgbench against the cluster (connection settings come from
// the environment, so args are only options), e.g. Pgbench(t, "-i", "-s", "1").
func (c *Cluster) Pgbench(t testing.TB, args ...string) string {
	t.Helper()
	return c.RunAsPostgres(t, "pgbench", args...)
}

// MkdirForPostgres returns a new empty directory (mode 0700) owned by the
// postgres user, removed at cleanup: a target for archive_command,
// pg_receivewal or restores run as postgres.
func (c *Cluster) MkdirForPostgres(t testing.TB) string {
	t.Helper()
	return MkdirForPostgres(t)
}

// MkdirForPostgres is the cluster-independent form of Cluster.MkdirForPostgres.
func MkdirForPostgres(t testing.TB) string {
	t.Helper()
	return environment(t).tempDir(t, "d")
}

// GrantPostgres makes an existing directory (e.g. from t.TempDir) usable by
// the postgres user: it chowns dir to postgres and adds search permission to
// its ancestors up to os.TempDir() (t.TempDir parents are root-owned 0700).
func GrantPostgres(t testing.TB, dir string) {
	t.Helper()
	e := environment(t)
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	tmp := filepath.Clean(os.TempDir())
	for p := filepath.Dir(abs); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	e.chown(t, abs, 0o700)
}

// Promote promotes a standby (pg_ctl promote -w): it leaves recovery and
// starts a new timeline, writing <TLI>.history.
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	c.RunAsPostgres(t, "pg_ctl", "-D", c.DataDir, "-w", "-t", "60", "promote")
}

// NewStandby takes a base backup of c with pg_basebackup -R (streaming WAL)
// into a new directory and starts it as a streaming standby. For a major
// newer than the client tools it copies the cleanly stopped primary
// instead (the primary restarts on the same port). The standby has
// c's system identifier and is torn down at cleanup like any cluster.
func (c *Cluster) NewStandby(t testing.TB) *Cluster {
	t.Helper()
	env := c.env
	base := env.tempDir(t, "pg")
	s := &Cluster{
		BaseDir:   base,
		DataDir:   filepath.Join(base, "data"),
		SocketDir: socketDir(t, env),
		BinDir:    c.BinDir,
		Version:   c.Version,
		LogFile:   filepath.Join(base, "postgres.log"),
		Standby:   true,
		env:       env,
	}
	t.Cleanup(s.teardown)
	if c.Version > DefaultVersion {
		c.copyForStandby(t, s)
	} else {
		c.basebackupForStandby(t, s)
	}
	conf := []string{
		fmt.Sprintf("unix_socket_directories = '%s'", s.SocketDir),
		"archive_mode = off",
		"hot_standby = on",
	}
	if err := appendFile(s.DataDir, "postgresql.conf", conf); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s.Start(t)
	return s
}

// copyForStandby makes the standby's data directory for a server newer
// than the client tools (pg_basebackup refuses newer servers): the primary
// stops cleanly, its data directory is copied and it starts again; the
// copy starts from that shutdown checkpoint as a streaming standby.
func (c *Cluster) copyForStandby(t testing.TB, s *Cluster) {
	t.Helper()
	if len(c.TablespaceDirs) > 0 {
		t.Fatalf("pgtest: NewStandby of PostgreSQL %d with tablespaces is not supported (the copy would share them)", c.Version)
	}
	c.Stop(t)
	if out, err := exec.Command("cp", "-a", c.DataDir, s.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: copy %s for a standby: %v: %s", c.DataDir, err, out)
	}
	c.Start(t)
	primary := fmt.Sprintf("primary_conninfo = 'host=%s port=%d user=postgres application_name=walreceiver'", c.SocketDir, c.Port)
	if err := appendFile(s.DataDir, "postgresql.conf", []string{primary}); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	f, err := os.OpenFile(filepath.Join(s.DataDir, "standby.signal"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	f.Close()
	if err := c.env.chownTree(s.DataDir); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// basebackupForStandby makes the standby with pg_basebackup -R.
func (c *Cluster) basebackupForStandby(t testing.TB, s *Cluster) {
	t.Helper()
	env, base := c.env, s.BaseDir
	args := []string{"-D", s.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"}
	for i, dir := range c.TablespaceDirs {
		sdir := filepath.Join(base, fmt.Sprintf("ts%d", i+1))
		env.mkdir(t, sdir)
		s.TablespaceDirs = append(s.TablespaceDirs, sdir)
		args = append(args, "-T", dir+"="+sdir)
	}
	c.RunAsPostgres(t, "pg_basebackup", args...)
}

// StartDataDir starts a server of c's version on an existing data directory
// (a restored backup, say), with its own socket directory and port,
// archiving off and listening on the socket only. The tree is handed to the
// postgres user first. It returns as soon as pg_ctl reports the postmaster
// up (a recovery may still be running: see WaitRecovered), and the server is
// stopped at cleanup.
func (c *Cluster) StartDataDir(t testing.TB, dataDir string) *Cluster {
	t.Helper()
	env := c.env
	r := &Cluster{
		BaseDir:   filepath.Dir(dataDir),
		DataDir:   dataDir,
		SocketDir: socketDir(t, env),
		BinDir:    c.BinDir,
		Version:   c.Version,
		LogFile:   filepath.Join(env.tempDir(t, "log"), "postgres.log"),
		env:       env,
	}
	t.Cleanup(r.teardown)
	if err := env.chownTree(dataDir); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	conf := []string{
		"listen_addresses = ''",
		fmt.Sprintf("unix_socket_directories = '%s'", r.SocketDir),
		"archive_mode = off",
	}
	if err := appendFile(dataDir, "postgresql.conf", conf); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	r.Start(t)
	return r
}

// chownTree gives a directory tree to the postgres user (data directories
// must belong to the server's user).
func (e *runEnv) chownTree(dir string) error {
	if e.cred == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, e.uid, e.gid)
	})
}

// WaitRecovered waits (up to 60 s) until the server has left recovery,
// failing the test with the server log otherwise.
func (c *Cluster) WaitRecovered(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgconn.Connect(t.Context(), c.ConnString())
		if err == nil {
			res, qerr := conn.Exec(t.Context(), "SELECT pg_is_in_recovery()").ReadAll()
			conn.Close(context.Background())
			if qerr == nil && len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) == "f" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: %s still in recovery after 60 s (%v); server log:\n%s", c.DataDir, err, c.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
