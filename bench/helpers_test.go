//go:build bench

// Package bench holds the peer-comparison benchmarks run by `make bench`:
// Cellar against Barman, pgBackRest and PostgreSQL's own client tools on
// real PostgreSQL 15 clusters, measured in the same run and interleaved
// (A B A B ...) because the build machine is shared with noisy neighbours.
//
// The files are behind the `bench` build tag so that `go test ./...` never
// compiles them; run them with
//
//	go test -tags bench -run Peer -v -timeout 60m ./bench/
//
// Every comparison prints one line
//
//	name: cellar X s, peer Y s, ratio Z (target ≤ T) [cpu cellar A s, peer B s]
//
// with medians over CELLAR_BENCH_ROUNDS rounds (default 3). Tunables:
// CELLAR_BENCH_SEGMENTS (archive-wal, default 200), CELLAR_BENCH_STREAM_SECONDS
// and CELLAR_BENCH_STREAM_SCALE (receive-wal, defaults 60 and 100),
// CELLAR_BENCH_SCALE (backup, default 100),
// CELLAR_BENCH_BACKUPS / CELLAR_BENCH_XLOG_LINES (scrape catalog size).
package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cellarBin is the cellar binary built from this tree by TestMain.
var cellarBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cellar-bench-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	cellarBin = filepath.Join(dir, "cellar")
	build := exec.Command("go", "build", "-o", cellarBin, "./cmd/cellar")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: go build ./cmd/cellar: %v\n%s", err, out)
		os.Exit(2)
	}
	// The directory must be traversable by the barman/postgres users too.
	_ = os.Chmod(dir, 0o755)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// envInt reads a positive integer tunable.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// sample is one timed run of a tool.
type sample struct {
	wall time.Duration
	cpu  time.Duration // user+sys of the process and its waited-for children
}

// timeCmd runs cmd and measures wall time and the CPU time reported by
// wait4 for it (which includes the children it waited for).
func timeCmd(t testing.TB, cmd *exec.Cmd) (sample, string) {
	t.Helper()
	var out bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &out
	}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, tail(out.String(), 3000))
	}
	return sample{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, out.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func medianDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func walls(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.wall
	}
	return out
}

func cpus(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.cpu
	}
	return out
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

func list(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = secs(d)
	}
	return strings.Join(parts, "/")
}

// compare prints the standard comparison line for medians of the rounds
// and returns the wall ratio. A missed target is reported, not failed:
// the numbers are noisy and the closing notes need every figure.
func compare(t testing.TB, name string, cellar, peer []sample, target float64) float64 {
	t.Helper()
	cw, pw := medianDur(walls(cellar)), medianDur(walls(peer))
	cc, pc := medianDur(cpus(cellar)), medianDur(cpus(peer))
	ratio := cw.Seconds() / pw.Seconds()
	verdict := "MET"
	if ratio > target {
		verdict = "MISSED"
	}
	line := fmt.Sprintf("%s: cellar %s s, peer %s s, ratio %.3f (target ≤ %g) %s [cpu user+sys: cellar %s s, peer %s s, cpu ratio %.3f; runs cellar %s, peer %s]",
		name, secs(cw), secs(pw), ratio, target, verdict, secs(cc), secs(pc), cc.Seconds()/pc.Seconds(), list(walls(cellar)), list(walls(peer)))
	emit(t, line)
	return ratio
}

// emit prints a result line to stdout (visible with and without -v) and
// appends it to $CELLAR_BENCH_LOG when set.
func emit(t testing.TB, line string) {
	t.Helper()
	fmt.Println("BENCH " + line)
	if p := os.Getenv("CELLAR_BENCH_LOG"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err == nil {
			_, _ = fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
			_ = f.Close()
		}
	}
}

// osUser resolves an OS user for running a peer tool (barman, postgres).
func osUser(t testing.TB, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("OS user %q not found (%v): install the peer with `apt-get install -y barman barman-cli pgbackrest postgresql-15`", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// asUser makes cmd run as uid/gid with a minimal environment.
func asUser(cmd *exec.Cmd, uid, gid int, home string) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "TZ=UTC", "HOME=" + home}
	cmd.Dir = home
	return cmd
}

// needBinary fails (never skips) when a peer tool is missing.
func needBinary(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("%s not found (%v): install it with `apt-get install -y %s`", path, err, pkg)
	}
}

// chownTree gives a directory tree to uid/gid.
func chownTree(t testing.TB, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatalf("chown %s: %v", root, err)
	}
}

// benchDir makes a scratch directory under os.TempDir() that the postgres
// and barman users can traverse, removed at cleanup.
func benchDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// cpuBusy returns the machine's busy CPU time so far (from /proc/stat),
// which also sees neighbours that share the VM.
func cpuBusy() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal
	var busy int64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 {
			break
		}
		n, _ := strconv.ParseInt(f, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

// waitQuiet waits (at most 5 s) for a 1 s window in which the machine was
// nearly idle, so a timed run does not start in the middle of a
// neighbour's burst. It reports how busy the machine was.
func waitQuiet(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := cpuBusy()
		time.Sleep(time.Second)
		used := cpuBusy() - before
		if used < 200*time.Millisecond || time.Now().After(deadline) {
			if used >= 200*time.Millisecond {
				t.Logf("machine not quiet (%.2f CPU-s used in 1 s); running anyway", used.Seconds())
			}
			return
		}
	}
}

// syncFS flushes dirty pages so one run's writeback does not land in the
// next run's timing.
func syncFS() { syscall.Sync() }

// cellarHas reports whether the built cellar binary has a subcommand.
func cellarHas(name string) bool {
	out, err := exec.Command(cellarBin, "--help").CombinedOutput()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// procCPU reads user+sys CPU of a live process from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// after ")": state(0) ppid(1) ... utime is field 14 overall → index 11 here.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100
}

// procRSS returns VmRSS and VmHWM (peak) of a live process in bytes.
func procRSS(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n * 1024
		case "VmHWM:":
			hwm = n * 1024
		}
	}
	return rss, hwm
}

// copyFile copies src to dst (untimed staging of inputs).
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, in, perm)
}

// writeFile writes a small config file or fails the test.
func writeFile(t testing.TB, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}
