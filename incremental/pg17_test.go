package incremental

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func loadData(t *testing.T, p *pg17) {
	p.exec(t, "postgres", "CREATE DATABASE app", "CREATE DATABASE dropme")
	p.exec(t, "app",
		"CREATE TABLE accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))",
		"INSERT INTO accounts SELECT g, g % 10, 0, 'a' || g FROM generate_series(1, 30000) g",
		"CREATE TABLE branches (bid int PRIMARY KEY, bbalance int NOT NULL, filler char(88))",
		"INSERT INTO branches SELECT g, 0, 'b' FROM generate_series(0, 9) g",
		"CREATE TABLE history (aid int, delta int, mtime timestamptz, filler char(22))",
		"CREATE TABLE shrinkme (id int, pad text)",
		"INSERT INTO shrinkme SELECT g, repeat('s', 100) FROM generate_series(1, 5000) g",
		"CREATE TABLE trunc_me (id int, v text)",
		"INSERT INTO trunc_me SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
		"VACUUM",
	)
	p.exec(t, "dropme", "CREATE TABLE gone (x int)", "INSERT INTO gone SELECT generate_series(1, 1000)")
}

// firstChanges touch about 5 % of the accounts pages, extend two tables,
// shrink one by VACUUM truncation, TRUNCATE one (new relfilenode) and drop
// a database.
func firstChanges(t *testing.T, p *pg17) {
	p.exec(t, "app",
		"UPDATE accounts SET abalance = abalance + 7 WHERE aid BETWEEN 1000 AND 2500",
		"INSERT INTO accounts SELECT g, g % 10, 0, 'n' || g FROM generate_series(30001, 31000) g",
		"INSERT INTO history SELECT g, 7, '2026-12-03 10:00:00+00', 'h' FROM generate_series(1, 500) g",
		"DELETE FROM shrinkme WHERE id > 2500",
		"VACUUM shrinkme",
		"TRUNCATE trunc_me",
		"INSERT INTO trunc_me SELECT g, 'again' FROM generate_series(1, 100) g",
	)
	p.exec(t, "postgres", "DROP DATABASE dropme")
}

// secondChanges touch another 5 %, delete a range and re-extend the shrunk
// table past its truncation point.
func secondChanges(t *testing.T, p *pg17) {
	p.exec(t, "app",
		"UPDATE accounts SET abalance = abalance - 3 WHERE aid BETWEEN 20000 AND 21500",
		"DELETE FROM accounts WHERE aid BETWEEN 5000 AND 5100",
		"UPDATE branches SET bbalance = bbalance + bid",
		"INSERT INTO shrinkme SELECT g, repeat('r', 120) FROM generate_series(6001, 6400) g",
	)
}

// snapshot is what the comparison looks at: the databases, and per table
// of the app database its row count and a hash of its sorted rows.
func snapshot(t *testing.T, p *pg17) map[string]string {
	t.Helper()
	out := map[string]string{}
	var dbs string
	if err := p.connect(t, "postgres").QueryRow(t.Context(),
		"SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database").Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	out["databases"] = dbs
	c := p.connect(t, "app")
	rows, err := c.Query(t.Context(), "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		var n int64
		var sum string
		q := fmt.Sprintf("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM %s t", table)
		if err := c.QueryRow(t.Context(), q).Scan(&n, &sum); err != nil {
			t.Fatal(err)
		}
		out[table] = fmt.Sprintf("%d rows %s", n, sum)
	}
	return out
}

