package drill

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cellar-backup/cellar/postgres"
)

// DefaultCacheDir is the per-major server build cache that
// scripts/install-pg.sh fills (CELLAR_PG_CACHE overrides it).
const DefaultCacheDir = "/var/cache/cellar-pg"

// BinDir finds the server binaries of a PostgreSQL major: the configured
// directory for that major, else Debian's /usr/lib/postgresql/<major>/bin,
// else the build cache <cache>/<major>/package/native/bin.
func BinDir(major int, configured map[int]string) (string, error) {
	var tried []string
	cands := []string{configured[major], filepath.Join("/usr/lib/postgresql", strconv.Itoa(major), "bin")}
	cache := os.Getenv("CELLAR_PG_CACHE")
	if cache == "" {
		cache = DefaultCacheDir
	}
	cands = append(cands, filepath.Join(cache, strconv.Itoa(major), "package", "native", "bin"))
	for _, d := range cands {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(d, "postgres")); err == nil && fi.Mode().IsRegular() {
			return d, nil
		}
		tried = append(tried, d)
	}
	return "", fmt.Errorf("no PostgreSQL %d server binaries (postgres) in %s; set the binary directory for version %d",
		major, strings.Join(tried, ", "), major)
}

// owner is the OS user the restored server runs as: postgres when cellar
// runs as root (PostgreSQL refuses root), else cellar's own user.
type owner struct {
	uid, gid int
	cred     *syscall.Credential
}

func serverOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{uid: -1, gid: -1}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return owner{}, fmt.Errorf("running as root, the drill starts PostgreSQL as the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return owner{uid: uid, gid: gid, cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}, nil
}

// chown gives path to the server's user (a no-op when not root).
func (o owner) chown(path string) error {
	if o.cred == nil {
		return nil
	}
	return os.Lchown(path, o.uid, o.gid)
}

// chownTree gives a whole tree to the server's user.
func (o owner) chownTree(dir string) error {
	if o.cred == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, o.uid, o.gid)
	})
}

// postmaster is a restored server started by the drill.
type postmaster struct {
	cmd     *exec.Cmd
	dataDir string
	sockDir string
	logPath string
	exited  chan struct{}
	waitErr error
}

// drillPort only names the socket file: the server has no TCP listener.
const drillPort = 5432

// startPostmaster starts bin/postgres on dataDir with a private socket, no
// TCP listener and no archiving. It runs in its own process group so that
// a Ctrl-C at the terminal reaches the drill, which then stops it.
func startPostmaster(bin, dataDir, sockDir, logPath string, o owner) (*postmaster, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server log %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", dataDir,
		"-c", "listen_addresses=", "-c", "unix_socket_directories="+sockDir,
		"-c", "port="+strconv.Itoa(drillPort), "-c", "archive_mode=off",
		"-c", "hot_standby=on", "-c", "logging_collector=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dataDir
	cmd.Env = []string{"LC_ALL=C.UTF-8", "LANG=C.UTF-8", "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: o.cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &postmaster{cmd: cmd, dataDir: dataDir, sockDir: sockDir, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *postmaster) conninfo() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=5", p.sockDir, drillPort)
}

// logTail is the end of the server log, for error messages.
func (p *postmaster) logTail() string {
	data, _ := os.ReadFile(p.logPath)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return strings.TrimSpace(string(data))
}

// errExited says the server stopped by itself, with its log.
func (p *postmaster) errExited() error {
	return fmt.Errorf("PostgreSQL exited (%v); server log:\n%s", p.waitErr, p.logTail())
}

// connect waits until the server accepts a connection.
func (p *postmaster) connect(ctx context.Context) (*postgres.Conn, error) {
	delay := 20 * time.Millisecond
	for {
		c, err := postgres.Connect(ctx, p.conninfo(), postgres.ApplicationName("cellar_drill"))
		if err == nil {
			return c, nil
		}
		if err := p.pause(ctx, delay); err != nil {
			return nil, fmt.Errorf("waiting for PostgreSQL to accept connections: %w", err)
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// waitRecovered waits until the server has left recovery.
func (p *postmaster) waitRecovered(ctx context.Context, c *postgres.Conn) error {
	delay := 20 * time.Millisecond
	for {
		var inRecovery bool
		if err := c.PgxConn().QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return fmt.Errorf("waiting for the end of recovery: %w", err)
		}
		if !inRecovery {
			return nil
		}
		if err := p.pause(ctx, delay); err != nil {
			return fmt.Errorf("waiting for the end of recovery: %w", err)
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// pause waits d, returning early when ctx ends or the server exits.
func (p *postmaster) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.exited:
		return p.errExited()
	case <-t.C:
		return nil
	}
}

// stop shuts the server down immediately (its data is thrown away) and
// waits for it, killing it after 30 s.
func (p *postmaster) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	return fmt.Errorf("PostgreSQL (pid %d) ignored an immediate shutdown for 30 s and was killed", p.cmd.Process.Pid)
}

// killLeftover stops a postmaster a crashed drill left running on
// dataDir, found through its postmaster.pid. Only a process that really is
// a postgres server on that directory is signalled.
func killLeftover(ctx context.Context, dataDir string) error {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("leftover drill server: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !isPostmasterOf(pid, dataDir) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGQUIT)
	return waitGone(ctx, pid)
}

// isPostmasterOf reports whether pid runs postgres -D dataDir.
func isPostmasterOf(pid int, dataDir string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 2 && filepath.Base(args[0]) == "postgres" && args[1] == "-D" && args[2] == dataDir
}

// waitGone waits for pid to exit, killing it after 30 s.
func waitGone(ctx context.Context, pid int) error {
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(time.Hour)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for leftover drill server %d to stop: %w", pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// alive reports whether pid exists and is not a zombie waiting for a
// parent that will never reap it.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(stat), ") ")
	return !ok || !strings.HasPrefix(rest, "Z")
}
