package alerts

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/checks"
)

func res(srv, check string, st checks.Status, hint string, perf ...checks.Perf) checks.Result {
	return checks.Result{Server: srv, Check: check, Key: JSONKey(check), Status: st, Hint: hint, Perf: perf, Critical: true}
}

func TestConsole(t *testing.T) {
	t.Parallel()
	hidden := res("pg1", "WAL archive", checks.OK, "")
	hidden.FailureOnly = true
	inactive := res("old", "PostgreSQL", checks.Critical, "")
	inactive.Inactive = true
	var b bytes.Buffer
	code := Console(&b, []checks.Result{
		hidden,
		res("pg1", "PostgreSQL", checks.OK, ""),
		res("pg1", "backup maximum age", checks.Critical, "interval provided: 1 day, latest backup age: 2 days"),
		res("pg1", "wal size", checks.OK, "16.0 MiB"),
		inactive,
	})
	want := "Server pg1:\n" +
		"\tPostgreSQL: OK\n" +
		"\tbackup maximum age: FAILED (interval provided: 1 day, latest backup age: 2 days)\n" +
		"\twal size: OK (16.0 MiB)\n" +
		"Server old: (inactive)\n" +
		"\tPostgreSQL: FAILED\n"
	if b.String() != want || code != 1 {
		t.Errorf("code %d, output:\n%s\nwant:\n%s", code, b.String(), want)
	}
	b.Reset()
	if code := Console(&b, []checks.Result{inactive}); code != 0 {
		t.Errorf("inactive failure gave exit %d", code)
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	renamed := res("pg1", "no access to backup functions", checks.Critical, "privileges")
	var b bytes.Buffer
	code, err := JSON(&b, []checks.Result{res("pg1", "PostgreSQL", checks.OK, ""), renamed, res("pg1", "receive-wal running", checks.OK, "")})
	if err != nil || code != 1 {
		t.Fatalf("code %d err %v", code, err)
	}
	var doc map[string]map[string]map[string]string
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["pg1"]["postgresql"]["status"] != "OK" || doc["pg1"]["no_access_to_backup_functions"]["status"] != "FAILED" ||
		doc["pg1"]["receive_wal_running"]["hint"] != "" {
		t.Errorf("doc = %v", doc)
	}
	if got := JSONKey("pg_basebackup supports tablespaces mapping"); got != "pg_basebackup_supports_tablespaces_mapping" {
		t.Errorf("JSONKey = %q", got)
	}
}

// Grammar of the first line and of perfdata, per the plugin guidelines.
var (
	statusLineRe = regexp.MustCompile(`^CELLAR (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| (.+))?$`)
	perfItemRe   = regexp.MustCompile(`^'[^'=]+'=-?[0-9]+(\.[0-9]+)?(s|ms|us|%|B|KB|MB|TB|c)?(;[^;]*){0,4}$`)
	rangeRe      = regexp.MustCompile(`^@?((~|-?[0-9.]+):)?(-?[0-9.]+)?$`)
)

func checkGrammar(t *testing.T, out string) (state string, perf []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	m := statusLineRe.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("bad status line %q", lines[0])
	}
	if m[3] != "" {
		perf = strings.Split(m[3], " ")
		for _, p := range perf {
			if !perfItemRe.MatchString(p) {
				t.Errorf("bad perfdata item %q", p)
			}
			fields := strings.Split(p, ";")
			for _, f := range fields[1:min(len(fields), 3)] {
				if f != "" && !rangeRe.MatchString(f) {
					t.Errorf("bad range %q in %q", f, p)
				}
			}
		}
	}
	for _, l := range lines[1:] {
		if strings.Contains(l, "|") {
			t.Errorf("long output line has a pipe: %q", l)
		}
	}
	return m[1], perf
}