// TestPG17IncrementalChainRestore takes a full and two incremental backups
// of a real PostgreSQL 17, rebuilds the data directory with this package
// alone, starts PostgreSQL on it and compares the data with the source.
func TestPG17IncrementalChainRestore(t *testing.T) {
	src := newPG17(t, true, "summarize_wal = on")
	src.start(t)
	loadData(t, src)
	full := src.baseBackup(t, "full", nil, false)
	firstChanges(t, src)
	incr1 := src.baseBackup(t, "incr1", full, false)
	secondChanges(t, src)
	incr2 := src.baseBackup(t, "incr2", incr1, true)
	want := snapshot(t, src)
	if !strings.Contains(want["databases"], "app") || strings.Contains(want["databases"], "dropme") {
		t.Fatalf("source databases %q", want["databases"])
	}

	chain := []*takenBackup{full, incr1, incr2}
	manifests, plan := planChain(t, chain)
	dst := newPG17(t, false)
	stats := restoreChain(t, chain, manifests, plan, dst.data)
	t.Logf("restore: %+v", stats)
	if stats.blocksFromIncrements == 0 || stats.reconstructed == 0 || stats.absent == 0 {
		t.Fatalf("the chain did not exercise reconstruction: %+v", stats)
	}
	checkAbsent(t, plan, full)

	dst.chownTree(t)
	dst.appendConf(t)
	dst.start(t)
	compareSnapshots(t, snapshot(t, dst), want)

	t.Run("missing parent", func(t *testing.T) { checkMissingParent(t, chain, manifests) })
	t.Run("corrupt parent", func(t *testing.T) { checkCorruptParent(t, chain, plan) })
}

func compareSnapshots(t *testing.T, got, want map[string]string) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(want))
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, key := range keys {
		if got[key] != want[key] {
			t.Errorf("%s: restored %q, source %q", key, got[key], want[key])
		}
	}
	if len(want) < 2 {
		t.Errorf("snapshot of the source has no tables: %v", want)
	}
}

func planChain(t *testing.T, chain []*takenBackup) ([]*Manifest, *Plan) {
	t.Helper()
	var manifests []*Manifest
	var labels []Label
	for _, b := range chain {
		m, err := ParseManifest(bytes.NewReader(b.manifest), b.name)
		if err != nil {
			t.Fatal(err)
		}
		l, err := ParseLabel(b.read(t, "backup_label"), b.name)
		if err != nil {
			t.Fatal(err)
		}
		manifests, labels = append(manifests, m), append(labels, l)
	}
	if err := CheckLabels(manifests, labels); err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(manifests)
	if err != nil {
		t.Fatal(err)
	}
	return manifests, plan
}

type restoreStats struct {
	copied, reconstructed, absent              int
	blocksFromIncrements, blocksFromFull, zero int
}

