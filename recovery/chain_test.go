package recovery

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/backup"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// chainFixture is a PostgreSQL 17+ source with a full backup and two
// incrementals taken by cellar's own backup code, and the states to
// compare restores with.
type chainFixture struct {
	f                  *fixture
	full, incr1, incr2 *catalog.BackupInfo
	sMid, sEnd         state
	droppedDBOid       string
	truncPgs           string
}

// lightLoad runs pgbench at a low rate until stop is called.
func lightLoad(t *testing.T, f *fixture) (stop func()) {
	t.Helper()
	cmd := f.src.Command("pgbench", "-n", "-c", "1", "-R", "100", "-T", "300")
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

// takeChainBackup runs cellar's backup (incremental from the latest backup
// when incr) under light load and waits until it is DONE.
func takeChainBackup(t *testing.T, f *fixture, incr bool) *catalog.BackupInfo {
	t.Helper()
	stop := lightLoad(t, f)
	defer stop()
	o := backup.Options{
		Server: "pg", Layout: f.layout, Conninfo: f.src.ConnString(), ReplConninfo: f.src.ReplConnString(),
		ImmediateCheckpoint: true, Incremental: incr,
	}
	info, err := backup.Run(t.Context(), o)
	if err != nil {
		t.Fatalf("backup (incremental %v): %v", incr, err)
	}
	stop()
	poke := func(ctx context.Context) error { f.switchAndSync(t); return nil }
	done, err := backup.WaitForWALs(t.Context(), f.layout, info.ID, 2*time.Minute, poke)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != catalog.StatusDone {
		t.Fatalf("backup %s: %s %q", done.ID, done.Status, done.Error)
	}
	return done
}

// newChainFixture: full → incr1 → (restore point "mid") → a relation
// truncated by VACUUM and a database dropped → incr2 → (restore point
// "end").
func newChainFixture(t *testing.T, version int) *chainFixture {
	f := newFixtureWith(t, pgtest.Options{Version: version, Archive: true, ExtraConf: []string{"summarize_wal = on"}})
	f.src.Pgbench(t, "-i", "-q", "-s", "2")
	f.src.Exec(t, "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
	f.src.Exec(t, "CREATE TABLE trunc (id int, pad text); INSERT INTO trunc SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
	f.src.Exec(t, "CREATE DATABASE dropme")
	c := &chainFixture{f: f}
	c.droppedDBOid = f.q(t, "SELECT oid FROM pg_database WHERE datname = 'dropme'")
	c.full = takeChainBackup(t, f, false)

	f.src.Exec(t, "UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 10 = 0; INSERT INTO t SELECT g, 'i1' FROM generate_series(5001, 6000) g")
	c.incr1 = takeChainBackup(t, f, true)
	c.sMid = f.state(t)
	f.q(t, "SELECT pg_create_restore_point('mid')")

	f.src.Exec(t, "DELETE FROM trunc WHERE id > 100")
	f.src.Exec(t, "VACUUM trunc")
	f.src.Exec(t, "DROP DATABASE dropme")
	f.src.Exec(t, "INSERT INTO t SELECT g, 'i2' FROM generate_series(6001, 7000) g; DELETE FROM t WHERE id % 7 = 0")
	c.truncPgs = f.q(t, "SELECT pg_relation_size('trunc') / 8192")
	c.incr2 = takeChainBackup(t, f, true)
	c.sEnd = f.state(t)
	f.q(t, "SELECT pg_create_restore_point('end')")
	f.switchAndSync(t)
	return c
}

func TestRecoverIncrementalChainPG17(t *testing.T) { testRecoverIncrementalChain(t, 17) }

func TestRecoverIncrementalChainPG18(t *testing.T) { testRecoverIncrementalChain(t, 18) }

func testRecoverIncrementalChain(t *testing.T, version int) {
	c := newChainFixture(t, version)
	if c.incr2.ParentBackupID != c.incr1.ID || c.incr1.ParentBackupID != c.full.ID {
		t.Fatalf("chain fields: incr2 parent %q, incr1 parent %q", c.incr2.ParentBackupID, c.incr1.ParentBackupID)
	}
	t.Run("last", func(t *testing.T) {
		opts := Options{Layout: c.f.layout, Backup: c.incr2, Dest: destDir(t), Parallel: 2, Target: Target{Name: "end", Action: "promote"}}
		res, r := restoreAndCheck(t, c.f, opts, c.sEnd, true)
		if len(res.Chain) != 3 || res.Reconstructed == 0 || res.SizeOnly != 0 {
			t.Errorf("chain %v: %d files rebuilt, %d of them checked by size only", res.Chain, res.Reconstructed, res.SizeOnly)
		}
		if got := r.q(t, "SELECT count(*) FROM pg_database WHERE datname = 'dropme'"); got != "0" {
			t.Errorf("dropped database is back: %s", got)
		}
		if _, err := os.Stat(filepath.Join(opts.Dest, "base", c.droppedDBOid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory of the dropped database restored: %v", err)
		}
		if got := r.q(t, "SELECT count(*) || ':' || pg_relation_size('trunc') / 8192 FROM trunc"); got != "100:"+c.truncPgs {
			t.Errorf("truncated relation: rows:pages %s, want 100:%s", got, c.truncPgs)
		}
	})
	t.Run("middle-pitr", func(t *testing.T) {
		opts := Options{Layout: c.f.layout, Backup: c.incr1, Dest: destDir(t), Parallel: 2, Target: Target{Name: "mid", Action: "promote"}}
		_, r := restoreAndCheck(t, c.f, opts, c.sMid, true)
		if got := r.q(t, "SELECT count(*) FROM pg_database WHERE datname = 'dropme'"); got != "1" {
			t.Errorf("database dropped after the restore point is missing")
		}
	})
	t.Run("verify", func(t *testing.T) {
		v, err := VerifyBackup(t.Context(), VerifyOptions{Layout: c.f.layout, Backup: c.incr2})
		if err != nil || v.Result != catalog.VerifyOK {
			t.Fatalf("verify incremental %s: %+v %v", c.incr2.ID, v, err)
		}
		links, err := CheckChain(c.f.layout, c.incr2)
		if err != nil || len(links) != 2 || links[0].ID != c.full.ID || links[1].ID != c.incr1.ID || links[1].Status != catalog.StatusDone {
			t.Fatalf("chain of %s: %+v %v", c.incr2.ID, links, err)
		}
	})
	t.Run("tar", func(t *testing.T) { testChainFromTars(t, c) })
	t.Run("damaged-increment", func(t *testing.T) { testDamagedIncrement(t, c) })
	t.Run("broken-parent", func(t *testing.T) { testBrokenParent(t, c) })
}

// testChainFromTars restores the last backup from a copy of the catalog
// where every backup of the chain is stored as an uncompressed base.tar.
func testChainFromTars(t *testing.T, c *chainFixture) {
	root := t.TempDir()
	if out, err := exec.Command("cp", "-a", c.f.layout.BackupDir, root).CombinedOutput(); err != nil {
		t.Fatalf("copy catalog: %v %s", err, out)
	}
	l := catalog.NewLayout("pg", filepath.Join(root, filepath.Base(c.f.layout.BackupDir)), t.TempDir())
	for _, id := range []string{c.full.ID, c.incr1.ID, c.incr2.ID} {
		data, dir := l.BackupDataDir(id), l.BackupDirPath(id)
		if err := os.Rename(filepath.Join(data, ManifestName), filepath.Join(dir, ManifestName)); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(data)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"-C", data, "-cf", filepath.Join(dir, "base.tar")}
		for _, e := range ents {
			args = append(args, e.Name()) // members named like PostgreSQL's, without "./"
		}
		if out, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
			t.Fatalf("tar %s: %v %s", id, err, out)
		}
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
	}
	b, err := catalog.Open(l).Get(c.incr2.ID)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Layout: l, Backup: b, Dest: destDir(t), Parallel: 2, Target: Target{Name: "end", Action: "promote"}}
	res, _ := restoreAndCheck(t, c.f, opts, c.sEnd, true)
	if res.Reconstructed == 0 || res.SizeOnly != 0 {
		t.Errorf("from tars: %d files rebuilt, %d checked by size only", res.Reconstructed, res.SizeOnly)
	}
}

// testDamagedIncrement flips a byte of the newest backup's largest
// INCREMENTAL file: the restore fails naming it and is never marked
// complete.
func testDamagedIncrement(t *testing.T, c *chainFixture) {
	var biggest string
	var size int64
	filepath.WalkDir(c.f.layout.BackupDataDir(c.incr2.ID), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "INCREMENTAL.") {
			if fi, err := d.Info(); err == nil && fi.Size() > size {
				biggest, size = p, fi.Size()
			}
		}
		return nil
	})
	if biggest == "" {
		t.Fatal("no INCREMENTAL file in the newest backup")
	}
	restore := saveFiles(t, biggest)
	defer restore()
	data, err := os.ReadFile(biggest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-100] ^= 0x40 // in the last block's data
	if err := os.WriteFile(biggest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dest := destDir(t)
	_, err = Recover(t.Context(), Options{Layout: c.f.layout, Backup: c.incr2, Dest: dest, Parallel: 2, Target: Target{Name: "end"}})
	if !errors.Is(err, ErrBackupDamaged) || !strings.Contains(err.Error(), filepath.Base(biggest)) {
		t.Fatalf("Recover with damaged %s: %v", biggest, err)
	}
	if _, serr := os.Stat(filepath.Join(dest, RecoverInfoFile)); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("failed restore marked complete: %v", serr)
	}
}

