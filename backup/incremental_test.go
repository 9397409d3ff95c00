package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/incremental"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// incrSource starts a PostgreSQL major with summarize_wal on, pgbench
// tables (scale 4, ~60 MB) and the table t.
func incrSource(t *testing.T, version int) *pgtest.Cluster {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Version: version, Archive: true, ExtraConf: []string{"summarize_wal = on"}})
	c.Pgbench(t, "-i", "-q", "-s", "4")
	c.Exec(t, "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
	return c
}

// archivePoke copies the segments PostgreSQL archived into the catalog's
// wals/ (what archive-wal does), for WaitForWALs.
func archivePoke(c *pgtest.Cluster, l catalog.Layout) func(context.Context) error {
	return func(context.Context) error {
		entries, err := os.ReadDir(c.ArchiveDir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			n, err := wal.ParseName(e.Name())
			if err != nil || n.Kind != wal.KindSegment {
				continue
			}
			if _, err := os.Stat(l.WALPath(n)); err == nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join(c.ArchiveDir, e.Name()))
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(l.WALPath(n)), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(l.WALPath(n), data, 0o600); err != nil {
				return err
			}
		}
		return nil
	}
}

// takeDone takes a backup and waits until it is DONE.
func takeDone(t *testing.T, c *pgtest.Cluster, o Options) *catalog.BackupInfo {
	t.Helper()
	info, err := Run(t.Context(), o)
	if err != nil {
		t.Fatalf("backup (incremental %v, parent %q): %v", o.Incremental, o.Parent, err)
	}
	done, err := WaitForWALs(t.Context(), o.Layout, info.ID, 2*time.Minute, archivePoke(c, o.Layout))
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != catalog.StatusDone {
		t.Fatalf("backup %s: %s %q", done.ID, done.Status, done.Error)
	}
	return done
}

// changePages updates the first 5% of pgbench_accounts' rows: about 5% of
// its pages change.
func changePages(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Exec(t, "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= (SELECT count(*) / 20 FROM pgbench_accounts)")
}

func TestIncrementalChainPG17(t *testing.T) {
	t.Parallel()
	testIncrementalChain(t, 17)
}

func TestIncrementalChainPG18(t *testing.T) {
	t.Parallel()
	testIncrementalChain(t, 18)
}

// testIncrementalChain: full → incr → incr under pgbench load, each DONE
// with its parent and children; the chain restored with the incremental
// package, started, and compared with the source.
func testIncrementalChain(t *testing.T, version int) {
	c := incrSource(t, version)
	o := newOptions(t, c)
	full := takeDone(t, c, o)
	stop := startLoad(t, c)
	changePages(t, c)
	o.Incremental = true
	incr1 := takeDone(t, c, o) // parent: latest
	changePages(t, c)
	o.Parent = incr1.ID
	incr2 := takeDone(t, c, o)
	want := finishSource(t, c, stop)

	t.Logf("PostgreSQL %d: full backup %d bytes, first incremental %d bytes (%.1f%%), second %d bytes",
		version, *full.Size, *incr1.Size, 100*float64(*incr1.Size)/float64(*full.Size), *incr2.Size)
	if *incr1.Size*4 > *full.Size {
		t.Errorf("incremental after 5%% page changes is %d bytes, full %d", *incr1.Size, *full.Size)
	}
	checkChainFields(t, o.Layout, full.ID, incr1.ID, incr2.ID)

	chain := []string{full.ID, incr1.ID, incr2.ID}
	root := pgtest.MkdirForPostgres(t)
	data := filepath.Join(root, "data")
	restorePlainChain(t, o.Layout, chain, data)
	startAndCompare(t, c, root, data, fmt.Sprintf("restore_command = 'cp %s/%%f %%p'\n", c.ArchiveDir), true, want)
}

