package backup

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
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

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// tables whose content the restore tests compare.
var compareTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "t"}

// sourceCluster starts an archiving cluster with one tablespace, pgbench
// tables in it and a table t in the default tablespace.
func sourceCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Archive: true, Tablespaces: 1})
	c.Pgbench(t, "-i", "-q", "-s", "1", "--tablespace=ts1", "--index-tablespace=ts1")
	c.Exec(t, "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
	return c
}

func newOptions(t *testing.T, c *pgtest.Cluster) Options {
	t.Helper()
	dir := t.TempDir()
	return Options{
		Server:              "pg",
		Layout:              catalog.NewLayout("pg", filepath.Join(dir, "pg"), dir),
		Conninfo:            c.ConnString(),
		ReplConninfo:        c.ReplConnString(),
		ImmediateCheckpoint: true,
	}
}

// startLoad runs pgbench in the background until the returned stop is
// called.
func startLoad(t *testing.T, c *pgtest.Cluster) (stop func()) {
	t.Helper()
	cmd := c.Command("pgbench", "-n", "-c", "2", "-T", "60")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbench: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

func tableSums(t *testing.T, query func(string) string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tbl := range compareTables {
		out[tbl] = query(fmt.Sprintf("SELECT count(*)::text || '/' || coalesce(sum(hashtext(x::text)), 0)::text FROM %s x", tbl))
	}
	return out
}

func verifyBackup(t *testing.T, dataDir string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(pgtest.DefaultBinDir, "pg_verifybackup"), "-n", dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_verifybackup -n %s: %v\n%s", dataDir, err, out)
	}
}