// testBrokenParent damages the middle backup in turn and checks that
// restoring the last one fails naming it, with nothing written.
func testBrokenParent(t *testing.T, c *chainFixture) {
	l := c.f.layout
	id := c.incr1.ID
	infoPath := l.BackupInfoPath(id)
	manifest := filepath.Join(l.BackupDataDir(id), ManifestName)
	cases := []struct {
		name   string
		damage func(t *testing.T)
		want   error
	}{
		{"backup.info missing", func(t *testing.T) { mustRemove(t, infoPath) }, ErrBackupNotRestorable},
		{"manifest missing", func(t *testing.T) { mustRemove(t, manifest) }, ErrBackupNotRestorable},
		{"manifest corrupt", func(t *testing.T) { flipByte(t, manifest) }, ErrBackupDamaged},
		{"parent FAILED", func(t *testing.T) {
			editInfo(t, l, id, func(b *catalog.BackupInfo) { b.Status = catalog.StatusFailed })
		}, ErrBackupNotRestorable},
		{"other cluster", func(t *testing.T) { editInfo(t, l, id, func(b *catalog.BackupInfo) { b.SystemID = "42" }) }, ErrBackupNotRestorable},
		{"label of another chain", func(t *testing.T) {
			editFile(t, filepath.Join(l.BackupDataDir(id), "backup_label"), func(s string) string {
				return strings.Replace(s, "INCREMENTAL FROM LSN: ", "INCREMENTAL FROM LSN: 1", 1)
			})
		}, ErrBackupNotRestorable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			restore := saveFiles(t, infoPath, manifest, filepath.Join(l.BackupDataDir(id), "backup_label"))
			defer restore()
			tc.damage(t)
			dest := destDir(t)
			_, err := Recover(t.Context(), Options{Layout: l, Backup: c.incr2, Dest: dest, Parallel: 2, Target: Target{Name: "end"}})
			if err == nil || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), id) {
				t.Fatalf("Recover with %s: %v; want %v naming %s", tc.name, err, tc.want, id)
			}
			if ents, _ := os.ReadDir(dest); len(ents) > 0 {
				t.Errorf("refused restore wrote %d entries into %s", len(ents), dest)
			}
			if _, err := CheckChain(l, c.incr2); err == nil || !strings.Contains(err.Error(), id) {
				t.Errorf("CheckChain with %s: %v; want an error naming %s", tc.name, err, id)
			}
		})
	}
}

func mustRemove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, p string) {
	t.Helper()
	editFile(t, p, func(s string) string {
		b := []byte(s)
		b[len(b)/2] ^= 0x01
		return string(b)
	})
}

func editFile(t *testing.T, p string, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(edit(string(data))), 0o600); err != nil {
		t.Fatal(err)
	}
}

func editInfo(t *testing.T, l catalog.Layout, id string, edit func(*catalog.BackupInfo)) {
	t.Helper()
	b, err := catalog.ReadBackupInfo(l.BackupInfoPath(id))
	if err != nil {
		t.Fatal(err)
	}
	edit(b)
	if err := catalog.WriteBackupInfo(l.BackupInfoPath(id), b); err != nil {
		t.Fatal(err)
	}
}

// saveFiles keeps copies of files and returns a function putting them back.
func saveFiles(t *testing.T, paths ...string) func() {
	t.Helper()
	saved := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[p] = data
	}
	return func() {
		for p, data := range saved {
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}
