package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// healthyCatalog makes every probe of server "pg" pass on an archiving
// cluster: the catalog directories exist, one WAL is in xlog.db (so "WAL
// archive" passes) and one DONE backup ended age ago. It returns the
// catalog, so a test can age the backup by saving it again.
func healthyCatalog(t *testing.T, home string, age time.Duration) (*catalog.Catalog, *catalog.BackupInfo) {
	t.Helper()
	l := catalog.NewLayout("pg", filepath.Join(home, "pg"), home)
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	wal := catalog.WALInfo{Name: "000000010000000000000001", Size: 16 << 20, Time: float64(now.Unix())}
	if err := catalog.OpenXLogDB(l).Append(t.Context(), wal); err != nil {
		t.Fatal(err)
	}
	cat := catalog.Open(l)
	b := catalog.NewBackupInfo("20240101T000000")
	b.Status = catalog.StatusDone
	b.Size = catalog.Int64(4 << 20)
	b.Timeline = 1
	b.BeginWAL, b.EndWAL = wal.Name, wal.Name
	setBackupAge(t, cat, b, age)
	return cat, b
}

// setBackupAge rewrites the backup.info with an end_time age ago, the way
// an old backup looks to the "backup maximum age" probe.
func setBackupAge(t *testing.T, cat *catalog.Catalog, b *catalog.BackupInfo, age time.Duration) {
	t.Helper()
	b.EndTime = time.Now().Add(-age).Truncate(time.Second)
	b.BeginTime = b.EndTime.Add(-time.Minute)
	if err := cat.Save(b); err != nil {
		t.Fatal(err)
	}
}

// perfItem matches one perfdata item 'label'=value[UOM][;warn[;crit[;min[;max]]]].
var perfItem = regexp.MustCompile(`^'([^'=]+)'=(-?[0-9]+(?:\.[0-9]+)?)(s|B|%|c)?((?:;[^; ]*){0,4})$`)

// perfOf returns label → (value, uom, ";warn;crit;min;max") of a Nagios
// status line's perfdata, failing on any item that breaks the grammar.
func perfOf(t *testing.T, line string) map[string][3]string {
	t.Helper()
	_, perf, ok := strings.Cut(line, " | ")
	if !ok {
		t.Fatalf("no perfdata in %q", line)
	}
	out := map[string][3]string{}
	for _, item := range strings.Fields(perf) {
		m := perfItem.FindStringSubmatch(item)
		if m == nil {
			t.Fatalf("perfdata item %q breaks the plugin grammar (line %q)", item, line)
		}
		out[m[1]] = [3]string{m[2], m[3], m[4]}
	}
	return out
}

