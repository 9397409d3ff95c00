package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/config"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// fakeTarget is a renderer-test Target: fixed catalog data over a real
// directory tree; PostgreSQL is unreachable (the server is "down").
type fakeTarget struct {
	name    string
	cfg     *config.Server
	dirs    checks.Directories
	backups []checks.Backup
	wals    []checks.WAL
	// passive is what Passive reports; nil = not a passive server.
	passive *checks.PassiveStatus
}

func newFake(t *testing.T, name string) *fakeTarget {
	t.Helper()
	bd := filepath.Join(t.TempDir(), name)
	d := checks.Directories{Backup: bd, Base: bd + "/base", Wals: bd + "/wals", Incoming: bd + "/incoming",
		Streaming: bd + "/streaming", Errors: bd + "/errors", Meta: bd + "/meta", XLogDB: bd + "/wals/xlog.db"}
	for _, p := range d.All() {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.DefaultServer(name)
	cfg.BackupDirectory = bd
	cfg.Archiver = true
	cfg.Conninfo = "host=/nonexistent"
	cfg.PrimarySSHCommand = "" // active, not passive
	return &fakeTarget{name: name, cfg: cfg, dirs: d}
}

func (f *fakeTarget) Name() string                    { return f.name }
func (f *fakeTarget) Config() *config.Server          { return f.cfg }
func (f *fakeTarget) Directories() checks.Directories { return f.dirs }
func (f *fakeTarget) Now() time.Time                  { return t0 }
func (f *fakeTarget) PostgresStatus(context.Context) (*checks.PGStatus, error) {
	return nil, io.ErrUnexpectedEOF
}
func (f *fakeTarget) StreamingStatus(context.Context) (*checks.StreamingStatus, error) {
	return nil, io.ErrUnexpectedEOF
}
func (f *fakeTarget) WALPostgresStatus(context.Context) (*checks.PGStatus, error) {
	return nil, checks.ErrNotConfigured
}
func (f *fakeTarget) WALStreamingStatus(context.Context) (*checks.StreamingStatus, error) {
	return nil, checks.ErrNotConfigured
}
func (f *fakeTarget) PrimaryStatus(context.Context) (*checks.PGStatus, error) {
	return nil, checks.ErrNotConfigured
}
func (f *fakeTarget) Backups(context.Context) ([]checks.Backup, error) { return f.backups, nil }
func (f *fakeTarget) WALs(_ context.Context, fn func(checks.WAL) error) error {
	for _, w := range f.wals {
		if err := fn(w); err != nil {
			return err
		}
	}
	return nil
}
func (f *fakeTarget) Identity() (*checks.Identity, error) {
	return &checks.Identity{SystemID: "7", Version: "15"}, nil
}
func (f *fakeTarget) ReceiveWAL() (int, bool, error) { return 0, false, nil }
func (f *fakeTarget) Passive(context.Context) (*checks.PassiveStatus, error) {
	if f.passive == nil {
		return nil, checks.ErrNotConfigured
	}
	st := *f.passive
	return &st, nil
}

// passiveFake is a passive node (primary_ssh_command set): PostgreSQL is
// never asked, the ssh probe reports st.
func passiveFake(t *testing.T, name string, st checks.PassiveStatus) *fakeTarget {
	f := newFake(t, name)
	f.cfg.Conninfo = ""
	f.cfg.PrimarySSHCommand = "ssh cellar@backup1"
	f.passive = &st
	return f
}

func fixture(t *testing.T) TargetList {
	pg1 := newFake(t, "pg1")
	pg1.backups = []checks.Backup{
		{ID: "20261123T100000", Status: checks.StatusDone, EndTime: t0.Add(-26 * time.Hour), Size: 1000, BeginWAL: "000000010000000000000002", EndWAL: "000000010000000000000002"},
		{ID: "20261124T100000", Status: checks.StatusDone, EndTime: t0.Add(-2 * time.Hour), Size: 2000, BeginWAL: "000000010000000000000005", EndWAL: "000000010000000000000005"},
		{ID: "20261124T110000", Status: checks.StatusFailed},
	}
	pg1.wals = []checks.WAL{
		{Name: "000000010000000000000002", Size: 100, Time: t0.Add(-26 * time.Hour)},
		{Name: "000000010000000000000005", Size: 100, Time: t0.Add(-2 * time.Hour)},
		{Name: "000000010000000000000006", Size: 50, Time: t0.Add(-time.Hour)},
	}
	if err := os.WriteFile(filepath.Join(pg1.dirs.Errors, "x.20261124T120000Z.duplicate"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pg1.dirs.XLogDB, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg2 := newFake(t, "pg2")
	pg2.cfg.Active = false
	return TargetList{pg1, pg2}
}

func TestCollector(t *testing.T) {
	t.Parallel()
	c := NewCollector(checks.Default(), fixture(t), Options{ScrapeTimeout: 5 * time.Second})
	want := `
# HELP cellar_archiver_errors Files in the server's errors/ directory, by kind.
# TYPE cellar_archiver_errors gauge
cellar_archiver_errors{kind="duplicate",server="pg1"} 1
cellar_archiver_errors{kind="not_relevant",server="pg1"} 0
cellar_archiver_errors{kind="unknown",server="pg1"} 0
cellar_archiver_errors{kind="unknown_failure",server="pg1"} 0
cellar_archiver_errors{kind="duplicate",server="pg2"} 0
cellar_archiver_errors{kind="not_relevant",server="pg2"} 0
cellar_archiver_errors{kind="unknown",server="pg2"} 0
cellar_archiver_errors{kind="unknown_failure",server="pg2"} 0
# HELP cellar_backup_last_size_bytes Size in bytes of the newest available backup.
# TYPE cellar_backup_last_size_bytes gauge
cellar_backup_last_size_bytes{server="pg1"} 2000
# HELP cellar_backup_last_success_timestamp_seconds End time of the newest available (WAITING_FOR_WALS or DONE) backup, as a Unix timestamp.
# TYPE cellar_backup_last_success_timestamp_seconds gauge
cellar_backup_last_success_timestamp_seconds{server="pg1"} 1.7955144e+09
# HELP cellar_recovery_window_seconds Seconds from the end of the oldest available backup (the oldest recoverable point) to the newest archived WAL or backup end.
# TYPE cellar_recovery_window_seconds gauge
cellar_recovery_window_seconds{server="pg1"} 90000
# HELP cellar_wal_archive_size_bytes Stored bytes of every WAL file in the archive (xlog.db).
# TYPE cellar_wal_archive_size_bytes gauge
cellar_wal_archive_size_bytes{server="pg1"} 250
cellar_wal_archive_size_bytes{server="pg2"} 0
# HELP cellar_wal_archive_gap_segments WAL segments missing from the archive within a timeline, from the oldest available backup to the newest archived segment.
# TYPE cellar_wal_archive_gap_segments gauge
cellar_wal_archive_gap_segments{server="pg1"} 2
cellar_wal_archive_gap_segments{server="pg2"} 0
# HELP cellar_up 1 if every check of the server could be evaluated (none unknown: no timeout, catalog readable), else 0.
# TYPE cellar_up gauge
cellar_up{server="pg1"} 1
cellar_up{server="pg2"} 1
`
	names := []string{"cellar_archiver_errors", "cellar_backup_last_size_bytes", "cellar_backup_last_success_timestamp_seconds",
		"cellar_recovery_window_seconds", "cellar_wal_archive_size_bytes", "cellar_wal_archive_gap_segments", "cellar_up"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	// Check statuses: PostgreSQL down is critical, failed backups critical,
	// directories fine.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for check, want := range map[string]float64{"postgresql": 2, "failed_backups": 2, "directories": 0, "archiver_errors": 2, "wal_archive": 0} {
		got := gaugeValue(t, reg, "cellar_check_status", map[string]string{"server": "pg1", "check": check})
		if got != want {
			t.Errorf("status %s = %v, want %v", check, got, want)
		}
	}
	if got := gaugeValue(t, reg, "cellar_backups", map[string]string{"server": "pg1", "status": "FAILED"}); got != 1 {
		t.Errorf("cellar_backups FAILED = %v", got)
	}
}

func TestCollectorPassive(t *testing.T) {
	t.Parallel()
	up := passiveFake(t, "pg3", checks.PassiveStatus{LagKnown: true, LagSeconds: 270, LagSegments: 3})
	down := passiveFake(t, "pg4", checks.PassiveStatus{PrimaryErr: errors.New("ssh: connect to host backup1 port 22: Connection refused"), LagKnown: true, LagSeconds: 90, LagSegments: 1})
	fresh := passiveFake(t, "pg5", checks.PassiveStatus{}) // never synced: no lag series
	c := NewCollector(checks.Default(), TargetList{up, down, fresh}, Options{ScrapeTimeout: 5 * time.Second})
	want := `
# HELP cellar_passive_sync_lag_seconds Passive node: seconds of WAL the local copy trails the primary by, as of the last sync-info answer (0 when in step).
# TYPE cellar_passive_sync_lag_seconds gauge
cellar_passive_sync_lag_seconds{server="pg3"} 270
cellar_passive_sync_lag_seconds{server="pg4"} 90
# HELP cellar_passive_sync_lag_segments Passive node: WAL files the primary listed at the last sync-info that are not copied locally yet.
# TYPE cellar_passive_sync_lag_segments gauge
cellar_passive_sync_lag_segments{server="pg3"} 3
cellar_passive_sync_lag_segments{server="pg4"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "cellar_passive_sync_lag_seconds", "cellar_passive_sync_lag_segments"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for srv, want := range map[string]float64{"pg3": 0, "pg4": 2, "pg5": 0} {
		if got := gaugeValue(t, reg, "cellar_check_status", map[string]string{"server": srv, "check": "ssh"}); got != want {
			t.Errorf("%s ssh status = %v, want %v", srv, got, want)
		}
	}
	// A passive server never reports PostgreSQL checks.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cellar_check_status" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var check string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "check" {
					check = lp.GetValue()
				}
			}
			if p, _ := checks.Default().Probe(check); p.Group == "postgres" || p.Group == "wal_streaming" {
				t.Errorf("passive server reports %s", check)
			}
		}
	}
}

// gaugeValue is the value of the first series of name matching labels.
func gaugeValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestCollectorScrapeTimeout(t *testing.T) {
	t.Parallel()
	hang := checks.Probe{Name: "hang", Key: "hang", Critical: true, Run: func(ctx context.Context, _ checks.Target) checks.Result {
		<-ctx.Done()
		return checks.Pass("")
	}}
	reg, err := checks.NewRegistry(hang)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCollector(reg, fixture(t), Options{ScrapeTimeout: 20 * time.Millisecond})
	want := `
# HELP cellar_up 1 if every check of the server could be evaluated (none unknown: no timeout, catalog readable), else 0.
# TYPE cellar_up gauge
cellar_up{server="pg1"} 0
cellar_up{server="pg2"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "cellar_up"); err != nil {
		t.Error(err)
	}
}

func TestJobMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewJobMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var o Observer = m
	o.JobStarted("pg1", "backup")
	o.JobFinished("pg1", "backup", 3*time.Second, nil)
	o.JobFinished("pg1", "backup", time.Second, io.EOF)
	if got := testutil.ToFloat64(m.failures.WithLabelValues("pg1", "backup")); got != 1 {
		t.Errorf("failures = %v", got)
	}
	if got := testutil.ToFloat64(m.runs.WithLabelValues("pg1", "backup")); got != 2 {
		t.Errorf("runs = %v", got)
	}
	if got := testutil.ToFloat64(m.lastSuccess.WithLabelValues("pg1", "backup")); got <= 0 {
		t.Errorf("last success = %v", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	m.Forget("pg1")
	if n := testutil.CollectAndCount(m.runs); n != 0 {
		t.Errorf("%d series left after Forget", n)
	}
}

// scrape serves the whole stack over HTTP, as Prometheus sees it.
func scrape(t *testing.T) []byte {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	targets := append(fixture(t), passiveFake(t, "pg3", checks.PassiveStatus{LagKnown: true, LagSeconds: 12.5, LagSegments: 2}))
	reg.MustRegister(NewCollector(checks.Default(), targets, Options{}))
	if _, err := NewJobMetrics(reg); err != nil {
		t.Fatal(err)
	}
	self := prometheus.NewRegistry()
	h, err := NewHandler(prometheus.Gatherers{reg, self}, self, HTTPOptions{Version: "test", Revision: "abc123"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	landing, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(landing.Body)
	landing.Body.Close()
	if !bytes.Contains(page, []byte("/metrics")) {
		t.Errorf("landing page does not link /metrics")
	}
	return body
}

func TestPromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install the Debian package `prometheus` (apt-get install -y --no-install-recommends prometheus); .ci/run must provide it")
	}
	body := scrape(t)
	for _, want := range []string{"cellar_check_status{", "cellar_server_info{", "cellar_scrape_duration_seconds ",
		`cellar_passive_sync_lag_seconds{server="pg3"} 12.5`, `cellar_passive_sync_lag_segments{server="pg3"} 2`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestServe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	h := http.NewServeMux()
	h.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, h, HTTPOptions{ListenAddresses: []string{"127.0.0.1:0"}}) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(bad, []byte("tls_server_config: {cert_file: /nonexistent}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Serve(t.Context(), h, HTTPOptions{ListenAddresses: []string{"127.0.0.1:0"}, WebConfigFile: bad}); err == nil {
		t.Error("bad web config accepted")
	}
}

// slowFake is a fakeTarget whose PostgreSQL answers only when released,
// and which counts SaveState calls (as checktarget.Target persists its
// caches after each evaluation).
type slowFake struct {
	*fakeTarget
	release chan struct{}
	saves   atomic.Int32
}

func (s *slowFake) PostgresStatus(ctx context.Context) (*checks.PGStatus, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return nil, io.ErrUnexpectedEOF
}

func (s *slowFake) SaveState() error { s.saves.Add(1); return nil }

// TestCollectorServesWhileRefreshing: once a server was evaluated, a
// scrape does not wait for PostgreSQL; stale probes are re-run in the
// background and their age is exported.
func TestCollectorServesWhileRefreshing(t *testing.T) {
	t.Parallel()
	sf := &slowFake{fakeTarget: newFake(t, "pg1"), release: make(chan struct{})}
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	c := NewCollector(checks.Default(), TargetList{sf}, Options{ScrapeTimeout: 30 * time.Second,
		MinProbeInterval: time.Minute, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	// First scrape: nothing evaluated yet, so it waits for PostgreSQL.
	first := make(chan error, 1)
	go func() { _, err := reg.Gather(); first <- err }()
	select {
	case <-first:
		t.Fatal("first scrape returned before the first evaluation finished")
	case <-time.After(50 * time.Millisecond):
	}
	sf.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, reg, "cellar_check_status", map[string]string{"server": "pg1", "check": "postgresql"}); got != 2 {
		t.Fatalf("postgresql status = %v, want 2", got)
	}
	before := gaugeValue(t, reg, "cellar_check_oldest_result_timestamp_seconds", map[string]string{"server": "pg1"})
	if before <= 0 {
		t.Fatalf("oldest result timestamp = %v", before)
	}

	// Stale: scrapes return at once although PostgreSQL does not answer.
	clock.Add(int64(2 * time.Minute))
	for range 3 {
		done := make(chan error, 1)
		go func() { _, err := reg.Gather(); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a scrape waited for the background refresh")
		}
	}
	close(sf.release)
	deadline := time.Now().Add(10 * time.Second)
	for gaugeValue(t, reg, "cellar_check_oldest_result_timestamp_seconds", map[string]string{"server": "pg1"}) <= before {
		if time.Now().After(deadline) {
			t.Fatal("the background refresh never replaced the stale results")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for sf.saves.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("SaveState called %d times, want after each of the 2 evaluations", sf.saves.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// /metrics carries cellar_build_info with the handler's version and
// revision and the Go version of this binary.
func TestBuildInfo(t *testing.T) {
	t.Parallel()
	body := string(scrape(t))
	want := fmt.Sprintf(`cellar_build_info{goversion=%q,revision="abc123",version="test"} 1`, runtime.Version())
	if !strings.Contains(body, want+"\n") {
		t.Errorf("/metrics lacks %s", want)
	}
}
