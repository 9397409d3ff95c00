//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// runAnyExit runs a check command whose exit code reflects check results
// (0..3 are answers, not failures) and times it.
func runAnyExit(t testing.TB, cmd *exec.Cmd) (sample, string) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() > 3 {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, tail(out.String(), 3000))
		}
	}
	return sample{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, out.String()
}

// TestPeerCheck: scenario 3a, `cellar check all` over 20 servers vs one
// `barman check` of one server, all pointing at one real cluster.
func TestPeerCheck(t *testing.T) {
	rounds := envInt(t, "CELLAR_BENCH_CHECK_ROUNDS", 5)
	nsrv := envInt(t, "CELLAR_BENCH_CHECK_SERVERS", 20)
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	root := benchDir(t, "cellar-bench-check")
	conn := c.TCPConnString()
	servers := map[string][]string{}
	for i := range nsrv {
		servers[fmt.Sprintf("pg%02d", i+1)] = []string{"archiver: true"}
	}
	ce := newCellarEnv(t, root, conn, servers)
	for n := range servers {
		for _, d := range []string{"base", "wals", "incoming", "streaming", "errors", "meta"} {
			if err := os.MkdirAll(filepath.Join(ce.serverDir(n), d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	be := newBarmanEnv(t, root, conn, map[string][]string{"pg": nil})
	c.Exec(t, "SELECT pg_switch_wal()")

	var cs, bs []sample
	var floor []time.Duration
	var cOut, bOut string
	for range rounds {
		waitQuiet(t)
		s, out := runAnyExit(t, ce.cmd("check", "all"))
		cs, cOut = append(cs, s), out
		waitQuiet(t)
		s, out = runAnyExit(t, be.cmd("check", "pg"))
		bs, bOut = append(bs, s), out
		waitQuiet(t)
		floor = append(floor, connectFloor(t, conn, nsrv))
	}
	t.Logf("last cellar check all output (head):\n%s", head(cOut, 40))
	t.Logf("last barman check pg output:\n%s", bOut)
	compare(t, fmt.Sprintf("check: cellar check all (%d servers) vs barman check (1 server)", nsrv), cs, bs, 0.2)
	emit(t, fmt.Sprintf("check floor: opening the %d connections check all needs (%d normal + %d replication, all at once, SELECT 1 / IDENTIFY_SYSTEM, no Cellar code) to this one cluster takes %.1f ms (median; runs %s s)",
		2*nsrv, nsrv, nsrv, ms(medianDur(floor)), list(floor)))
}

// connectFloor opens, concurrently, one normal and one replication
// connection per server to the cluster, as `check all` does, runs the
// cheapest statement on each and closes them: what PostgreSQL alone
// costs, without Cellar.
func connectFloor(t testing.TB, conninfo string, nsrv int) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2*nsrv)
	for range nsrv {
		for _, c := range []struct{ ci, sql string }{{conninfo, "SELECT 1"}, {conninfo + " replication=yes", "IDENTIFY_SYSTEM"}} {
			wg.Go(func() {
				pc, err := pgconn.Connect(ctx, c.ci)
				if err != nil {
					errs <- err
					return
				}
				defer pc.Close(ctx)
				if _, err := pc.Exec(ctx, c.sql).ReadAll(); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatalf("connection floor: %v", err)
	}
	return d
}

func head(s string, lines int) string {
	l := strings.SplitN(s, "\n", lines+1)
	if len(l) > lines {
		l = l[:lines]
	}
	return strings.Join(l, "\n")
}

// walNameAt is the WAL name of segment number seg on timeline 1 with
// 16 MiB segments.
func walNameAt(seg int) string {
	return fmt.Sprintf("%08X%08X%08X", 1, seg/256, seg%256)
}

// writeSyntheticCatalog fills home with nsrv servers × nbackups DONE
// backups × nlines xlog.db lines, Barman 3.x layout.
func writeSyntheticCatalog(t testing.TB, home string, names []string, nbackups, nlines int, sysid string) {
	t.Helper()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, srv := range names {
		dir := filepath.Join(home, srv)
		for _, d := range []string{"base", "wals", "incoming", "streaming", "errors", "meta"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, filepath.Join(dir, "identity.json"), fmt.Sprintf(`{"systemid": "%s", "version": "15"}`, sysid), 0o600)
		// xlog.db: one line per segment, 16 MiB each, zstd-compressed size.
		var xb strings.Builder
		xb.Grow(nlines * 64)
		t0 := float64(base.Unix())
		for i := range nlines {
			fmt.Fprintf(&xb, "%s\t%d\t%.6f\tzstd\tNone\n", walNameAt(i+1), 600000+i%1000, t0+float64(i)*30)
		}
		writeFile(t, filepath.Join(dir, "wals", srv+"-xlog.db"), xb.String(), 0o600)
		step := nlines / nbackups
		if step < 1 {
			step = 1
		}
		for b := range nbackups {
			begin := base.Add(time.Duration(b*step) * 30 * time.Second)
			end := begin.Add(5 * time.Minute)
			id := begin.Format("20060102T150405")
			seg := 1 + b*step
			endSeg := seg
			if endSeg+1 <= nlines {
				endSeg++
			}
			info := fmt.Sprintf(`backup_label=None
backup_name=None
begin_offset=40
begin_time=%s
begin_wal=%s
begin_xlog=%X/%X
compression=None
config_file=/var/lib/postgresql/15/main/postgresql.conf
copy_stats={'copy_time': 10.0, 'total_time': 11.0}
deduplicated_size=1073741824
end_offset=256
end_time=%s
end_wal=%s
end_xlog=%X/%X
error=None
hba_file=/var/lib/postgresql/15/main/pg_hba.conf
ident_file=/var/lib/postgresql/15/main/pg_ident.conf
included_files=None
mode=postgres
pgdata=/var/lib/postgresql/15/main
server_name=%s
size=1073741824
status=DONE
systemid=%s
tablespaces=None
timeline=1
version=150018
xlog_segment_size=16777216
`, begin.Format("2006-01-02 15:04:05.000000+00:00"), walNameAt(seg), seg>>8, (seg&0xff)<<24|40,
				end.Format("2006-01-02 15:04:05.000000+00:00"), walNameAt(endSeg), endSeg>>8, (endSeg&0xff)<<24|256, srv, sysid)
			writeFile(t, filepath.Join(dir, "base", id, "backup.info"), info, 0o600)
		}
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// exporterProc is a running `cellar exporter`.
type exporterProc struct {
	cmd  *exec.Cmd
	addr string
	logs *strings.Builder
}

// startExporter starts `cellar exporter` and waits until it listens
// (GET / answers); the time that takes is returned.
func startExporter(t *testing.T, ce cellarEnv) (*exporterProc, time.Duration) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := ce.cmd("exporter", "--web.listen-address", addr)
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &exporterProc{cmd: cmd, addr: addr, logs: logs}
	t.Cleanup(e.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return e, time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter did not listen on %s: %v\n%s", addr, err, tail(logs.String(), 2000))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *exporterProc) stop() {
	if e.cmd.ProcessState != nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-done
	}
}

func (e *exporterProc) scrape(t *testing.T) (time.Duration, string) {
	t.Helper()
	url := "http://" + e.addr + "/metrics"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	st := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(st)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, tail(string(body), 2000))
	}
	if !strings.Contains(string(body), "cellar_") {
		t.Fatalf("GET %s: no cellar_ metrics:\n%s", url, tail(string(body), 2000))
	}
	if n := strings.Count(string(body), "cellar_up{"); n == 0 {
		t.Fatalf("GET %s: no cellar_up series:\n%s", url, tail(string(body), 2000))
	}
	return d, string(body)
}

// slowestChecks lists, from a /metrics body, the checks whose evaluation
// took longest on any server (cellar_check_duration_seconds), slowest
// first.
func slowestChecks(body string, n int) string {
	worst := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "cellar_check_duration_seconds{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `check="`)
		check, _, _ := strings.Cut(rest, `"`)
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil && v > worst[check] {
			worst[check] = v
		}
	}
	keys := make([]string, 0, len(worst))
	for k := range worst {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return worst[keys[i]] > worst[keys[j]] })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s %.1f ms", k, worst[k]*1000))
	}
	return strings.Join(parts, ", ")
}

// TestPeerScrape: scenario 3b, GET /metrics of `cellar exporter` over a
// synthetic catalog of 20 servers × 1000 backups × 100k xlog.db lines:
// the first scrape of an exporter that never saw the catalog, the first
// scrape after a restart (caches primed from the state the first run
// saved), steady scrapes, and a scrape once every result is older than
// min_probe_interval (served at once, re-evaluated in the background).
func TestPeerScrape(t *testing.T) {
	nsrv := envInt(t, "CELLAR_BENCH_CHECK_SERVERS", 20)
	nbackups := envInt(t, "CELLAR_BENCH_BACKUPS", 1000)
	nlines := envInt(t, "CELLAR_BENCH_XLOG_LINES", 100000)
	scrapes := envInt(t, "CELLAR_BENCH_SCRAPES", 10)
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	root := benchDir(t, "cellar-bench-scrape")
	servers := map[string][]string{}
	var names []string
	for i := range nsrv {
		n := fmt.Sprintf("pg%02d", i+1)
		names = append(names, n)
		servers[n] = []string{"archiver: true"}
	}
	ce := newCellarEnv(t, root, c.TCPConnString(), servers)
	start := time.Now()
	writeSyntheticCatalog(t, ce.home, names, nbackups, nlines, c.SystemID(t))
	t.Logf("synthetic catalog (%d servers × %d backups × %d xlog lines) written in %v", nsrv, nbackups, nlines, time.Since(start).Round(time.Millisecond))
	syncFS()
	if out, err := ce.cmd("list-backups", names[0]).CombinedOutput(); err != nil {
		t.Fatalf("cellar list-backups on the synthetic catalog: %v\n%s", err, tail(string(out), 2000))
	} else if got := strings.Count(string(out), "\n"); got < nbackups {
		t.Fatalf("cellar list-backups %s shows %d lines, want ≥ %d:\n%s", names[0], got, nbackups, head(string(out), 10))
	}

	// Run 1: an exporter that never saw this catalog.
	waitQuiet(t)
	e1, listen1 := startExporter(t, ce)
	cold, coldBody := e1.scrape(t)
	// The state is saved right after each evaluation; wait for all of it.
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range names {
		for {
			if _, err := os.Stat(filepath.Join(ce.home, n, ".cellar-probe-state")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no probe state saved for %s\n%s", n, tail(e1.logs.String(), 2000))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	e1.stop()

	// Run 2: the same exporter restarted.
	waitQuiet(t)
	e, listen2 := startExporter(t, ce)
	cpu0 := procCPU(e.cmd.Process.Pid)
	firstAt := time.Now()
	first, body := e.scrape(t)
	var warm []time.Duration
	for range scrapes {
		waitQuiet(t)
		d, _ := e.scrape(t)
		warm = append(warm, d)
	}
	// Once min_probe_interval (15 s) has passed since the first scrape,
	// every result is stale: the scrape serves them and starts a
	// background re-evaluation; the scrape after that serves its results.
	if wait := 16*time.Second - time.Since(firstAt); wait > 0 {
		time.Sleep(wait)
	}
	waitQuiet(t)
	stale, _ := e.scrape(t)
	time.Sleep(3 * time.Second)
	refreshed, _ := e.scrape(t)
	warm = append(warm, stale, refreshed)
	cpu := procCPU(e.cmd.Process.Pid) - cpu0
	rss, hwm := procRSS(e.cmd.Process.Pid)
	verdict := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "MISSED"
	}
	med := medianDur(warm)
	worst := first
	for _, d := range warm {
		worst = max(worst, d)
	}
	emit(t, fmt.Sprintf("scrape (%d servers × %d backups × %d xlog.db lines): after a restart: first GET /metrics %.1f ms (exporter listening %.0f ms after exec), median of next %d %.1f ms, all results stale %.1f ms, after the background refresh %.1f ms; slowest %.1f ms (target < 50 ms) %s [runs %s s; body %d bytes; exporter CPU %.2f s]",
		nsrv, nbackups, nlines, ms(first), ms(listen2), scrapes, ms(med), ms(stale), ms(refreshed), ms(worst), verdict(worst < 50*time.Millisecond), list(warm), len(body), cpu.Seconds()))
	emit(t, "scrape after a restart, slowest checks of the start-up evaluation (max over servers): "+slowestChecks(body, 6))
	emit(t, fmt.Sprintf("scrape, exporter that never saw the catalog: first GET /metrics %.1f ms (listening %.0f ms after exec; reads every backup.info and xlog.db once) %s",
		ms(cold), ms(listen1), verdict(cold < 50*time.Millisecond)))
	emit(t, "scrape of the never-seen catalog, slowest checks: "+slowestChecks(coldBody, 6))
	emit(t, fmt.Sprintf("exporter RSS after scrapes: %.1f MB, peak (VmHWM) %.1f MB (target < 100 MB) %s",
		float64(rss)/1e6, float64(hwm)/1e6, verdict(hwm < 100e6)))
}
