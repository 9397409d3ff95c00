//go:build e2e

package alerts_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// nagiosBin is where Debian's nagios4-core package installs the daemon.
const nagiosBin = "/usr/sbin/nagios4"

// TestNagiosE2E runs `cellar check --nagios` from a real Nagios 4 service
// check and compares what Nagios recorded in status.dat (state, plugin
// output, long output, perfdata) with a direct run of the same command: the
// proof that Nagios reads Cellar's plugin output the way Cellar means it.
func TestNagiosE2E(t *testing.T) {
	if _, err := os.Stat(nagiosBin); err != nil {
		t.Fatalf("Nagios 4 is required for this test: %v (install it with `apt-get install -y --no-install-recommends nagios4-core`)", err)
	}
	nagios, err := user.Lookup("nagios")
	if err != nil {
		t.Fatalf("the nagios OS user is required (created by the nagios4-core package): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("run this test as root: Nagios is started as root and drops to the nagios user")
	}
	uid, _ := strconv.Atoi(nagios.Uid)
	gid, _ := strconv.Atoi(nagios.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}

	// One directory for everything Nagios and the plugin touch, owned by
	// nagios at the end (t.TempDir's parents are root 0700).
	dir, err := os.MkdirTemp("", "cellar-nagios-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(dir, "cellar")
	build := exec.Command("go", "build", "-o", bin, "./cmd/cellar")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cellar: %v\n%s", err, out)
	}

	// A real archiving cluster: PostgreSQL copies each WAL into the
	// catalog's incoming/ (world-writable, as with a shared barman user),
	// `cellar archive-wal` files it into wals/ and xlog.db, `cellar
	// backup` takes a real base backup. Then every probe of pg passes.
	home := filepath.Join(dir, "home")
	incoming := filepath.Join(home, "pg", "incoming")
	if err := os.MkdirAll(incoming, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(incoming, 0o1777); err != nil {
		t.Fatal(err)
	}
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: fmt.Sprintf("install -m 0644 %%p %s/%%f", incoming)})
	cfg := filepath.Join(dir, "config.yaml")
	doc := fmt.Sprintf(`global:
  barman_home: %s
servers:
  pg:
    description: "archiving PostgreSQL"
    conninfo: %q
    streaming_conninfo: %q
    last_backup_maximum_age: 1 day
  down:
    description: "nothing listens here"
    conninfo: %q
`, home, c.TCPConnString(), c.TCPConnString(), deadConninfo(t))
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cellar := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"-c", cfg}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("cellar %v: %v", args, err)
		}
		return out.String(), cmd.ProcessState.ExitCode()
	}
	if out, code := cellar("backup", "--immediate-checkpoint", "pg"); code != 0 {
		t.Fatalf("cellar backup pg: exit %d\n%s", code, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cellar("switch-wal", "--force", "pg")
		cellar("archive-wal", "pg")
		out, code := cellar("check", "pg")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg never became healthy (archiving + backup):\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	chownTree(t, dir, uid, gid)

	// Direct runs, as the nagios user like Nagios' own, are the reference.
	services := []struct {
		name, arg string
		want      int
	}{
		{"cellar-pg", "pg", 0},
		{"cellar-pg-warn", "--warning backup_age=@0:86400 pg", 1}, // alert inside 0..1 day: the fresh backup is
		{"cellar-down", "down", 2},
		{"cellar-all", "all", 2},
	}
	direct := map[string]pluginRun{}
	for _, s := range services {
		cmd := exec.Command(bin, append([]string{"-c", cfg, "check", "--nagios"}, strings.Fields(s.arg)...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("direct run of %s: %v", s.name, err)
		}
		r := parsePlugin(string(out), cmd.ProcessState.ExitCode())
		if r.code != s.want {
			t.Fatalf("direct run of %s (check --nagios %s): exit %d, want %d\n%s", s.name, s.arg, r.code, s.want, out)
		}
		direct[s.name] = r
	}

	writeNagiosConfig(t, dir, bin, cfg, services)
	chownTree(t, dir, uid, gid)
	if out, err := exec.Command(nagiosBin, "-v", filepath.Join(dir, "nagios.cfg")).CombinedOutput(); err != nil {
		t.Fatalf("nagios4 -v rejected the test configuration: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	daemon := exec.Command(nagiosBin, filepath.Join(dir, "nagios.cfg"))
	var daemonOut bytes.Buffer
	daemon.Stdout, daemon.Stderr = &daemonOut, &daemonOut
	if err := daemon.Start(); err != nil {
		t.Fatalf("start nagios4: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	defer func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = daemon.Process.Kill()
			<-exited
		}
	}()

	statusFile := filepath.Join(dir, "status.dat")
	var status map[string]map[string]string
	for {
		select {
		case err := <-exited:
			t.Fatalf("nagios4 exited early: %v\n%s\n%s", err, daemonOut.String(), readFile(filepath.Join(dir, "nagios.log")))
		case <-ctx.Done():
			t.Fatalf("Nagios did not check every service within the deadline; status.dat:\n%s\nnagios.log:\n%s",
				readFile(statusFile), readFile(filepath.Join(dir, "nagios.log")))
		case <-time.After(500 * time.Millisecond):
		}
		status = readStatus(statusFile)
		done := 0
		for _, s := range services {
			if st, ok := status[s.name]; ok && st["has_been_checked"] == "1" {
				done++
			}
		}
		if done == len(services) {
			break
		}
	}

	for _, s := range services {
		st, ref := status[s.name], direct[s.name]
		t.Logf("%s: state %s, output %q, perfdata %q, long %q", s.name, st["current_state"], st["plugin_output"], st["performance_data"], st["long_plugin_output"])
		if st["current_state"] != strconv.Itoa(ref.code) {
			t.Errorf("%s: Nagios current_state %s, direct exit code %d", s.name, st["current_state"], ref.code)
		}
		if st["plugin_output"] != ref.text {
			t.Errorf("%s: Nagios plugin_output %q, direct first line %q", s.name, st["plugin_output"], ref.text)
		}
		if !strings.HasPrefix(st["plugin_output"], "CELLAR "+[]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}[ref.code]+" - ") {
			t.Errorf("%s: plugin_output %q does not start with the state of exit code %d", s.name, st["plugin_output"], ref.code)
		}
		gotPerf, err := perfLabels(st["performance_data"])
		if err != nil {
			t.Errorf("%s: Nagios performance_data: %v", s.name, err)
		}
		wantPerf, err := perfLabels(ref.perf)
		if err != nil {
			t.Errorf("%s: direct perfdata: %v", s.name, err)
		}
		if fmt.Sprint(gotPerf) != fmt.Sprint(wantPerf) || len(gotPerf) == 0 {
			t.Errorf("%s: perfdata labels/units in Nagios %v, direct %v", s.name, gotPerf, wantPerf)
		}
		var long []string
		if st["long_plugin_output"] != "" {
			long = strings.Split(st["long_plugin_output"], "\n")
		}
		// Digits are masked: ages in hints move on between the two runs.
		if maskDigits(strings.Join(long, "\n")) != maskDigits(strings.Join(ref.long, "\n")) {
			t.Errorf("%s: Nagios long_plugin_output %q, direct %q", s.name, long, ref.long)
		}
		if failing := failingChecks(ref.text); len(long) != failing {
			t.Errorf("%s: %d long output lines for %d failing checks named in %q", s.name, len(long), failing, ref.text)
		}
	}
	if len(status["cellar-pg"]) > 0 && !strings.Contains(status["cellar-pg"]["performance_data"], "'pg_backup_age'=") {
		t.Errorf("cellar-pg perfdata lacks pg_backup_age: %q", status["cellar-pg"]["performance_data"])
	}
}

type pluginRun struct {
	code       int
	text, perf string
	long       []string
}

// parsePlugin splits plugin stdout the way Nagios does: first line text |
// perfdata, then long output lines.
func parsePlugin(out string, code int) pluginRun {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	text, perf, _ := strings.Cut(lines[0], "|")
	return pluginRun{code: code, text: strings.TrimSpace(text), perf: strings.TrimSpace(perf), long: lines[1:]}
}

// failingChecks counts the checks named in a status line, "... : srv (a,
// b); srv2 (c)": one long output line is expected per failure.
func failingChecks(text string) int {
	n := 0
	for _, m := range regexp.MustCompile(`\(([^)]*)\)`).FindAllStringSubmatch(text, -1) {
		n += len(strings.Split(m[1], ", "))
	}
	return n
}

var digits = regexp.MustCompile(`[0-9]+`)

func maskDigits(s string) string { return digits.ReplaceAllString(s, "N") }

// baseUnit is the unit each perfdata label must use: seconds and bytes,
// never ms/KB/MB; counts have none.
var baseUnit = map[string]string{
	"backup_age": "s", "wal_age": "s", "backup_size": "B", "wals": "B", "receive_wal_lag": "B",
	"failed_backups": "", "redundancy": "", "archiver_errors": "",
	"incoming_wals_queue_files": "", "streaming_wals_queue_files": "",
}

var perfRE = regexp.MustCompile(`^'([^'=]+)'=(-?[0-9]+(?:\.[0-9]+)?)([a-zA-Z%]*)((?:;[^; ]*){0,4})$`)

// perfLabels parses perfdata into "label[uom]" items, checking the plugin
// grammar and that every value is in its label's base unit.
func perfLabels(perf string) ([]string, error) {
	var out []string
	for _, item := range strings.Fields(perf) {
		m := perfRE.FindStringSubmatch(item)
		if m == nil {
			return out, fmt.Errorf("item %q breaks 'label'=value[UOM];warn;crit;min;max", item)
		}
		srv, label, ok := strings.Cut(m[1], "_")
		unit, known := baseUnit[label]
		if !ok || srv == "" || !known {
			return out, fmt.Errorf("item %q: label is not SERVER_KNOWNLABEL", item)
		}
		if m[3] != unit {
			return out, fmt.Errorf("item %q: unit %q, want base unit %q", item, m[3], unit)
		}
		out = append(out, m[1]+"["+m[3]+"]")
	}
	return out, nil
}

// readStatus parses Nagios' status.dat servicestatus blocks by
// service_description, unescaping long_plugin_output's "\n".
func readStatus(path string) map[string]map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "servicestatus {":
			cur = map[string]string{}
		case line == "}":
			if cur != nil {
				out[cur["service_description"]] = cur
			}
			cur = nil
		case cur != nil:
			k, v, _ := strings.Cut(line, "=")
			if k == "long_plugin_output" {
				v = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(v)
			}
			cur[k] = v
		}
	}
	return out
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatalf("chown %s to nagios: %v", root, err)
	}
}

