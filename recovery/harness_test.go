package recovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// fixture is a real PostgreSQL 15 source cluster plus a Barman-layout
// catalog (base/<id>/data plain backups, wals/<hash>/ archive, xlog.db)
// fed from its WAL archive.
type fixture struct {
	src    *pgtest.Cluster
	layout catalog.Layout
	mu     sync.Mutex
	synced map[string]bool
	n      int // WAL files synced, to alternate compressions
}

func newFixture(t *testing.T, tablespaces int) *fixture {
	t.Helper()
	return newFixtureWith(t, pgtest.Options{Archive: true, Tablespaces: tablespaces})
}

// newFixtureWith is newFixture for a source started with opts.
func newFixtureWith(t *testing.T, opts pgtest.Options) *fixture {
	t.Helper()
	src := pgtest.Start(t, opts)
	bd := t.TempDir()
	layout := catalog.NewLayout("pg", bd, bd)
	if err := layout.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	// pg_basebackup runs as postgres and writes under base/.
	pgtest.GrantPostgres(t, layout.BaseDir)
	return &fixture{src: src, layout: layout, synced: map[string]bool{}}
}

// psql runs SQL on the source and returns the trimmed single value.
func (f *fixture) q(t testing.TB, sql string) string {
	t.Helper()
	return strings.TrimSpace(f.src.QueryRow(t, sql))
}

