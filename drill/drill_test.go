package drill

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// fixture is a real PostgreSQL 15 cluster with a Barman-layout catalog:
// one plain backup taken under pgbench load and the archived WAL after it.
type fixture struct {
	src     *pgtest.Cluster
	layout  catalog.Layout
	backup  *catalog.BackupInfo
	history string // count(*) of pgbench_history once all WAL is archived
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	src := pgtest.Start(t, pgtest.Options{Archive: true})
	bd := t.TempDir()
	layout := catalog.NewLayout("pg", bd, filepath.Join(bd, "locks"))
	if err := layout.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, layout.BaseDir)
	src.Pgbench(t, "-i", "-s", "1", "-q")
	var wg sync.WaitGroup
	wg.Go(func() { src.Pgbench(t, "-c", "4", "-t", "100", "-n") })
	f := &fixture{src: src, layout: layout}
	f.backup = f.takeBackup(t, "20260101T000000")
	wg.Wait()
	src.WaitArchived(t, src.SwitchWAL(t))
	f.history = strings.TrimSpace(src.QueryRow(t, "SELECT count(*) FROM pgbench_history"))
	f.syncArchive(t)
	return f
}

// takeBackup makes a plain pg_basebackup and its backup.info.
func (f *fixture) takeBackup(t *testing.T, id string) *catalog.BackupInfo {
	t.Helper()
	data := f.layout.BackupDataDir(id)
	begin := time.Now()
	f.src.RunAsPostgres(t, "pg_basebackup", "-D", data, "-X", "none", "-c", "fast", "--no-sync")
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
	start, _ := wal.ParseLSN(r.Start)
	end, _ := wal.ParseLSN(r.End)
	const seg = 16 << 20
	b := catalog.NewBackupInfo(id)
	b.Status, b.ServerName, b.Mode = catalog.StatusDone, "pg", "postgres"
	b.BeginTime, b.EndTime = begin, time.Now()
	b.BeginXLog, b.EndXLog = r.Start, r.End
	b.BeginWAL = wal.NameForLSN(r.Timeline, start, seg).String()
	b.EndWAL = wal.NameForPrevLSN(r.Timeline, end, seg).String()
	b.BeginOffset = catalog.Int64(int64(start.SegmentOffset(seg)))
	b.EndOffset = catalog.Int64(int64(end.SegmentOffset(seg)))
	b.Timeline = int64(r.Timeline)
	b.Version = 150000
	b.PGData = f.src.DataDir
	b.SystemID = f.src.SystemID(t)
	if err := catalog.WriteBackupInfo(f.layout.MetaBackupInfoPath(id), b); err != nil {
		t.Fatal(err)
	}
	got, err := catalog.ReadBackupInfo(f.layout.BackupInfoPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// syncArchive copies the source's archive into the catalog with xlog.db.
func (f *fixture) syncArchive(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(f.src.ArchiveDir)
	if err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for _, e := range ents {
		n, err := wal.ParseName(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(f.src.ArchiveDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst := f.layout.WALPath(n)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&lines, "%s\t%d\t%d.0\tNone\tNone\n", e.Name(), len(data), time.Now().Unix())
	}
	if err := os.WriteFile(filepath.Join(f.layout.WalsDir, catalog.XLogDBName("pg")), []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checksDir writes one user check expecting want from query.
func checksDir(t *testing.T, query, want string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "history.sql"), []byte(query+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.expected"), []byte(want+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (f *fixture) options(t *testing.T, scratchRoot string) Options {
	return Options{Layout: f.layout, Backup: f.backup, ScratchRoot: scratchRoot, RecoveryTimeout: 2 * time.Minute}
}

// assertCleaned fails when the scratch directory or a postmaster on it
// remains.
func assertCleaned(t *testing.T, root string) {
	t.Helper()
	sc := newScratch(root, "pg")
	if _, err := os.Lstat(sc.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("scratch directory %s still exists (%v)", sc.dir, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if isPostmasterOf(pid, sc.data) && alive(pid) {
			t.Errorf("postmaster %d still runs on %s", pid, sc.data)
		}
	}
}

func TestDrill(t *testing.T) {
	f := newFixture(t)
	countQuery := "SELECT count(*) FROM pgbench_history"

	t.Run("restores, replays, checks and records", func(t *testing.T) {
		root := pgtest.MkdirForPostgres(t)
		o := f.options(t, root)
		o.ChecksDir = checksDir(t, countQuery, f.history)
		rec, err := Run(t.Context(), o)
		if err != nil {
			t.Fatalf("drill failed: %v", err)
		}
		assertCleaned(t, root)
		if rec.Result != ResultOK || rec.SystemID != f.backup.SystemID || rec.Timeline == 0 {
			t.Fatalf("record %+v", rec)
		}
		for _, p := range []string{PhaseRestore, PhaseStartup, PhaseReplay, PhaseChecks} {
			if rec.PhaseSeconds(p) <= 0 {
				t.Errorf("phase %s not recorded: %+v", p, rec.Phases)
			}
		}
		got, _ := wal.ParseLSN(rec.RecoveredLSN)
		want, _ := wal.ParseLSN(rec.ExpectedLSN)
		if rec.ExpectedWAL == "" || got < want || rec.RecoveredTime == nil {
			t.Errorf("recovered %s (%v), expected at least %s (%s)", rec.RecoveredLSN, rec.RecoveredTime, rec.ExpectedLSN, rec.ExpectedWAL)
		}
		if len(rec.Checks) != 1 || !rec.Checks[0].OK || rec.Checks[0].Got != f.history {
			t.Errorf("checks %+v, want history=%s", rec.Checks, f.history)
		}
		stored, err := Load(f.layout, "latest")
		if err != nil || stored.ID != rec.ID || stored.Result != ResultOK {
			t.Fatalf("stored record %+v, %v", stored, err)
		}
	})

	t.Run("wrong SQL result fails naming query and values", func(t *testing.T) {
		root := pgtest.MkdirForPostgres(t)
		o := f.options(t, root)
		o.ChecksDir = checksDir(t, countQuery, "12345678")
		rec, err := Run(t.Context(), o)
		if !errors.Is(err, ErrCheckFailed) {
			t.Fatalf("got %v, want a failed check", err)
		}
		assertCleaned(t, root)
		for _, want := range []string{countQuery, `"12345678"`, strconv.Quote(f.history)} {
			if !strings.Contains(rec.Error, want) {
				t.Errorf("error %q does not name %s", rec.Error, want)
			}
		}
		if rec.Result != ResultFailed {
			t.Errorf("result %s", rec.Result)
		}
	})

	t.Run("not enough scratch space is refused before writing", func(t *testing.T) {
		root := pgtest.MkdirForPostgres(t)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", root).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", root).Run() })
		_, err := Run(t.Context(), f.options(t, root))
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), root) {
			t.Fatalf("got %v, want ErrNoSpace naming %s", err, root)
		}
		if ents, _ := os.ReadDir(root); len(ents) != 0 {
			t.Errorf("refused drill wrote %v", ents)
		}
	})

	for _, at := range []string{"restore", "start"} {
		t.Run("kill -9 after "+at+" is cleaned up by the next drill", func(t *testing.T) {
			root := pgtest.MkdirForPostgres(t)
			killDrillAt(t, f, root, at)
			sc := newScratch(root, "pg")
			if _, err := os.Stat(sc.data); err != nil {
				t.Fatalf("the killed drill left no half-restored directory to clean: %v", err)
			}
			pid := leftoverPID(t, sc)
			if (pid != 0) != (at == "start") {
				t.Fatalf("postmaster after a kill at %s: pid %d", at, pid)
			}
			// The clean-up a drill starts with stops the leftover server
			// before it removes its directory.
			if err := killLeftover(t.Context(), sc.data); err != nil {
				t.Fatal(err)
			}
			if pid != 0 && alive(pid) {
				t.Fatalf("leftover postmaster %d still runs after the clean-up", pid)
			}
			if _, err := Run(t.Context(), f.options(t, root)); err != nil {
				t.Fatalf("drill after a crash: %v", err)
			}
			assertCleaned(t, root)
		})
	}

	t.Run("cancel (Ctrl-C, SIGTERM) stops the server and removes the scratch", func(t *testing.T) {
		root := pgtest.MkdirForPostgres(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		o := f.options(t, root)
		o.afterStart = cancel
		rec, err := Run(ctx, o)
		if !errors.Is(err, context.Canceled) || rec.Result != ResultFailed {
			t.Fatalf("cancelled drill: %v %+v", err, rec)
		}
		assertCleaned(t, root)
	})

	t.Run("missing WAL fails naming the segment", func(t *testing.T) {
		root := pgtest.MkdirForPostgres(t)
		begin, _ := wal.ParseName(f.backup.BeginWAL)
		missing := wal.NameForSegNo(begin.TLI, begin.SegNo(16<<20)+1, 16<<20)
		if err := os.Remove(f.layout.WALPath(missing)); err != nil {
			t.Fatal(err)
		}
		rec, err := Run(t.Context(), f.options(t, root))
		if !errors.Is(err, ErrMissingWAL) || !strings.Contains(rec.Error, missing.String()) {
			t.Fatalf("got %v, want missing %s", err, missing)
		}
		assertCleaned(t, root)
	})
}

// leftoverPID is the live postmaster a killed drill left (0: none).
func leftoverPID(t *testing.T, sc scratch) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sc.data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, _ := strconv.Atoi(first)
	if pid <= 0 || !alive(pid) || !isPostmasterOf(pid, sc.data) {
		t.Fatalf("postmaster.pid names %q, which is not a live postmaster on %s", first, sc.data)
	}
	return pid
}

// killDrillAt runs a drill in a child process that stops after the
// restore copy (at "restore") or once PostgreSQL runs on it (at "start"),
// and kills it with SIGKILL there.
func killDrillAt(t *testing.T, f *fixture, root, at string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDrillProcess$")
	cmd.Env = append(os.Environ(), "CELLAR_DRILL_HELPER="+f.layout.BackupDir+"|"+root+"|"+f.backup.ID+"|"+at)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "stopped at "+at {
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// TestHelperDrillProcess is the child of killDrillAt: it runs a drill up
// to the given point, says so and waits to be killed.
func TestHelperDrillProcess(t *testing.T) {
	env := os.Getenv("CELLAR_DRILL_HELPER")
	if env == "" {
		return
	}
	p := strings.Split(env, "|")
	layout := catalog.NewLayout("pg", p[0], filepath.Join(p[0], "locks"))
	b, err := catalog.ReadBackupInfo(layout.BackupInfoPath(p[2]))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Layout: layout, Backup: b, ScratchRoot: p[1]}
	stop := func() {
		fmt.Println("stopped at " + p[3])
		select {}
	}
	if p[3] == "restore" {
		o.afterRestore = stop
	} else {
		o.afterStart = stop
	}
	_, err = Run(t.Context(), o)
	t.Fatalf("helper drill returned: %v", err)
}
