package backup

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
		flag := map[string]string{".gz": "--gzip", ".lz4": "--lz4", ".zst": "--zstd"}[suffix]
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
	port := freePort(t)
	conf := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\narchive_mode = off\n"+
		"restore_command = 'cp %s/%%f %%p'\n", port, src.ArchiveDir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(conf)
	f.Close()
	if err := os.WriteFile(filepath.Join(data, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
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

func TestBackupPlainAndTarRestore(t *testing.T) {
	t.Parallel()
	for _, comp := range []string{CompressionNone, CompressionZstd} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			c := sourceCluster(t)
			o := newOptions(t, c)
			o.Compression = comp
			stop := startLoad(t, c)
			info, err := Run(context.Background(), o)
			if err != nil {
				stop()
				t.Fatalf("Run: %v", err)
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
			if comp == CompressionNone {
				verifyBackup(t, o.Layout.BackupDataDir(info.ID))
			} else if saved.Compression != comp {
				t.Errorf("compression %q, want %q", saved.Compression, comp)
			}
			restoreAndCompare(t, c, o, info, want)
		})
	}
}