// restoreChain writes the data directory the way a restore would use this
// package: directories of the newest backup, every plan step, its WAL.
func restoreChain(t *testing.T, chain []*takenBackup, manifests []*Manifest, plan *Plan, dir string) restoreStats {
	t.Helper()
	newest := chain[len(chain)-1]
	for _, d := range append([]string{"."}, newest.idx.Dirs...) {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var st restoreStats
	for _, step := range plan.Steps {
		restoreStep(t, chain, manifests, step, dir, &st)
	}
	for name := range newest.idx.Files {
		if strings.HasPrefix(name, "pg_wal/") {
			writeFile(t, filepath.Join(dir, name), newest.read(t, name))
		}
	}
	return st
}

func restoreStep(t *testing.T, chain []*takenBackup, manifests []*Manifest, step Step, dir string, st *restoreStats) {
	t.Helper()
	out := filepath.Join(dir, filepath.FromSlash(step.Path))
	switch step.Action {
	case ActionAbsent:
		st.absent++
		return
	case ActionRewriteLabel:
		writeFile(t, out, FullLabel(chain[step.To].read(t, "backup_label")))
		return
	}
	res := reconstructTo(t, out, openSources(t, chain, step), manifests[step.To].Files[0].Algorithm)
	if step.Action == ActionCopy {
		st.copied++
		if res.Checksum != step.Checksum || res.Size != step.Size {
			t.Fatalf("%s: copied %d bytes with %s %s, manifest says %d bytes %s", step.Path, res.Size, res.Algorithm, res.Checksum, step.Size, step.Checksum)
		}
		return
	}
	st.reconstructed++
	st.blocksFromFull += res.FromSource[0]
	st.zero += res.ZeroBlocks
	for _, n := range res.FromSource[1:] {
		st.blocksFromIncrements += n
	}
	checkUnchanged(t, manifests[step.From], step, res)
}

func reconstructTo(t *testing.T, path string, sources []Source, alg string) Result {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Reconstruct(t.Context(), f, sources, alg)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return res
}

// checkUnchanged: a reconstructed file made only of its full copy's blocks
// must have the checksum the full backup's manifest recorded for it.
func checkUnchanged(t *testing.T, base *Manifest, step Step, res Result) {
	f, _ := base.File(step.Path)
	if res.Size != f.Size || int64(res.FromSource[0])*BlockSize != f.Size || f.Algorithm != res.Algorithm {
		return
	}
	if res.Checksum != f.Checksum {
		t.Fatalf("%s: rebuilt from the full copy alone, checksum %s, but %s recorded %s", step.Path, res.Checksum, base.Name, f.Checksum)
	}
}

func openSources(t *testing.T, chain []*takenBackup, step Step) []Source {
	t.Helper()
	sources := slices.Clone(step.Sources)
	for i, p := range step.SourcePaths() {
		b := chain[step.From+i]
		sec, ok := b.idx.Section(b.archive, p)
		if !ok {
			t.Fatalf("%s: %s missing from the tar of %s", step.Path, p, b.name)
		}
		sources[i].R = sec
	}
	return sources
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *pg17) chownTree(t *testing.T) {
	t.Helper()
	err := filepath.Walk(p.data, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, p.uid, p.gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkAbsent: every file of the full backup that the restore does not
// produce (the dropped database's directory, the truncated table's old
// relation file) is planned absent.
func checkAbsent(t *testing.T, plan *Plan, full *takenBackup) {
	t.Helper()
	planned := map[string]Action{}
	for _, s := range plan.Steps {
		planned[s.Path] = s.Action
	}
	gone := 0
	for p := range full.idx.Files {
		if a, ok := planned[p]; !ok || a == ActionAbsent {
			if !ok {
				t.Errorf("%s of the full backup is not in the plan", p)
			}
			gone++
		}
	}
	if gone < 100 { // a database directory alone is a few hundred files
		t.Errorf("only %d files of the full backup are absent; the dropped database should account for hundreds", gone)
	}
}

func checkMissingParent(t *testing.T, chain []*takenBackup, manifests []*Manifest) {
	skip := []*Manifest{manifests[0], manifests[2]}
	var labels []Label
	for _, b := range []*takenBackup{chain[0], chain[2]} {
		l, err := ParseLabel(b.read(t, "backup_label"), b.name)
		if err != nil {
			t.Fatal(err)
		}
		labels = append(labels, l)
	}
	err := CheckLabels(skip, labels)
	if !errors.Is(err, ErrBrokenChain) || !strings.Contains(err.Error(), "incr2 was taken incrementally from the backup that started at") {
		t.Errorf("full+incr2: %v", err)
	}
	_, err = NewPlan(manifests[1:])
	if !errors.Is(err, ErrBrokenChain) || !strings.Contains(err.Error(), "incr1 should be the chain's full backup") {
		t.Errorf("incr1+incr2: %v", err)
	}
}

// checkCorruptParent damages the middle backup's INCREMENTAL file of a
// three-source reconstruction in two ways.
func checkCorruptParent(t *testing.T, chain []*takenBackup, plan *Plan) {
	i := slices.IndexFunc(plan.Steps, func(s Step) bool { return s.Action == ActionReconstruct && s.From == 0 })
	if i < 0 {
		t.Fatal("no file reconstructed from all three backups")
	}
	step := plan.Steps[i]
	sources := openSources(t, chain, step)
	parent := chain[1].read(t, step.SourcePaths()[1])
	damaged := slices.Clone(parent)
	damaged[0] ^= 0xff
	sources[1].R = bytes.NewReader(damaged)
	_, err := Reconstruct(t.Context(), &bytes.Buffer{}, sources, "")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "backup incr1 "+step.SourcePaths()[1]+": bad magic number") {
		t.Errorf("damaged magic: %v", err)
	}
	sources[1].R, sources[1].Size = bytes.NewReader(parent[:len(parent)-1]), int64(len(parent)-1)
	_, err = Reconstruct(t.Context(), &bytes.Buffer{}, sources, "")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "backup incr1 "+step.SourcePaths()[1]) {
		t.Errorf("short parent: %v", err)
	}
}
