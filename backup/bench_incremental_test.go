//go:build bench

package backup

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// TestBenchIncrementalVsFull compares, on PostgreSQL 17, an incremental
// backup taken after 5% of pgbench_accounts' pages changed with the full
// backup it is taken from (fillfactor 90, so the updates stay in their
// pages): bytes (plain layout, so bytes stored are the
// bytes the server sent), wall and CPU time, interleaved per round.
// Targets: incremental <= 10% of the bytes and <= 0.3x the wall time.
// Opt-in: go test -tags bench -run BenchIncremental -v ./backup/;
// CELLAR_BENCH_SCALE sets the scale (100), CELLAR_BENCH_ROUNDS the rounds (3).
func TestBenchIncrementalVsFull(t *testing.T) {
	scale := "100"
	if s := os.Getenv("CELLAR_BENCH_SCALE"); s != "" {
		scale = s
	}
	rounds := 3
	if s := os.Getenv("CELLAR_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	c := pgtest.Start(t, pgtest.Options{Version: 17, Archive: true, ExtraConf: []string{"summarize_wal = on"}})
	// Fillfactor 90 leaves room in each page, so the updates are HOT and
	// stay in their page: 5% of the rows is then 5% of the pages.
	c.Pgbench(t, "-i", "-q", "-F", "90", "-s", scale)
	c.Exec(t, "CHECKPOINT")
	t.Logf("PostgreSQL 17, pgbench scale %s, database %s bytes", scale, c.QueryRow(t, "SELECT pg_database_size('postgres')"))

	type result struct {
		wall, cpu, machine time.Duration
		bytes              int64
	}
	take := func(o Options) (result, *catalog.BackupInfo) {
		t0, c0, m0 := time.Now(), cpuTime(), machineCPU(t)
		info, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		r := result{time.Since(t0), cpuTime() - c0, machineCPU(t) - m0, *info.Size}
		// Waiting for the WAL (the parent must be DONE) is not timed.
		if _, err := WaitForWALs(context.Background(), o.Layout, info.ID, 5*time.Minute, archivePoke(c, o.Layout)); err != nil {
			t.Fatal(err)
		}
		return r, info
	}
	var fulls, incrs []result
	for range rounds {
		o := newOptions(t, c)
		full, _ := take(o)
		changePages(t, c)
		settle(t, c)
		o.Incremental = true
		incr, _ := take(o)
		fulls, incrs = append(fulls, full), append(incrs, incr)
		t.Logf("full: %d bytes, wall %.2fs, cpu(client) %.2fs, cpu(machine) %.2fs; incremental: %d bytes, wall %.2fs, cpu(client) %.2fs, cpu(machine) %.2fs",
			full.bytes, full.wall.Seconds(), full.cpu.Seconds(), full.machine.Seconds(),
			incr.bytes, incr.wall.Seconds(), incr.cpu.Seconds(), incr.machine.Seconds())
		if os.Getenv("CELLAR_BENCH_KEEP") == "" {
			os.RemoveAll(o.Layout.BackupDir)
		} else {
			t.Logf("kept %s", o.Layout.BackupDir)
		}
	}
	med := func(rs []result, f func(result) time.Duration) time.Duration {
		var d []time.Duration
		for _, r := range rs {
			d = append(d, f(r))
		}
		return median(d)
	}
	wall := func(r result) time.Duration { return r.wall }
	cpu := func(r result) time.Duration { return r.cpu }
	machine := func(r result) time.Duration { return r.machine }
	// Bytes: the first round's ratio. Later rounds update rows whose
	// pages the earlier HOT updates filled, so they also write new pages.
	bytesRatio := float64(incrs[0].bytes) / float64(fulls[0].bytes)
	wallRatio := med(incrs, wall).Seconds() / med(fulls, wall).Seconds()
	verdict := func(v, target float64) string {
		if v <= target {
			return "meets"
		}
		return "MISSES"
	}
	t.Logf("RATIO incremental / full: bytes %.3f (target <= 0.10: %s), wall %.2f (target <= 0.30: %s), cpu(client) %.2f, cpu(machine) %.2f (medians of %d rounds)",
		bytesRatio, verdict(bytesRatio, 0.10), wallRatio, verdict(wallRatio, 0.30),
		med(incrs, cpu).Seconds()/med(fulls, cpu).Seconds(), med(incrs, machine).Seconds()/med(fulls, machine).Seconds(), rounds)
}

// settle checkpoints and waits until the WAL summarizer has caught up with
// the changes, so that the incremental is timed like the full backup was:
// from a clean checkpoint, without the summarizer's backlog.
func settle(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Exec(t, "CHECKPOINT")
	target := c.QueryRow(t, "SELECT redo_lsn::text FROM pg_control_checkpoint()")
	deadline := time.Now().Add(2 * time.Minute)
	for c.QueryRow(t, "SELECT (summarized_lsn >= '"+target+"'::pg_lsn)::text FROM pg_get_wal_summarizer_state()") != "true" {
		if time.Now().After(deadline) {
			t.Fatalf("WAL summarizer did not reach %s", target)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