func deadConninfo(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=2", port)
}

// writeNagiosConfig writes a private, headless Nagios 4 configuration:
// interval_length=1 so intervals are seconds, every service checked at
// start (no inter-check delay) and again every 2 s, no notifications, no
// external commands, status.dat rewritten every second. Nagios rejects
// one-line object definitions, so every directive has its own line.
func writeNagiosConfig(t *testing.T, dir, bin, cfg string, services []struct {
	name, arg string
	want      int
},
) {
	t.Helper()
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := os.MkdirAll(p("checkresults"), 0o700); err != nil {
		t.Fatal(err)
	}
	mainCfg := strings.Join([]string{
		"log_file=" + p("nagios.log"),
		"cfg_file=" + p("objects.cfg"),
		"object_cache_file=" + p("objects.cache"),
		"precached_object_file=" + p("objects.precache"),
		"status_file=" + p("status.dat"),
		"status_update_interval=1",
		"check_result_path=" + p("checkresults"),
		"check_result_reaper_frequency=1",
		"lock_file=" + p("nagios.lock"),
		"temp_file=" + p("nagios.tmp"),
		"temp_path=" + dir,
		"query_socket=" + p("nagios.qh"),
		"command_file=" + p("nagios.cmd"),
		"state_retention_file=" + p("retention.dat"),
		"retain_state_information=0",
		"use_retained_program_state=0",
		"use_retained_scheduling_info=0",
		"nagios_user=nagios",
		"nagios_group=nagios",
		"interval_length=1",
		"check_external_commands=0",
		"enable_notifications=0",
		"enable_flap_detection=0",
		"execute_service_checks=1",
		"execute_host_checks=0",
		"service_inter_check_delay_method=n",
		"host_inter_check_delay_method=n",
		"service_check_timeout=30",
		"use_syslog=0",
		"log_rotation_method=n",
		"event_broker_options=0",
		"debug_level=0",
		"",
	}, "\n")
	obj := []string{
		"define timeperiod {",
		"    timeperiod_name 24x7",
		"    alias 24x7",
	}
	for _, d := range []string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"} {
		obj = append(obj, "    "+d+" 00:00-24:00")
	}
	obj = append(obj, "}",
		"define contact {",
		"    contact_name nobody",
		"    host_notifications_enabled 0",
		"    service_notifications_enabled 0",
		"    host_notification_period 24x7",
		"    service_notification_period 24x7",
		"    host_notification_options n",
		"    service_notification_options n",
		"    host_notification_commands check_cellar",
		"    service_notification_commands check_cellar",
		"}",
		"define command {",
		"    command_name check_cellar",
		fmt.Sprintf("    command_line %s -c %s check --nagios $ARG1$", bin, cfg),
		"}",
		"define host {",
		"    host_name cellar-e2e",
		"    address 127.0.0.1",
		"    max_check_attempts 1",
		"    check_period 24x7",
		"    active_checks_enabled 0",
		"    notification_period 24x7",
		"    contacts nobody",
		"}",
	)
	for _, s := range services {
		obj = append(obj,
			"define service {",
			"    host_name cellar-e2e",
			"    service_description "+s.name,
			"    check_command check_cellar!"+s.arg,
			"    max_check_attempts 1",
			"    check_interval 2",
			"    retry_interval 1",
			"    check_period 24x7",
			"    notification_period 24x7",
			"    notifications_enabled 0",
			"    contacts nobody",
			"}",
		)
	}
	if err := os.WriteFile(p("nagios.cfg"), []byte(mainCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("objects.cfg"), []byte(strings.Join(obj, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
