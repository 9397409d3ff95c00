//go:build bench

package backup

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// cpuTime is the user+sys CPU of finished children plus this process.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration {
		return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
	}
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// TestBenchBackupVsPgBasebackup compares Cellar with pg_basebackup on a
// pgbench scale-100 cluster (~1.5 GB), interleaved in the same run, fast
// checkpoint. Opt-in (make bench): CELLAR_BENCH=1; CELLAR_BENCH_SCALE
// overrides the scale.
func TestBenchBackupVsPgBasebackup(t *testing.T) {
	scale := "100"
	if s := os.Getenv("CELLAR_BENCH_SCALE"); s != "" {
		scale = s
	}
	c := pgtest.Start(t, pgtest.Options{})
	start := time.Now()
	c.Pgbench(t, "-i", "-q", "-s", scale)
	c.Exec(t, "CHECKPOINT")
	t.Logf("pgbench -i -s %s: %s, database %s bytes", scale, time.Since(start).Round(time.Second), c.QueryRow(t, "SELECT pg_database_size('postgres')"))

	type result struct{ wall, cpu time.Duration }
	measure := func(f func()) result {
		t0, c0 := time.Now(), cpuTime()
		f()
		return result{time.Since(t0), cpuTime() - c0}
	}
	cellar := func(comp, reuse string, o Options) result {
		o.Compression, o.ReuseBackup = comp, reuse
		return measure(func() {
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
		})
	}
	// pg_basebackup fsyncs its output like Cellar does (no --no-sync).
	pgbbSync := func(args ...string) result {
		dir := pgtest.MkdirForPostgres(t)
		out := filepath.Join(dir, "bb")
		r := measure(func() {
			c.RunAsPostgres(t, "pg_basebackup", append([]string{"-D", out, "-Ft", "-X", "none", "-c", "fast"}, args...)...)
		})
		os.RemoveAll(out)
		return r
	}
	rounds := 2
	if s := os.Getenv("CELLAR_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	sum := map[string]result{}
	add := func(k string, r result) {
		s := sum[k]
		s.wall += r.wall
		s.cpu += r.cpu
		sum[k] = s
		t.Logf("%-28s wall %6.2fs cpu %6.2fs", k, r.wall.Seconds(), r.cpu.Seconds())
	}
	for range rounds {
		for _, comp := range []string{CompressionNone, CompressionLZ4, CompressionZstd} {
			o := newOptions(t, c)
			add("cellar "+comp, cellar(comp, ReuseOff, o))
			os.RemoveAll(o.Layout.BackupDir)
		}
		add("pg_basebackup -Ft", pgbbSync())
		add("pg_basebackup server-lz4", pgbbSync("--compress=server-lz4"))
		add("pg_basebackup client-zstd", pgbbSync("--compress=client-zstd"))
	}
	ratio := func(a, b string) {
		t.Logf("RATIO %s / %s: wall %.2f, cpu %.2f", a, b, sum[a].wall.Seconds()/sum[b].wall.Seconds(), sum[a].cpu.Seconds()/sum[b].cpu.Seconds())
	}
	ratio("cellar none", "pg_basebackup -Ft")
	ratio("cellar lz4", "pg_basebackup server-lz4")
	ratio("cellar zstd", "pg_basebackup client-zstd")

	// reuse_backup=link: second backup of an unchanged cluster.
	o := newOptions(t, c)
	cellar(CompressionNone, ReuseLink, o)
	r := cellar(CompressionNone, ReuseLink, o)
	backups, err := catalog.Open(o.Layout).Backups()
	if err != nil {
		t.Fatal(err)
	}
	last := backups[len(backups)-1]
	t.Logf("reuse_backup=link second backup: wall %.2fs, size %d, new bytes %d (%.2f%%)", r.wall.Seconds(), *last.Size, *last.DeduplicatedSize,
		100*float64(*last.DeduplicatedSize)/float64(*last.Size))
}
