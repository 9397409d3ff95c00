package exporter

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/checktarget"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/server"
)

// writeLargeCatalog fills home with nsrv servers (pg01...) of nbackups
// DONE backups (legacy base/<id>/backup.info) and nlines xlog.db lines,
// like the bench's synthetic Barman catalog, and returns the config file.
// Plain writes: this is a fixture, not catalog data that must survive.
func writeLargeCatalog(tb testing.TB, root string, nsrv, nbackups, nlines int) string {
	tb.Helper()
	home := filepath.Join(root, "home")
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "global:\n  barman_home: %s\nservers:\n", home)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	segName := func(seg int) string { return fmt.Sprintf("%08X%08X%08X", 1, seg/256, seg%256) }
	for i := range nsrv {
		srv := fmt.Sprintf("pg%02d", i+1)
		// Port 1 refuses at once: the PostgreSQL probes fail fast.
		fmt.Fprintf(&yaml, "  %s:\n    conninfo: \"host=127.0.0.1 port=1 connect_timeout=1\"\n    archiver: true\n", srv)
		dir := filepath.Join(home, srv)
		for _, d := range []string{"base", "wals", "incoming", "streaming", "errors", "meta"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
				tb.Fatal(err)
			}
		}
		var xb strings.Builder
		xb.Grow(nlines * 64)
		t0 := float64(base.Unix())
		for n := range nlines {
			fmt.Fprintf(&xb, "%s\t%d\t%.6f\tzstd\tNone\n", segName(n+1), 600000+n%1000, t0+float64(n)*30)
		}
		if err := os.WriteFile(filepath.Join(dir, "wals", srv+"-xlog.db"), []byte(xb.String()), 0o600); err != nil {
			tb.Fatal(err)
		}
		step := max(nlines/nbackups, 1)
		for b := range nbackups {
			begin := base.Add(time.Duration(b*step) * 30 * time.Second)
			end := begin.Add(5 * time.Minute)
			id := begin.Format("20060102T150405")
			seg := 1 + b*step
			info := fmt.Sprintf("backup_label=None\nbegin_offset=40\nbegin_time=%s\nbegin_wal=%s\nend_offset=256\nend_time=%s\nend_wal=%s\nerror=None\nmode=postgres\nserver_name=%s\nsize=1073741824\nstatus=DONE\ntimeline=1\nversion=150018\nxlog_segment_size=16777216\n",
				begin.Format("2006-01-02 15:04:05.000000+00:00"), segName(seg),
				end.Format("2006-01-02 15:04:05.000000+00:00"), segName(seg+1), srv)
			if err := os.MkdirAll(filepath.Join(dir, "base", id), 0o700); err != nil {
				tb.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "base", id, "backup.info"), []byte(info), 0o600); err != nil {
				tb.Fatal(err)
			}
			// Every backup verified: the worst case of the verification
			// probe (a record to watch per backup).
			verify := fmt.Sprintf(`{"backup_id":%q,"result":"ok","verified_at":%q,"duration_ns":1000000000,"files":1000,"bytes":1073741824}`,
				id, end.Add(time.Hour).Format(time.RFC3339Nano))
			if err := os.WriteFile(filepath.Join(dir, "base", id, "cellar-verify.json"), []byte(verify), 0o600); err != nil {
				tb.Fatal(err)
			}
		}
	}
	cfgFile := filepath.Join(root, "cellar.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return cfgFile
}

// peakHeap samples HeapAlloc until stop is closed and returns the highest
// value seen (runtime.MemStats has no high-water mark of its own).
func peakHeap(stop <-chan struct{}) func() uint64 {
	var peak atomic.Uint64
	var wg sync.WaitGroup
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > peak.Load() {
			peak.Store(ms.HeapAlloc)
		}
	}
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				sample()
				return
			case <-tick.C:
				sample()
			}
		}
	})
	return func() uint64 { wg.Wait(); return peak.Load() }
}

// BenchmarkScrapeLargeCatalog measures a scrape of 20 servers × 1000
// backups × 100k xlog.db lines (issue 7's bench: < 50 ms, < 100 MB) with
// every probe re-evaluated (MinProbeInterval 0, the worst case of the
// exporter's cache). ns/op is one collection after the first; the first
// (cold: every file parsed) is reported as first-ms. peak-heap-MB is the
// highest sampled HeapAlloc over all collections, cold one included.
// CELLAR_BENCH_XLOG_LINES / CELLAR_BENCH_BACKUPS shrink the catalog.
func BenchmarkScrapeLargeCatalog(b *testing.B) {
	nsrv, nbackups, nlines := 20, envInt(b, "CELLAR_BENCH_BACKUPS", 1000), envInt(b, "CELLAR_BENCH_XLOG_LINES", 100_000)
	start := time.Now()
	cfgFile := writeLargeCatalog(b, b.TempDir(), nsrv, nbackups, nlines)
	b.Logf("catalog of %d servers × %d backups × %d xlog.db lines written in %v", nsrv, nbackups, nlines, time.Since(start).Round(time.Millisecond))
	cfg, err := config.Load(config.LoadOptions{File: cfgFile})
	if err != nil {
		b.Fatal(err)
	}
	srvs, err := server.NewSet(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	col := NewCollector(checks.Default(), TargetList(checktarget.All(srvs)), Options{ScrapeTimeout: time.Minute})
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	runtime.GC()
	stop := make(chan struct{})
	peak := peakHeap(stop)

	first := time.Now()
	if _, err := reg.Gather(); err != nil {
		b.Fatal(err)
	}
	firstDur := time.Since(first)
	b.ResetTimer()
	cpu0 := processCPU(b)
	n := 0
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.StopTimer()
	// CPU time beside wall time: on a shared VM a busy neighbour
	// stretches the wall time, not the CPU a collection costs.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/1000/float64(max(n, 1)), "cpu-ms/op")
	close(stop)
	b.ReportMetric(float64(firstDur.Microseconds())/1000, "first-ms")
	b.ReportMetric(float64(peak())/(1<<20), "peak-heap-MB")

	// The cached scrape still reports the whole archive.
	var want float64
	for n := range nlines {
		want += float64(600000 + n%1000)
	}
	if got := gaugeValue(b, reg, "cellar_wal_archive_size_bytes", map[string]string{"server": "pg01"}); got != want {
		b.Fatalf("cellar_wal_archive_size_bytes{server=pg01} = %v, want %v", got, want)
	}
	if got := gaugeValue(b, reg, "cellar_backups", map[string]string{"server": "pg20", "status": "DONE"}); got != float64(nbackups) {
		b.Fatalf("cellar_backups{server=pg20,status=DONE} = %v, want %d", got, nbackups)
	}
	if got := gaugeValue(b, reg, "cellar_backup_last_verification_ok", map[string]string{"server": "pg20"}); got != 1 {
		b.Fatalf("cellar_backup_last_verification_ok{server=pg20} = %v, want 1", got)
	}
	if got := gaugeValue(b, reg, "cellar_backup_verifications", map[string]string{"server": "pg20", "result": "ok"}); got != float64(nbackups) {
		b.Fatalf("cellar_backup_verifications{server=pg20,result=ok} = %v, want %d", got, nbackups)
	}
}

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// processCPU is the user+system CPU time the process has used so far.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
