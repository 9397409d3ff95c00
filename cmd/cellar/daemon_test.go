package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/jobs"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// daemonScenario sizes the acceptance run of issue 8: how long pgbench
// writes while the daemon works, and how often it takes backups.
type daemonScenario struct {
	workload time.Duration // pgbench -T
	schedule string        // backup_schedule
	every    time.Duration // the schedule's period, for deadlines
}

// TestDaemonAcceptance is the short form of the issue 8 acceptance test
// (the 2-minute form is TestDaemonAcceptanceE2E, build tag e2e).
func TestDaemonAcceptance(t *testing.T) {
	t.Parallel()
	testDaemonAcceptance(t, daemonScenario{workload: 22 * time.Second, schedule: "@every 8s", every: 8 * time.Second})
}

// daemonProc is `cellar daemon` running as the postgres user.
type daemonProc struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// asPostgres makes cmd run as the postgres OS user, which owns the catalog
// (PostgreSQL's archive_command writes into it as postgres too).
func asPostgres(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Env = append(os.Environ(), "HOME="+u.HomeDir, "USER=postgres")
}

func runAsPostgresBin(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	asPostgres(t, cmd)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return o.String(), e.String(), code
}

func testDaemonAcceptance(t *testing.T, sc daemonScenario) {
	if err := jobs.ValidateSchedule(sc.schedule, nil); err != nil {
		t.Fatalf("backup_schedule %q rejected: %v", sc.schedule, err)
	}
	root := pgtest.MkdirForPostgres(t)
	bin := buildCellar(t, root)
	home := filepath.Join(root, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(root, "config.yaml")
	port := freeTCPPort(t)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: fmt.Sprintf("%s -c %s -q wal-archive pg %%p", bin, cfgFile)})

	writeConfig := func(bwlimit int) {
		t.Helper()
		text := fmt.Sprintf(`global:
  barman_home: %s
  web:
    listen_address: 127.0.0.1:%d
  daemon:
    archive_interval: 1s
    check_backup_interval: 2s
    retention_interval: 3s
servers:
  pg:
    description: "daemon acceptance"
    conninfo: %q
    streaming_conninfo: %q
    backup_method: postgres
    archiver: true
    streaming_archiver: true
    slot_name: cellar_accept
    create_slot: auto
    immediate_checkpoint: true
    backup_schedule: %q
    retention_policy: REDUNDANCY 2
    wal_retention_policy: main
    bandwidth_limit: %d
`, home, port, c.ConnString(), c.ConnString(), sc.schedule, bwlimit)
		// Replace atomically: the daemon may re-read it at any time.
		tmp := cfgFile + ".new"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		chownTree(t, tmp)
		if err := os.Rename(tmp, cfgFile); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(0)
	chownTree(t, root)

	cfg, err := config.Load(config.LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.Open(s.Layout())

	d := &daemonProc{log: &lockedBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(bin, "-c", cfgFile, "daemon")
	asPostgres(t, d.cmd)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(d.log.String(), 80))
		}
	})

	// Every backup id the daemon ever creates, seen by polling the catalog.
	seen := map[string]bool{}
	var seenMu sync.Mutex
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			bs, _ := cat.Backups()
			seenMu.Lock()
			for _, b := range bs {
				seen[b.ID] = true
			}
			seenMu.Unlock()
			select {
			case <-stopWatch:
				return
			case <-tick.C:
			}
		}
	}()

	// Wait until the daemon serves /metrics (it has set up the catalog),
	// and PostgreSQL's archive_command works, before writing WAL: a WAL
	// archived late, after the deletion that would have pruned it, stays
	// (as in Barman, pruning happens at deletion time).
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	scrape(t, metricsURL)
	c.WaitArchived(t, c.SwitchWAL(t))

	start := time.Now()
	c.Pgbench(t, "-i", "-s", "2", "-q")
	c.Pgbench(t, "-c", "2", "-T", strconv.Itoa(int(sc.workload.Seconds())), "-n")
	t.Logf("pgbench done after %v", time.Since(start).Round(time.Millisecond))

	byStatus := func() (map[catalog.Status][]*catalog.BackupInfo, error) {
		bs, err := cat.Backups()
		m := map[catalog.Status][]*catalog.BackupInfo{}
		for _, b := range bs {
			m[b.Status] = append(m[b.Status], b)
		}
		return m, err
	}
	// waitQuiescent waits for a point where retention has run after the
	// newest backup became DONE: exactly two DONE, nothing waiting for WAL,
	// nothing FAILED, and no backup running but inFlight (if not "").
	waitQuiescent := func(inFlight string) []*catalog.BackupInfo {
		t.Helper()
		deadline := time.Now().Add(3*sc.every + 20*time.Second)
		for {
			m, err := byStatus()
			seenMu.Lock()
			nSeen := len(seen)
			seenMu.Unlock()
			started := m[catalog.StatusStarted]
			running := len(started) == 0 || (len(started) == 1 && started[0].ID == inFlight)
			if err == nil && nSeen >= 3 && len(m[catalog.StatusDone]) == 2 && running && len(m[catalog.StatusWaitingForWALs]) == 0 && len(m[catalog.StatusFailed]) == 0 {
				return m[catalog.StatusDone]
			}
			if time.Now().After(deadline) {
				t.Fatalf("no point with exactly 2 DONE backups and nothing else in flight (%d backups created); catalog: %v (%v)", nSeen, summarize(m), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	kept := waitQuiescent("")
	seenMu.Lock()
	t.Logf("quiescent after %v: %d backups created, kept %s and %s", time.Since(start).Round(time.Millisecond), len(seen), kept[0].ID, kept[1].ID)
	seenMu.Unlock()

	// Job telemetry of the running daemon.
	metrics := scrape(t, metricsURL)
	for _, job := range []string{"backup", "archive-wal", "check-backup", "retention"} {
		v, ok := metricValue(metrics, "cellar_job_last_success_timestamp_seconds", `job="`+job+`"`, `server="pg"`)
		if !ok || v < float64(start.Unix()) {
			t.Errorf("cellar_job_last_success_timestamp_seconds{job=%q} = %v (present %v), want a success during the run", job, v, ok)
		}
	}

	// SIGTERM mid-backup: throttle backups (SIGHUP reload with
	// bandwidth_limit) so that the next one is surely copying when the
	// signal lands.
	writeConfig(64)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.log.String(), "configuration reloaded") {
		if time.Now().After(deadline) {
			t.Fatal("daemon did not reload its configuration on SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := map[string]bool{}
	if bs, err := cat.Backups(); err == nil {
		for _, b := range bs {
			before[b.ID] = true
		}
	}
	var interrupted string
	deadline = time.Now().Add(2*sc.every + 20*time.Second)
	for interrupted == "" {
		bs, _ := cat.Backups()
		for _, b := range bs {
			if b.Status == catalog.StatusStarted && !before[b.ID] {
				interrupted = b.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no throttled backup started after SIGHUP: %v", bs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A backup that was running at the reload has finished by now (backups
	// never overlap); let check-backup and retention settle it.
	kept = waitQuiescent(interrupted)
	// Let the copy get going.
	for range 40 {
		if ents, _ := os.ReadDir(s.Layout().BackupDirPath(interrupted)); len(ents) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		exited = true
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon still running 30 s after SIGTERM")
	}
	close(stopWatch)
	<-watchDone
	t.Logf("daemon stopped after %v", time.Since(start).Round(time.Millisecond))

	// The catalog the daemon left behind.
	m, err := byStatus()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := cat.Get(interrupted); b == nil || b.Status != catalog.StatusFailed {
		t.Errorf("backup %s interrupted by SIGTERM: %+v, want FAILED", interrupted, b)
	}
	if len(m[catalog.StatusStarted]) != 0 || len(m[catalog.StatusWaitingForWALs]) != 0 {
		t.Errorf("backups left in flight after shutdown: %v", summarize(m))
	}
	done := m[catalog.StatusDone]
	if len(done) != 2 || done[0].ID != kept[0].ID || done[1].ID != kept[1].ID {
		t.Fatalf("DONE backups after shutdown: %v, want %s and %s", summarize(m), kept[0].ID, kept[1].ID)
	}
	if len(m[catalog.StatusFailed]) != 1 {
		t.Errorf("FAILED backups: %v, want only the interrupted one", summarize(m))
	}
	var strays []string
	for _, dir := range []string{s.Layout().BaseDir, s.Layout().WalsDir, s.Layout().MetaDir} {
		_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(e.Name(), ".") {
				strays = append(strays, p)
			}
			return nil
		})
	}
	if len(strays) > 0 {
		t.Errorf("temp files left behind: %v", strays)
	}

	// check-backup DONE on each kept backup (run as the catalog owner).
	for _, b := range done {
		out, errOut, code := runAsPostgresBin(t, bin, "-c", cfgFile, "check-backup", "pg", b.ID)
		if code != 0 {
			t.Errorf("check-backup %s: exit %d %s%s", b.ID, code, out, errOut)
		}
		if got, err := cat.Get(b.ID); err != nil || got.Status != catalog.StatusDone {
			t.Errorf("backup %s after check-backup: %v %v", b.ID, got, err)
		}
	}

	// No WAL missing from the oldest backup's begin_wal to the newest
	// archived segment; nothing older kept, in xlog.db or on disk.
	oldest := done[0]
	begin, err := wal.ParseName(oldest.BeginWAL)
	if err != nil {
		t.Fatal(err)
	}
	inDB := map[string]bool{}
	newest := begin
	var older []string
	if err := s.XLogDB().Scan(t.Context(), func(w catalog.WALInfo) error {
		n, err := wal.ParseName(w.Name)
		if err != nil || !n.IsSegment() || wal.IsPartialName(w.Name) {
			return nil
		}
		inDB[w.Name] = true
		if w.Name < oldest.BeginWAL {
			older = append(older, w.Name)
		}
		if wal.Compare(n, newest) > 0 {
			newest = n
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(older) > 0 {
		t.Errorf("xlog.db keeps %d segments older than the oldest backup's begin_wal %s: %v", len(older), oldest.BeginWAL, older)
	}
	need, err := wal.SegmentsBetween(begin, newest, s.SegmentSize())
	if err != nil {
		t.Fatal(err)
	}
	if len(need) < 3 {
		t.Errorf("only %d segments from %s to %s: the workload archived too little to test", len(need), begin, newest)
	}
	for _, n := range need {
		if !inDB[n.String()] {
			t.Errorf("segment %s (between %s and %s) missing from xlog.db", n, begin, newest)
			continue
		}
		if _, err := os.Stat(s.Layout().WALPath(n)); err != nil {
			t.Errorf("segment %s: %v", n, err)
		}
	}
	_ = filepath.WalkDir(s.Layout().WalsDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && wal.IsSegmentName(e.Name()) && e.Name() < oldest.BeginWAL {
			t.Errorf("pruned segment still on disk: %s", p)
		}
		return nil
	})
	t.Logf("%d segments archived from %s to %s; test body took %v", len(need), begin, newest, time.Since(start).Round(time.Millisecond))
}

func summarize(m map[catalog.Status][]*catalog.BackupInfo) map[catalog.Status][]string {
	out := map[catalog.Status][]string{}
	for st, bs := range m {
		for _, b := range bs {
			out[st] = append(out[st], b.ID)
		}
	}
	return out
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	var lastErr error
	for range 150 {
		resp, err := http.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			lastErr = fmt.Errorf("status %s, %v", resp.Status, rerr)
		} else {
			lastErr = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("scrape %s: %v", url, lastErr)
	return ""
}

// metricValue finds the first sample of name whose labels contain every
// one of want.
func metricValue(text, name string, want ...string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		match := true
		for _, w := range want {
			if !strings.Contains(labels, w) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		return v, err == nil
	}
	return 0, false
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
