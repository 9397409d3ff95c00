//go:build bench

package recovery

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// TestChainRestoreBench restores a chain of a full backup and three
// incrementals and a full backup of the same data, interleaved, and prints
// wall and CPU time side by side (target: chain ≤ 1.3× full). Scale is
// CELLAR_BENCH_SCALE (pgbench scale, default 10).
//
//	go test -tags bench -count=1 -run TestChainRestoreBench -v ./recovery/
func TestChainRestoreBench(t *testing.T) {
	scale := 10
	if s, err := strconv.Atoi(os.Getenv("CELLAR_BENCH_SCALE")); err == nil && s > 0 {
		scale = s
	}
	f := newFixtureWith(t, pgtest.Options{Version: 17, Archive: true, ExtraConf: []string{"summarize_wal = on"}})
	f.src.Pgbench(t, "-i", "-q", "-s", strconv.Itoa(scale))
	tip := takeChainBackup(t, f, false)
	for i := range 3 {
		f.src.Exec(t, fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid %% 50 = %d", i))
		tip = takeChainBackup(t, f, true)
	}
	full := takeChainBackup(t, f, false)
	f.switchAndSync(t)

	type sample struct{ wall, cpu time.Duration }
	run := func(b *catalog.BackupInfo) sample {
		dest := destDir(t)
		cpu0 := cpuTime()
		start := time.Now()
		res, err := Recover(t.Context(), Options{Layout: f.layout, Backup: b, Dest: dest, Parallel: 2})
		if err != nil {
			t.Fatal(err)
		}
		s := sample{time.Since(start), cpuTime() - cpu0}
		t.Logf("  %s (%s): %d files, %d bytes, %d rebuilt: wall %s cpu %s", b.ID, b.BackupType(), res.Files, res.Bytes, res.Reconstructed, s.wall.Round(time.Millisecond), s.cpu.Round(time.Millisecond))
		os.RemoveAll(dest)
		return s
	}
	var best [2]sample
	for round := range 3 {
		for i, b := range []*catalog.BackupInfo{full, tip} {
			s := run(b)
			if round == 0 || s.wall < best[i].wall {
				best[i].wall = s.wall
			}
			if round == 0 || s.cpu < best[i].cpu {
				best[i].cpu = s.cpu
			}
		}
	}
	t.Logf("scale %d, best of 3 interleaved: full backup wall %s cpu %s | chain of 4 wall %s cpu %s | ratio wall %.2f cpu %.2f (target ≤ 1.30)",
		scale, best[0].wall.Round(time.Millisecond), best[0].cpu.Round(time.Millisecond),
		best[1].wall.Round(time.Millisecond), best[1].cpu.Round(time.Millisecond),
		float64(best[1].wall)/float64(best[0].wall), float64(best[1].cpu)/float64(best[0].cpu))
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