func TestCheckNagiosThresholdsFollowBackupAge(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	cfg, home := pgConfig(t, c, "    last_backup_maximum_age: 1 day\n")
	cat, b := healthyCatalog(t, home, 10*time.Minute)
	thresholds := []string{"--warning", "backup_age=3600", "--critical", "backup_age=~:21600"}

	// Without thresholds and with a fresh backup every probe passes: the
	// precondition that makes the flips below about the thresholds alone.
	out, _, code := runCLI(t, "-c", cfg, "check", "pg")
	if code != 0 {
		t.Fatalf("console check of a healthy server: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		age   time.Duration
		state string
		code  int
	}{
		{10 * time.Minute, "OK", 0},
		{2 * time.Hour, "WARNING", 1},
		{12 * time.Hour, "CRITICAL", 2},
		// Back to a fresh backup: the state follows the catalog, not history.
		{time.Minute, "OK", 0},
	} {
		setBackupAge(t, cat, b, tc.age)
		out, errOut, code := runCLI(t, append(append([]string{"-c", cfg, "check", "--nagios"}, thresholds...), "pg")...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		prefix := "CELLAR " + tc.state + " - "
		if code != tc.code || !strings.HasPrefix(lines[0], prefix) || errOut != "" {
			t.Fatalf("age %v: exit %d (want %d), stderr %q\n%s", tc.age, code, tc.code, errOut, out)
		}
		perf := perfOf(t, lines[0])
		p, ok := perf["pg_backup_age"]
		if !ok {
			t.Fatalf("age %v: no pg_backup_age perfdata in %q", tc.age, lines[0])
		}
		v, _ := strconv.ParseFloat(p[0], 64)
		if v < tc.age.Seconds() || v > tc.age.Seconds()+120 || p[1] != "s" {
			t.Fatalf("age %v: pg_backup_age = %s%s, want about %v in seconds", tc.age, p[0], p[1], tc.age.Seconds())
		}
		// The thresholds given replace the probe's own range in perfdata.
		if p[2] != ";3600;~:21600;0" {
			t.Fatalf("age %v: pg_backup_age thresholds %q, want ;3600;~:21600;0", tc.age, p[2])
		}
		if size := perf["pg_backup_size"]; size != [3]string{"4194304", "B", ";;;0"} {
			t.Fatalf("age %v: pg_backup_size %v, want 4194304B (base units)", tc.age, size)
		}
		long := lines[1:]
		if tc.code == 0 {
			if len(long) != 0 || lines[0][len(prefix):] != "pg OK | "+strings.SplitN(lines[0], " | ", 2)[1] {
				t.Fatalf("age %v: OK output has long output or a bad summary:\n%s", tc.age, out)
			}
			continue
		}
		want := fmt.Sprintf("pg.backup maximum age: %s (interval provided: 1 day, latest backup age: ", tc.state)
		if len(long) != 1 || !strings.HasPrefix(long[0], want) ||
			!strings.HasPrefix(lines[0], prefix+"1 of 1 servers have issues: pg (backup maximum age) | ") {
			t.Fatalf("age %v: want one long line %q...:\n%s", tc.age, want, out)
		}
	}
}

// deadConninfo returns a conninfo for a TCP port nothing listens on.
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

func TestCheckAllWithOneServerDown(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	home := t.TempDir()
	healthyCatalog(t, home, 10*time.Minute)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	doc := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n  down:\n    conninfo: %q\n",
		home, c.ConnString(), deadConninfo(t))
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runCLI(t, "-c", cfg, "check", "--nagios", "all")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 2 || errOut != "" || !strings.HasPrefix(lines[0], "CELLAR CRITICAL - 1 of 2 servers have issues: down (") {
		t.Fatalf("check --nagios all: exit %d stderr %q\n%s", code, errOut, out)
	}
	perfOf(t, lines[0]) // grammar of every item
	sawPG := false
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "down.") {
			t.Errorf("long output line of a healthy server or without a server prefix: %q", l)
		}
		sawPG = sawPG || strings.HasPrefix(l, "down.PostgreSQL: CRITICAL")
	}
	if !sawPG {
		t.Fatalf("no long output line for down's PostgreSQL check:\n%s", out)
	}

	// The healthy server alone is still OK; the dead one alone CRITICAL.
	if out, _, code := runCLI(t, "-c", cfg, "check", "--nagios", "pg"); code != 0 || !strings.HasPrefix(out, "CELLAR OK - pg OK | ") {
		t.Fatalf("check --nagios pg: exit %d\n%s", code, out)
	}
	if out, _, code := runCLI(t, "-c", cfg, "check", "--nagios", "down"); code != 2 || !strings.HasPrefix(out, "CELLAR CRITICAL - 1 of 1 servers have issues: down (") {
		t.Fatalf("check --nagios down: exit %d\n%s", code, out)
	}
	// Console mode uses the command exit codes: 1 when a check failed.
	out, _, code = runCLI(t, "-c", cfg, "check", "all")
	if code != 1 || !strings.Contains(out, "Server down:") || !strings.Contains(out, "Server pg:") || !strings.Contains(out, "\tPostgreSQL: FAILED") {
		t.Fatalf("console check all: exit %d\n%s", code, out)
	}
}

func TestCheckBadThresholdIsUsageError(t *testing.T) {
	t.Parallel()
	// No server is contacted: thresholds are validated before anything runs.
	cfg, _ := barmanCatalog(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--warning", "backup_age=20:10"}, `threshold "backup_age=20:10"`},
		{[]string{"--critical", "backup_age=abc"}, `"abc" is not a number`},
		{[]string{"--critical", "backup_age"}, "want LABEL=RANGE"},
		{[]string{"--warning", "=10"}, "want LABEL=RANGE"},
		{[]string{"--warning", "wal_age="}, "empty"},
	} {
		args := append(append([]string{"-c", cfg, "check"}, tc.args...), "pg1")
		out, errOut, code := runCLI(t, args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSuffix(errOut, "\n"), "\n") != 0 {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q (want one line containing %q)", tc.args, code, exitUsage, out, errOut, tc.want)
		}
	}
}
