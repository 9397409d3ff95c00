//go:build e2e

package incremental

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPG17IncrementalE2E runs randomized workloads between the backups of
// chains of 1 to 4 increments (every backup carries its WAL), then restores
// every prefix of each chain and compares it with the source as it was at
// that backup.
func TestPG17IncrementalE2E(t *testing.T) {
	for trial := range 4 {
		seed := uint64(trial + 1)
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) { e2eTrial(t, seed) })
	}
}

func e2eTrial(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	src := newPG17(t, true, "summarize_wal = on")
	src.start(t)
	loadData(t, src)
	w := &workload{rng: rng, p: src, tables: []string{"accounts", "history", "shrinkme", "trunc_me"}, dbs: []string{"dropme"}}
	chain := []*takenBackup{src.baseBackup(t, "b0", nil, true)}
	wants := []map[string]string{snapshot(t, src)}
	for k := range 1 + rng.IntN(4) {
		for range 2 + rng.IntN(5) {
			w.step(t)
		}
		chain = append(chain, src.baseBackup(t, fmt.Sprintf("b%d", k+1), chain[len(chain)-1], true))
		wants = append(wants, snapshot(t, src))
	}
	for n := 1; n < len(chain); n++ {
		t.Run(fmt.Sprintf("restore-b%d", n), func(t *testing.T) {
			manifests, plan := planChain(t, chain[:n+1])
			dst := newPG17(t, false)
			stats := restoreChain(t, chain[:n+1], manifests, plan, dst.data)
			t.Logf("%d increments: %+v", n, stats)
			dst.chownTree(t)
			dst.appendConf(t)
			dst.start(t)
			compareSnapshots(t, snapshot(t, dst), wants[n])
		})
	}
}

// workload applies one random change per step to the app database (or the
// set of databases), keeping track of what exists.
type workload struct {
	rng    *rand.Rand
	p      *pg17
	tables []string
	dbs    []string
	next   int
}

func (w *workload) step(t *testing.T) {
	table := w.tables[w.rng.IntN(len(w.tables))]
	lo := w.rng.IntN(30000)
	hi := lo + 1 + w.rng.IntN(3000)
	switch w.rng.IntN(8) {
	case 0:
		w.p.exec(t, "app", fmt.Sprintf("UPDATE accounts SET abalance = abalance + 1 WHERE aid BETWEEN %d AND %d", lo, hi))
	case 1:
		w.p.exec(t, "app", fmt.Sprintf("DELETE FROM accounts WHERE aid BETWEEN %d AND %d", lo, hi), "VACUUM accounts")
	case 2:
		w.p.exec(t, "app", fmt.Sprintf("INSERT INTO history SELECT g, 1, '2026-12-03 10:00:00+00', 'e' FROM generate_series(%d, %d) g", lo, hi))
	case 3:
		w.p.exec(t, "app", fmt.Sprintf("DELETE FROM shrinkme WHERE id > %d", lo%5000), "VACUUM shrinkme",
			fmt.Sprintf("INSERT INTO shrinkme SELECT g, repeat('z', 90) FROM generate_series(1, %d) g", hi%700))
	case 4:
		w.p.exec(t, "app", "TRUNCATE "+table)
	case 5:
		w.next++
		name := fmt.Sprintf("new%d", w.next)
		w.p.exec(t, "app", fmt.Sprintf("CREATE TABLE %s AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, %d) g", name, hi))
		w.tables = append(w.tables, name)
	case 6:
		w.dropDatabaseOrCreate(t)
	default:
		w.p.exec(t, "app", fmt.Sprintf("UPDATE history SET delta = delta + 1 WHERE aid %% 97 = %d", lo%97))
	}
}

func (w *workload) dropDatabaseOrCreate(t *testing.T) {
	if len(w.dbs) > 0 && w.rng.IntN(2) == 0 {
		w.p.exec(t, "postgres", "DROP DATABASE "+w.dbs[0])
		w.dbs = w.dbs[1:]
		return
	}
	w.next++
	name := fmt.Sprintf("db%d", w.next)
	w.p.exec(t, "postgres", "CREATE DATABASE "+name)
	w.p.exec(t, name, "CREATE TABLE t AS SELECT generate_series(1, 500) AS x")
	w.dbs = append(w.dbs, name)
}