// checkChainFields reads the catalog again: types, parents and children.
func checkChainFields(t *testing.T, l catalog.Layout, full, incr1, incr2 string) {
	t.Helper()
	cat := catalog.Open(l)
	tests := []struct {
		id, typ, parent string
		children        []string
	}{
		{full, "full", "", []string{incr1}},
		{incr1, "incremental", full, []string{incr2}},
		{incr2, "incremental", incr1, nil},
	}
	for _, tc := range tests {
		b, err := cat.Get(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if b.BackupType() != tc.typ || b.ParentBackupID != tc.parent || !slices.Equal(b.ChildrenBackupIDs, tc.children) || b.SummarizeWAL != "on" {
			t.Errorf("backup %s: type %s parent %q children %v summarize_wal %q; want %s %q %v on",
				tc.id, b.BackupType(), b.ParentBackupID, b.ChildrenBackupIDs, b.SummarizeWAL, tc.typ, tc.parent, tc.children)
		}
		if tc.parent != "" && !strings.Contains(b.BackupLabel, "INCREMENTAL FROM LSN") {
			t.Errorf("backup %s: backup_label without INCREMENTAL FROM lines: %q", tc.id, b.BackupLabel)
		}
	}
}

// restorePlainChain rebuilds the newest backup of a chain of plain backups
// into dir, with the incremental package's plan and Reconstruct.
func restorePlainChain(t *testing.T, l catalog.Layout, ids []string, dir string) {
	t.Helper()
	var manifests []*incremental.Manifest
	var labels []incremental.Label
	dataDirs := make([]string, len(ids))
	for i, id := range ids {
		dataDirs[i] = filepath.Join(l.BackupDirPath(id), "data")
		m, lb := readChainMember(t, dataDirs[i], id)
		manifests, labels = append(manifests, m), append(labels, lb)
	}
	if err := incremental.CheckLabels(manifests, labels); err != nil {
		t.Fatal(err)
	}
	plan, err := incremental.NewPlan(manifests)
	if err != nil {
		t.Fatal(err)
	}
	copyDirs(t, dataDirs[len(ids)-1], dir)
	reconstructed := 0
	for _, step := range plan.Steps {
		if restoreChainStep(t, dataDirs, step, dir) {
			reconstructed++
		}
	}
	if reconstructed == 0 {
		t.Fatal("the chain restore reconstructed no file from increments")
	}
}

func readChainMember(t *testing.T, dataDir, id string) (*incremental.Manifest, incremental.Label) {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, "backup_manifest"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := incremental.ParseManifest(f, id)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "backup_label"))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := incremental.ParseLabel(raw, id)
	if err != nil {
		t.Fatal(err)
	}
	return m, lb
}

// copyDirs creates src's directory tree under dst (pg_wal empty: WAL comes
// from the archive).
func copyDirs(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return os.MkdirAll(filepath.Join(dst, rel), 0o700)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// restoreChainStep writes one planned path; it reports a reconstruction.
func restoreChainStep(t *testing.T, dataDirs []string, step incremental.Step, dir string) bool {
	t.Helper()
	out := filepath.Join(dir, filepath.FromSlash(step.Path))
	switch step.Action {
	case incremental.ActionAbsent:
		return false
	case incremental.ActionRewriteLabel:
		raw, err := os.ReadFile(filepath.Join(dataDirs[step.To], "backup_label"))
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, out, incremental.FullLabel(raw))
		return false
	}
	sources := slices.Clone(step.Sources)
	for i, p := range step.SourcePaths() {
		f, err := os.Open(filepath.Join(dataDirs[step.From+i], filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sources[i].R = f
	}
	w, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	res, err := incremental.Reconstruct(t.Context(), w, sources, step.Algorithm)
	if err != nil {
		t.Fatalf("%s: %v", step.Path, err)
	}
	if step.Action == incremental.ActionCopy && (res.Size != step.Size || res.Checksum != step.Checksum) {
		t.Fatalf("%s: copied %d bytes %s, manifest %d bytes %s", step.Path, res.Size, res.Checksum, step.Size, step.Checksum)
	}
	return step.Action == incremental.ActionReconstruct
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestIncrementalRefusals: every refusal happens before backup.info is
// written and names what is wrong.
func TestIncrementalRefusals(t *testing.T) {
	t.Parallel()
	pg15 := pgtest.Start(t, pgtest.Options{Archive: true})
	o15 := newOptions(t, pg15)
	o15.Incremental = true
	_, err := Run(t.Context(), o15)
	checkRefusal(t, o15.Layout, err, "PostgreSQL 15")

	c := pgtest.Start(t, pgtest.Options{Version: 17, Archive: true})
	o := newOptions(t, c)
	o.Incremental = true
	_, err = Run(t.Context(), o)
	checkRefusal(t, o.Layout, err, "summarize_wal is off")

	c.SetConf(t, "summarize_wal", "on")
	_, err = Run(t.Context(), o)
	checkRefusal(t, o.Layout, err, "parent backup latest (a DONE backup): server pg: last backup: backup not found")

	o.Incremental = false
	full := takeDone(t, c, o)
	o.Incremental = true
	mp := manifestPath(o.Layout, full.ID)
	good, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"missing", nil, "backup_manifest: open " + mp},
		{"corrupt", good[:len(good)/2], mp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.content == nil {
				os.Remove(mp)
			} else {
				writeTestFile(t, mp, tc.content)
			}
			_, err := Run(t.Context(), o)
			checkRefusal(t, o.Layout, err, tc.want)
		})
	}
	writeTestFile(t, mp, good)
	full.Status = catalog.StatusFailed
	if err := catalog.Open(o.Layout).Save(full); err != nil {
		t.Fatal(err)
	}
	o.Parent = full.ID
	_, err = Run(t.Context(), o)
	checkRefusal(t, o.Layout, err, "it is FAILED, not DONE")
}

// checkRefusal: err is an ErrIncremental naming want, and the catalog holds
// no incremental backup.
func checkRefusal(t *testing.T, l catalog.Layout, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrIncremental) || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want ErrIncremental naming %q", err, want)
	}
	backups, _ := catalog.Open(l).Backups()
	for _, b := range backups {
		if b.ParentBackupID != "" {
			t.Errorf("refused incremental left backup %s (%s) in the catalog", b.ID, b.Status)
		}
	}
}