func TestNagios(t *testing.T) {
	t.Parallel()
	age := checks.Perf{Label: "backup_age", Value: 7200, UOM: "s", Crit: "86400", Min: checks.Float(0)}
	size := checks.Perf{Label: "backup_size", Value: 1.5e12, UOM: "B", Min: checks.Float(0)}
	inactive := res("old", "PostgreSQL", checks.Critical, "")
	inactive.Inactive = true
	timeout := res("pg2", "wal size", checks.Unknown, "check timed out after 30s")
	tests := []struct {
		name     string
		results  []checks.Result
		th       Thresholds
		code     int
		first    string
		long     []string
		perfSome string
	}{
		{
			name:    "all ok",
			results: []checks.Result{res("pg1", "backup maximum age", checks.OK, "x", age), res("pg1", "backup minimum size", checks.OK, "", size)},
			code:    0, first: "CELLAR OK - pg1 OK | 'pg1_backup_age'=7200s;;86400;0 'pg1_backup_size'=1500000000000B;;;0",
		},
		{
			name: "critical with hint",
			results: []checks.Result{
				res("pg1", "PostgreSQL", checks.OK, ""),
				res("pg2", "backup maximum age", checks.Critical, "interval provided: 1 hour, latest backup age: 2 hours", age),
				res("pg2", "archiver errors", checks.Critical, "duplicates: 1"),
			},
			code:  2,
			first: "CELLAR CRITICAL - 1 of 2 servers have issues: pg2 (backup maximum age, archiver errors) | 'pg2_backup_age'=7200s;;86400;0",
			long: []string{
				"pg2.backup maximum age: CRITICAL (interval provided: 1 hour, latest backup age: 2 hours)",
				"pg2.archiver errors: CRITICAL (duplicates: 1)",
			},
		},
		{
			name:    "warning threshold",
			results: []checks.Result{res("pg1", "backup maximum age", checks.OK, "", age)},
			th:      Thresholds{Warning: map[string]Range{"backup_age": mustRange(t, "3600")}},
			code:    1,
			first:   "CELLAR WARNING - 1 of 1 servers have issues: pg1 (backup maximum age) | 'pg1_backup_age'=7200s;3600;86400;0",
		},
		{
			name:    "critical threshold overrides",
			results: []checks.Result{res("pg1", "backup minimum size", checks.OK, "", size)},
			th:      Thresholds{Critical: map[string]Range{"backup_size": mustRange(t, "2000000000000:")}},
			code:    2, perfSome: "'pg1_backup_size'=1500000000000B;;2000000000000:;0",
		},
		{
			name:    "unknown from timeout",
			results: []checks.Result{res("pg1", "PostgreSQL", checks.OK, ""), timeout},
			code:    3, long: []string{"pg2.wal size: UNKNOWN (check timed out after 30s)"},
		},
		{
			name:    "inactive ignored",
			results: []checks.Result{res("pg1", "PostgreSQL", checks.OK, ""), inactive},
			code:    0, first: "CELLAR OK - 1 of 2 servers OK: pg1, old * IGNORING: old",
		},
		{name: "nothing", code: 3, first: "CELLAR UNKNOWN - no server checked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			code := Nagios(&b, tc.results, tc.th)
			state, perf := checkGrammar(t, b.String())
			if code != tc.code || state != checks.Status(code).String() {
				t.Errorf("exit %d state %s, want %d", code, state, tc.code)
			}
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if tc.first != "" && lines[0] != tc.first {
				t.Errorf("first line\n got %q\nwant %q", lines[0], tc.first)
			}
			if tc.long != nil && strings.Join(lines[1:], "\n") != strings.Join(tc.long, "\n") {
				t.Errorf("long output %q, want %q", lines[1:], tc.long)
			}
			if tc.perfSome != "" && !strings.Contains(strings.Join(perf, " "), tc.perfSome) {
				t.Errorf("perfdata %q lacks %q", perf, tc.perfSome)
			}
		})
	}
}

func mustRange(t *testing.T, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRange(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	tests := []struct {
		in             string
		start, end     float64
		inside         bool
		alert, noAlert []float64
	}{
		{"10", 0, 10, false, []float64{-1, 11}, []float64{0, 5, 10}},
		{"10:", 10, inf, false, []float64{9.9}, []float64{10, 1e9}},
		{"~:10", math.Inf(-1), 10, false, []float64{10.5}, []float64{-1e9, 10}},
		{"10:20", 10, 20, false, []float64{9, 21}, []float64{10, 20}},
		{"@10:20", 10, 20, true, []float64{10, 15, 20}, []float64{9, 21}},
		{"0.5", 0, 0.5, false, []float64{0.6}, []float64{0.5}},
	}
	for _, tc := range tests {
		r, err := ParseRange(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if r.Start != tc.start || r.End != tc.end || r.Inside != tc.inside || r.String() != tc.in {
			t.Errorf("%q = %+v", tc.in, r)
		}
		for _, v := range tc.alert {
			if !r.Alert(v) {
				t.Errorf("%q: %v should alert", tc.in, v)
			}
		}
		for _, v := range tc.noAlert {
			if r.Alert(v) {
				t.Errorf("%q: %v should not alert", tc.in, v)
			}
		}
	}
	for _, bad := range []string{"", "@", ":", "20:10", "x", "1e", ":5", "NaN", "inf"} {
		if _, err := ParseRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseThresholds(t *testing.T) {
	t.Parallel()
	th, err := ParseThresholds([]string{"backup_age=3600"}, []string{"wals=~:100"})
	if err != nil || th.Warning["backup_age"].End != 3600 || th.Critical["wals"].End != 100 {
		t.Errorf("%+v %v", th, err)
	}
	if _, err := ParseThresholds([]string{"nolabel"}, []string{"x=20:10"}); err == nil {
		t.Error("bad thresholds accepted")
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"10", "10:", "~:10", "10:20", "@10:20", "", "@", "1e3:2e3", "-5:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if !strings.Contains(err.Error(), "invalid Nagios range") {
				t.Fatalf("error %v does not name the problem", err)
			}
			return
		}
		if r.Start > r.End {
			t.Fatalf("%q: start > end", s)
		}
		again, err := ParseRange(r.String())
		if err != nil || again.Start != r.Start || again.End != r.End || again.Inside != r.Inside {
			t.Fatalf("%q does not round-trip: %+v %v", s, again, err)
		}
	})
}