// takeBackup makes a Barman-style plain backup with pg_basebackup and
// writes its backup.info (begin/end WAL from the manifest's WAL range).
func (f *fixture) takeBackup(t *testing.T, id string, tarArgs ...string) *catalog.BackupInfo {
	t.Helper()
	data := f.layout.BackupDataDir(id)
	args := append([]string{"-D", data, "-X", "none", "-c", "fast", "--no-sync"}, tarArgs...)
	type tsRow struct {
		name string
		oid  uint32
		loc  string
	}
	var tss []tsRow
	out := f.q(t, "SELECT coalesce(string_agg(spcname||'|'||oid||'|'||pg_tablespace_location(oid), ',' ORDER BY oid), '') FROM pg_tablespace WHERE spcname NOT LIKE 'pg_%'")
	for _, row := range strings.Split(out, ",") {
		if row == "" {
			continue
		}
		p := strings.Split(row, "|")
		oid, _ := strconv.ParseUint(p[1], 10, 32)
		tss = append(tss, tsRow{p[0], uint32(oid), p[2]})
		if len(tarArgs) == 0 {
			args = append(args, "-T", p[2]+"="+filepath.Join(f.layout.BackupDirPath(id), p[1]))
		}
	}
	begin := time.Now()
	f.src.RunAsPostgres(t, "pg_basebackup", args...)
	endTime, err := time.Parse("2006-01-02 15:04:05.999999-07", f.q(t, "SELECT clock_timestamp()"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := os.ReadFile(filepath.Join(data, "backup_manifest"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Ranges []struct {
			Timeline uint32 `json:"Timeline"`
			Start    string `json:"Start-LSN"`
			End      string `json:"End-LSN"`
		} `json:"WAL-Ranges"`
	}
	if err := json.Unmarshal(mf, &m); err != nil || len(m.Ranges) != 1 {
		t.Fatalf("manifest WAL ranges: %v %+v", err, m)
	}
	r := m.Ranges[0]
	startLSN, _ := wal.ParseLSN(r.Start)
	endLSN, _ := wal.ParseLSN(r.End)
	const seg = 16 << 20
	b := catalog.NewBackupInfo(id)
	b.Status = catalog.StatusDone
	b.ServerName = "pg"
	b.Mode = "postgres"
	if len(tarArgs) > 0 {
		b.Compression = "zstd"
	}
	b.BeginTime, b.EndTime = begin, endTime
	b.BeginXLog, b.EndXLog = r.Start, r.End
	b.BeginWAL = wal.NameForLSN(r.Timeline, startLSN, seg).String()
	b.EndWAL = wal.NameForPrevLSN(r.Timeline, endLSN, seg).String()
	b.BeginOffset = catalog.Int64(int64(startLSN.SegmentOffset(seg)))
	b.EndOffset = catalog.Int64(int64(endLSN.SegmentOffset(seg)))
	b.Timeline = int64(r.Timeline)
	b.Version = 150000
	b.PGData = f.src.DataDir
	b.SystemID = f.src.SystemID(t)
	for _, ts := range tss {
		b.Tablespaces = append(b.Tablespaces, catalog.Tablespace{Name: ts.name, OID: ts.oid, Location: ts.loc})
	}
	if err := catalog.WriteBackupInfo(f.layout.MetaBackupInfoPath(id), b); err != nil {
		t.Fatal(err)
	}
	got, err := catalog.ReadBackupInfo(f.layout.BackupInfoPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// syncArchive moves what the source archived into the catalog layout,
// compressing segments in turn with none, gzip and zstd (as a Barman
// archive may hold), and appends xlog.db lines.
func (f *fixture) syncArchive(t testing.TB, dirs ...string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(dirs) == 0 {
		dirs = []string{f.src.ArchiveDir}
	}
	var names []string
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !f.synced[e.Name()] && wal.IsAnyWALName(e.Name()) {
				names = append(names, filepath.Join(d, e.Name()))
			}
		}
	}
	sort.Slice(names, func(i, j int) bool { return filepath.Base(names[i]) < filepath.Base(names[j]) })
	db, err := os.OpenFile(filepath.Join(f.layout.WalsDir, catalog.XLogDBName("pg")), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, p := range names {
		base := filepath.Base(p)
		n, err := wal.ParseName(base)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		comp := "None"
		if n.Kind == wal.KindSegment {
			switch f.n % 3 {
			case 1:
				comp = "gzip"
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				zw.Write(data)
				zw.Close()
				data = b.Bytes()
			case 2:
				comp = "zstd"
				zw, _ := zstd.NewWriter(nil)
				data = zw.EncodeAll(data, nil)
			}
			f.n++
		}
		dst := f.layout.WALPath(n)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(db, "%s\t%d\t%d.0\t%s\tNone\n", base, len(data), time.Now().Unix(), comp)
		f.synced[base] = true
	}
}

// switchAndSync closes the current WAL segment, waits for it to be
// archived and moves the archive into the catalog.
func (f *fixture) switchAndSync(t testing.TB) {
	t.Helper()
	f.src.WaitArchived(t, f.src.SwitchWAL(t))
	f.syncArchive(t)
}

// state is the per-table content digest compared after a restore.
type state map[string]string

const stateSQL = `SELECT coalesce(string_agg(x, ';' ORDER BY x), '') FROM (
  SELECT format('%s=%s', c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*)||'':''||coalesce(sum(hashtext(t::text)),0) AS c FROM %I.%I t', n.nspname, c.relname), false, true, '')))[1]::text) AS x
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND n.nspname = 'public' AND c.relname <> 'pgtest_wal') s`

func parseState(s string) state {
	out := state{}
	for _, kv := range strings.Split(strings.TrimSpace(s), ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

func (f *fixture) state(t testing.TB) state { return parseState(f.q(t, stateSQL)) }

// restored is a PostgreSQL server started on a restored PGDATA.
type restored struct {
	f    *fixture
	dest string
	sock string
	port int
	log  string
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// chownPostgres gives a restored tree to the postgres user (the restore
// ran as root).
func chownPostgres(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if out, err := exec.Command("chown", "-R", "postgres:postgres", p).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v %s", p, err, out)
		}
	}
}

// startRestored starts PostgreSQL on dest as postgres with its own port
// and socket, archiving off, and stops it at cleanup.
func (f *fixture) startRestored(t testing.TB, dest string, extra ...string) *restored {
	t.Helper()
	sock, err := os.MkdirTemp("/tmp", "rcs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	chownPostgres(t, sock)
	r := &restored{f: f, dest: dest, sock: sock, port: freePort(t), log: filepath.Join(sock, "log")}
	o := fmt.Sprintf("-p %d -k %s -c listen_addresses='' %s", r.port, sock, strings.Join(extra, " "))
	t.Cleanup(func() {
		f.src.RunAsPostgresErr("pg_ctl", "-D", dest, "-w", "-t", "30", "-m", "immediate", "stop")
	})
	if out, err := f.src.RunAsPostgresErr("pg_ctl", "-D", dest, "-l", r.log, "-w", "-t", "60", "-o", o, "start"); err != nil {
		logb, _ := os.ReadFile(r.log)
		t.Fatalf("start restored cluster: %v\n%s\nlog:\n%s", err, out, logb)
	}
	return r
}

func (r *restored) q(t testing.TB, sql string) string {
	t.Helper()
	out, err := r.f.src.RunAsPostgresErr("psql", "-h", r.sock, "-p", strconv.Itoa(r.port), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql)
	if err != nil {
		logb, _ := os.ReadFile(r.log)
		t.Fatalf("restored cluster: %v\nlog:\n%s", err, logb)
	}
	return strings.TrimSpace(out)
}

// waitPromoted waits until recovery has ended (target action promote).
func (r *restored) waitPromoted(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for r.q(t, "SELECT pg_is_in_recovery()") != "f" {
		if time.Now().After(deadline) {
			logb, _ := os.ReadFile(r.log)
			t.Fatalf("restored cluster still in recovery after 60 s; log:\n%s", logb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *restored) state(t testing.TB) state { return parseState(r.q(t, stateSQL)) }

func (r *restored) stop(t testing.TB) {
	t.Helper()
	if out, err := r.f.src.RunAsPostgresErr("pg_ctl", "-D", r.dest, "-w", "-t", "60", "-m", "fast", "stop"); err != nil {
		t.Fatalf("stop restored cluster: %v %s", err, out)
	}
}

// destDir returns a fresh destination owned by postgres (not created
// itself when create is false: Recover makes it).
func destDir(t testing.TB) string {
	t.Helper()
	d := pgtest.MkdirForPostgres(t)
	return filepath.Join(d, "pgdata")
}

func compareStates(t testing.TB, what string, got, want state) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: restored tables %v, want %v", what, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: table %s = %s, want %s (restored %v, source %v)", what, k, got[k], v, got, want)
		}
	}
}