func runCmd(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
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

// restoreAndCompare restores a backup of src into a new directory (plain:
// copy; tar: extract), replays the archived WAL and compares tables.
func restoreAndCompare(t *testing.T, src *pgtest.Cluster, o Options, info *catalog.BackupInfo, want map[string]string) {
	t.Helper()
	root := pgtest.MkdirForPostgres(t)
	data := filepath.Join(root, "data")
	bdir := o.Layout.BackupDirPath(info.ID)
	if info.Compression == "" {
		runCmd(t, "cp", "-a", filepath.Join(bdir, "data"), data)
		for _, ts := range info.Tablespaces {
			oid := strconv.FormatUint(uint64(ts.OID), 10)
			tsDir := filepath.Join(root, "ts"+oid)
			runCmd(t, "cp", "-a", filepath.Join(bdir, oid), tsDir)
			link := filepath.Join(data, "pg_tblspc", oid)
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tsDir, link); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		suffix, _ := compressionSuffix(info.Compression)
		// GNU tar 1.34 has no --lz4: run the lz4 tool (lz4 -d) as the filter.
		flag := map[string]string{".gz": "--gzip", ".lz4": "--use-compress-program=lz4", ".zst": "--zstd"}[suffix]
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		runCmd(t, "tar", flag, "-xf", filepath.Join(bdir, "data", "base.tar"+suffix), "-C", data)
		var tsMap []string
		for _, ts := range info.Tablespaces {
			oid := strconv.FormatUint(uint64(ts.OID), 10)
			tsDir := filepath.Join(root, "ts"+oid)
			if err := os.Mkdir(tsDir, 0o700); err != nil {
				t.Fatal(err)
			}
			runCmd(t, "tar", flag, "-xf", filepath.Join(bdir, "data", oid+".tar"+suffix), "-C", tsDir)
			tsMap = append(tsMap, oid+" "+tsDir)
		}
		// tablespace_map names the source's locations: point it at ours.
		if err := os.WriteFile(filepath.Join(data, "tablespace_map"), []byte(strings.Join(tsMap, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A backup of a standby holds its standby.signal: this restore is an
	// archive recovery, not a new standby of the source.
	if err := os.Remove(filepath.Join(data, "standby.signal")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	startAndCompare(t, src, root, data, fmt.Sprintf("restore_command = 'cp %s/%%f %%p'\n", src.ArchiveDir), true, want)
}

// startAndCompare starts the restored data directory data (under root) in
// archive recovery (signal) or crash recovery from its pg_wal, waits for
// the end of recovery and compares the tables with want.
func startAndCompare(t *testing.T, src *pgtest.Cluster, root, data, extraConf string, signal bool, want map[string]string) {
	t.Helper()
	port := freePort(t)
	conf := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\narchive_mode = off\n%s", port, extraConf)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(conf)
	f.Close()
	if signal {
		if err := os.WriteFile(filepath.Join(data, "recovery.signal"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runCmd(t, "chown", "-R", "postgres:postgres", root)
	if err := os.Chmod(data, 0o700); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(root, "log")
	if out, err := src.RunAsPostgresErr("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "120", "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("start restored cluster: %v\n%s\nlog:\n%s", err, out, log)
	}
	t.Cleanup(func() { src.RunAsPostgresErr("pg_ctl", "-D", data, "-w", "-m", "immediate", "stop") })

	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port)
	// Wait for the end of recovery (promotion once the archive runs dry).
	deadline := time.Now().Add(2 * time.Minute)
	for queryOne(t, conninfo, "SELECT pg_is_in_recovery()::text") != "false" {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("restored cluster still in recovery; log:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := tableSums(t, func(q string) string { return queryOne(t, conninfo, q) })
	for tbl, w := range want {
		if got[tbl] != w {
			t.Errorf("table %s: restored %s, source %s", tbl, got[tbl], w)
		}
	}
}

func queryOne(t *testing.T, conninfo, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, conninfo)
	if err != nil {
		t.Fatalf("connect restored cluster: %v", err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return string(res[0].Rows[0][0])
}

// finishSource stops the load, archives everything and returns the
// source's table sums (the state a full archive recovery must reach).
func finishSource(t *testing.T, c *pgtest.Cluster, stop func()) map[string]string {
	t.Helper()
	stop()
	w := c.SwitchWAL(t)
	c.WaitArchived(t, w)
	return tableSums(t, func(q string) string { return c.QueryRow(t, q) })
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestBackupPlainAndTarRestore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		comp   string
		client bool
	}{
		{"none", CompressionNone, false},
		{"zstd-server", CompressionZstd, false}, // COMPRESSION_DETAIL workers=2
		{"lz4-server", CompressionLZ4, false},
		{"gzip-client", CompressionGzip, false}, // gzip is always Cellar's
		{"zstd-client", CompressionZstd, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := sourceCluster(t)
			o := newOptions(t, c)
			o.Compression = tc.comp
			o.ClientCompression = tc.client
			var logs syncBuffer
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			stop := startLoad(t, c)
			info, err := Run(context.Background(), o)
			if err != nil {
				stop()
				t.Fatalf("Run: %v\n%s", err, logs.String())
			}
			want := finishSource(t, c, stop)
			if info.Status != catalog.StatusWaitingForWALs {
				t.Fatalf("status %s, want WAITING_FOR_WALS (error %q)", info.Status, info.Error)
			}
			// What was saved is what Run returned.
			saved, err := catalog.Open(o.Layout).Get(info.ID)
			if err != nil {
				t.Fatal(err)
			}
			if saved.Status != info.Status || saved.EndWAL != info.EndWAL || saved.BeginWAL == "" || saved.BackupLabel == "" {
				t.Fatalf("saved backup.info %+v", saved)
			}
			if !strings.Contains(saved.BackupLabel, "START WAL LOCATION: "+saved.BeginXLog) {
				t.Errorf("backup_label %q does not match begin_xlog %s", saved.BackupLabel, saved.BeginXLog)
			}
			if len(saved.Tablespaces) != 1 || saved.Tablespaces[0].Name != "ts1" {
				t.Errorf("tablespaces %+v", saved.Tablespaces)
			}
			if saved.Size == nil || *saved.Size == 0 || saved.DeduplicatedSize == nil || *saved.DeduplicatedSize != *saved.Size {
				t.Errorf("size %v dedup %v", saved.Size, saved.DeduplicatedSize)
			}
			serverSide := strings.Contains(logs.String(), "the server compressed the backup")
			if wantServer := !tc.client && (tc.comp == CompressionLZ4 || tc.comp == CompressionZstd); serverSide != wantServer {
				t.Errorf("server compression used %v, want %v; log:\n%s", serverSide, wantServer, logs.String())
			}
			if tc.comp == CompressionZstd && !tc.client && !strings.Contains(logs.String(), `detail="`+DefaultZstdDetail+`"`) {
				t.Errorf("zstd without the %s detail; log:\n%s", DefaultZstdDetail, logs.String())
			}
			if tc.comp == CompressionNone {
				verifyBackup(t, o.Layout.BackupDataDir(info.ID))
			} else {
				// Barman's compression field names the codec, wherever it ran.
				if saved.Compression != tc.comp {
					t.Errorf("compression %q, want %q", saved.Compression, tc.comp)
				}
				checkTarFiles(t, o.Layout.BackupDataDir(info.ID), tc.comp, saved)
			}
			restoreAndCompare(t, c, o, info, want)
		})
	}
}

// checkTarFiles checks that data/ holds exactly base.tar.<ext>,
// <oid>.tar.<ext> and backup_manifest, and that each archive starts with the
// codec's magic bytes.
func checkTarFiles(t *testing.T, dir, comp string, info *catalog.BackupInfo) {
	t.Helper()
	suffix, _ := compressionSuffix(comp)
	want := []string{"backup_manifest", "base.tar" + suffix}
	for _, ts := range info.Tablespaces {
		want = append(want, strconv.FormatUint(uint64(ts.OID), 10)+".tar"+suffix)
	}
	sort.Strings(want)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s holds %v, want %v", dir, got, want)
	}
	magic := map[string][]byte{CompressionGzip: {0x1f, 0x8b}, CompressionLZ4: {0x04, 0x22, 0x4d, 0x18}, CompressionZstd: {0x28, 0xb5, 0x2f, 0xfd}}[comp]
	for _, name := range want {
		if name == "backup_manifest" {
			continue // never compressed, on either side
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, magic) {
			t.Errorf("%s does not start with the %s magic % x", name, comp, magic)
		}
	}
}
