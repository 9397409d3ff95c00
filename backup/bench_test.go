//go:build bench

package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
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

// machineCPU is the busy (non-idle, non-iowait) CPU time of the whole
// machine from /proc/stat: it includes the server's walsender, which does
// the compression when the server compresses and which cpuTime cannot see.
func machineCPU(t *testing.T) time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest fields are already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestBenchBackupVsPgBasebackup compares Cellar with pg_basebackup and
// pgBackRest on a pgbench scale-100 cluster (~1.5 GB), interleaved in the
// same run (each round runs every tool once), fast checkpoint, and reports
// medians. Opt-in: go test -tags bench -run Bench -v ./backup/;
// CELLAR_BENCH_SCALE overrides the scale, CELLAR_BENCH_ROUNDS the rounds (3).
func TestBenchBackupVsPgBasebackup(t *testing.T) {
	scale := "100"
	if s := os.Getenv("CELLAR_BENCH_SCALE"); s != "" {
		scale = s
	}
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	start := time.Now()
	c.Pgbench(t, "-i", "-q", "-s", scale)
	c.Exec(t, "CHECKPOINT")
	t.Logf("pgbench -i -s %s: %s, database %s bytes, %d CPUs", scale, time.Since(start).Round(time.Second),
		c.QueryRow(t, "SELECT pg_database_size('postgres')"), runtime.NumCPU())

	type result struct{ wall, cpu, machine time.Duration }
	measure := func(f func()) result {
		t0, c0, m0 := time.Now(), cpuTime(), machineCPU(t)
		f()
		return result{time.Since(t0), cpuTime() - c0, machineCPU(t) - m0}
	}
	cellar := func(comp string, client bool, reuse string, o Options) result {
		o.Compression, o.ClientCompression, o.ReuseBackup = comp, client, reuse
		return measure(func() {
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
		})
	}
	// pg_basebackup fsyncs its output like Cellar does (no --no-sync).
	pgbb := func(args ...string) result {
		dir := pgtest.MkdirForPostgres(t)
		out := filepath.Join(dir, "bb")
		r := measure(func() {
			c.RunAsPostgres(t, "pg_basebackup", append([]string{"-D", out, "-Ft", "-X", "none", "-c", "fast"}, args...)...)
		})
		os.RemoveAll(out)
		return r
	}
	// pgBackRest as ENVIRONMENT.md §B.4: run as postgres, a fresh repo and
	// an untimed stanza-create before each timed full backup.
	pgbackrest := func() result {
		dir := pgtest.MkdirForPostgres(t)
		conf := filepath.Join(dir, "pgbackrest.conf")
		text := fmt.Sprintf("[global]\nrepo1-path=%[1]s/repo\nlog-path=%[1]s/log\nlock-path=%[1]s/lock\nspool-path=%[1]s/spool\n"+
			"start-fast=y\narchive-check=n\nrepo1-retention-full=1\nlog-level-console=warn\n"+
			"[bench]\npg1-path=%[2]s\npg1-port=%[3]d\npg1-socket-path=%[4]s\npg1-user=postgres\n", dir, c.DataDir, c.Port, c.SocketDir)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		c.RunAsPostgres(t, "/usr/bin/pgbackrest", "--config="+conf, "--stanza=bench", "stanza-create")
		r := measure(func() {
			c.RunAsPostgres(t, "/usr/bin/pgbackrest", "--config="+conf, "--stanza=bench", "--type=full",
				"--compress-type=lz4", "--process-max=2", "backup")
		})
		os.RemoveAll(dir)
		return r
	}
	rounds := 3
	if s := os.Getenv("CELLAR_BENCH_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	var order []string
	all := map[string][]result{}
	add := func(k string, r result) {
		if _, ok := all[k]; !ok {
			order = append(order, k)
		}
		all[k] = append(all[k], r)
		t.Logf("%-30s wall %6.2fs cpu(client) %6.2fs cpu(machine) %6.2fs", k, r.wall.Seconds(), r.cpu.Seconds(), r.machine.Seconds())
	}
	for range rounds {
		for _, tc := range []struct {
			name   string
			comp   string
			client bool
		}{
			{"cellar none", CompressionNone, false},
			{"cellar lz4 server", CompressionLZ4, false},
			{"cellar zstd server", CompressionZstd, false},
			{"cellar lz4 client", CompressionLZ4, true},
			{"cellar zstd client", CompressionZstd, true},
		} {
			o := newOptions(t, c)
			add(tc.name, cellar(tc.comp, tc.client, ReuseOff, o))
			os.RemoveAll(o.Layout.BackupDir)
		}
		add("pg_basebackup -Ft", pgbb())
		add("pg_basebackup server-lz4", pgbb("--compress=server-lz4"))
		add("pg_basebackup client-zstd", pgbb("--compress=client-zstd"))
		add("pgbackrest lz4 pm2", pgbackrest())
	}
	med := map[string]result{}
	for _, k := range order {
		var w, c, m []time.Duration
		for _, r := range all[k] {
			w, c, m = append(w, r.wall), append(c, r.cpu), append(m, r.machine)
		}
		med[k] = result{median(w), median(c), median(m)}
		t.Logf("MEDIAN %-30s wall %6.2fs cpu(client) %6.2fs cpu(machine) %6.2fs (n=%d)", k, med[k].wall.Seconds(), med[k].cpu.Seconds(), med[k].machine.Seconds(), len(all[k]))
	}
	ratio := func(a, b string, target float64) {
		w := med[a].wall.Seconds() / med[b].wall.Seconds()
		verdict := "meets"
		if w > target {
			verdict = "MISSES"
		}
		t.Logf("RATIO %s / %s: wall %.2f (target <= %.2f: %s), cpu(client) %.2f, cpu(machine) %.2f", a, b, w, target, verdict,
			med[a].cpu.Seconds()/med[b].cpu.Seconds(), med[a].machine.Seconds()/med[b].machine.Seconds())
	}
	ratio("cellar none", "pg_basebackup -Ft", 0.9)
	for _, k := range []string{"cellar lz4 server", "cellar zstd server", "cellar lz4 client", "cellar zstd client"} {
		ratio(k, "pgbackrest lz4 pm2", 0.8)
		ratio(k, "pg_basebackup server-lz4", 1.0)
	}
	ratio("cellar zstd server", "pg_basebackup client-zstd", 1.0)

	// reuse_backup=link: second backup of an unchanged cluster.
	o := newOptions(t, c)
	cellar(CompressionNone, false, ReuseLink, o)
	r := cellar(CompressionNone, false, ReuseLink, o)
	backups, err := catalog.Open(o.Layout).Backups()
	if err != nil {
		t.Fatal(err)
	}
	last := backups[len(backups)-1]
	t.Logf("reuse_backup=link second backup: wall %.2fs, size %d, new bytes %d (%.2f%%)", r.wall.Seconds(), *last.Size, *last.DeduplicatedSize,
		100*float64(*last.DeduplicatedSize)/float64(*last.Size))
}
