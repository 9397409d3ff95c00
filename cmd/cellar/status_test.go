package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/server"
)

// runStatusCLI is run() with the status commands registered even when the
// root command does not list them (yet): status, list-processes,
// terminate-process and list-files.
func runStatusCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runStatusCLIWith(t, defaultTerminate(), args...)
}

func runStatusCLIWith(t *testing.T, term terminateOptions, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	g := &globalOptions{out: &o, errOut: &e, format: "console"}
	g.logger = slog.New(slog.NewTextHandler(&e, nil))
	root := newRootCommand(g)
	have := map[string]bool{}
	for _, c := range root.Commands() {
		have[c.Name()] = true
	}
	terminateCmd := newTerminateProcessCommand(g)
	// Tests shorten Barman's 10 × 1 s wait.
	terminateCmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runTerminateProcess(cmd.Context(), g, term, args)
	}
	for _, c := range []*cobra.Command{newStatusCommand(g), newListProcessesCommand(g), terminateCmd, newListFilesCommand(g)} {
		if have[c.Name()] {
			if c.Name() != "terminate-process" {
				continue
			}
			for _, old := range root.Commands() {
				if old.Name() == c.Name() {
					root.RemoveCommand(old)
				}
			}
		}
		root.AddCommand(c)
	}
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.err != nil {
			fmt.Fprintf(&e, "cellar: %s\n", oneLine(err))
		}
		if exitCode(err) == exitFailure && isCobraUsage(err) {
			return o.String(), e.String(), exitUsage
		}
	}
	return o.String(), e.String(), exitCode(err)
}

// fixtureBackup describes one backup of statusCatalog.
type fixtureBackup struct {
	id         string
	status     catalog.Status
	begin, end string
	endTime    time.Time
	files      []string // relative to base/<id>/
}

// statusCatalog writes a real catalog for server pg (and the config file)
// in temp dirs: backups through catalog.Save, data files under base/<id>/,
// and xlog.db lines through XLogDB.Append. conninfo and extra YAML lines
// complete the server section.
func statusCatalog(t *testing.T, conninfo, extra string, backups []fixtureBackup, wals []catalog.WALInfo) (cfgFile string, s *server.Server) {
	t.Helper()
	home := t.TempDir()
	cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	text := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    description: \"status test\"\n    conninfo: %q\n%s", home, conninfo, extra)
	if err := os.WriteFile(cfgFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	s, err = server.New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeDirectories(); err != nil {
		t.Fatal(err)
	}
	for _, fb := range backups {
		b := catalog.NewBackupInfo(fb.id)
		b.Status = fb.status
		b.BeginWAL, b.EndWAL = fb.begin, fb.end
		b.EndTime = fb.endTime
		if !fb.endTime.IsZero() {
			b.BeginTime = fb.endTime.Add(-time.Minute)
		}
		b.Timeline = 1
		b.Version = 150000
		b.XLogSegmentSize = catalog.DefaultXLogSegmentSize
		b.Size = catalog.Int64(1 << 20)
		b.ServerName = "pg"
		if err := s.Catalog().Save(b); err != nil {
			t.Fatal(err)
		}
		for _, f := range fb.files {
			p := filepath.Join(s.Layout().BackupDirPath(fb.id), f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(wals) > 0 {
		if err := s.XLogDB().Append(t.Context(), wals...); err != nil {
			t.Fatal(err)
		}
	}
	return cfgFile, s
}

func pyTime(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// statusLines parses `cellar status` console output into label → value
// per server.
func statusLines(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	res := map[string]map[string]string{}
	var cur map[string]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if name, ok := strings.CutPrefix(line, "Server "); ok && strings.HasSuffix(name, ":") {
			cur = map[string]string{}
			res[strings.TrimSuffix(name, ":")] = cur
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "\t"), ": ")
		if cur == nil || !ok || !strings.HasPrefix(line, "\t") {
			t.Fatalf("unexpected status line %q in:\n%s", line, out)
		}
		cur[k] = v
	}
	return res
}

func TestStatusRealCluster(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	c.Exec(t, "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
	archived := c.SwitchWAL(t)
	c.WaitArchived(t, archived)

	end := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	backups := []fixtureBackup{
		{id: "20240301T110000", status: catalog.StatusDone, begin: "000000010000000000000002", end: "000000010000000000000003", endTime: end.Add(-time.Hour)},
		{id: "20240301T115000", status: catalog.StatusFailed},
		{id: "20240301T115900", status: catalog.StatusDone, begin: "000000010000000000000006", end: "000000010000000000000006", endTime: end},
	}
	var wals []catalog.WALInfo
	for i := 2; i <= 9; i++ {
		wals = append(wals, catalog.WALInfo{Name: fmt.Sprintf("0000000100000000000000%02X", i), Size: 16 << 20, Time: pyTime(end.Add(time.Duration(i-6) * 30 * time.Minute))})
	}
	// After the newest backup's end_wal (…06): …07, …08, …09 archived over
	// 1.5 h, the rate Barman reports from the WAL after the last backup.
	wantRate := fmt.Sprintf("%0.2f/hour", 3/1.5)

	extra := "    retention_policy: REDUNDANCY 2\n    minimum_redundancy: 3\n"
	cfgFile, _ := statusCatalog(t, c.ConnString(), extra, backups, wals)
	// A second, unreachable server in the same file: status still reports
	// its catalog side.
	f, err := os.OpenFile(cfgFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  down:\n    conninfo: \"host=/nonexistent port=1\"\n    minimum_redundancy: 0\n")
	f.Close()

	out, errOut, code := runStatusCLI(t, "-c", cfgFile, "status", "all")
	if code != 0 {
		t.Fatalf("status all: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.HasPrefix(out, "Server down:\n") || !strings.Contains(out, "\nServer pg:\n\tDescription: status test\n") {
		t.Fatalf("status all: servers not in name order or header wrong:\n%s", out)
	}
	got := statusLines(t, out)
	pg := got["pg"]
	version := c.QueryRow(t, "SELECT split_part(current_setting('server_version'), ' ', 1)")
	dataDir := c.QueryRow(t, "SHOW data_directory")
	for label, want := range map[string]string{
		"Active":                          "True",
		"Disabled":                        "False",
		"PostgreSQL version":              version,
		"Cluster state":                   "in production",
		"PostgreSQL Data directory":       dataDir,
		"Server WAL archiving rate":       wantRate,
		"Passive node":                    "False",
		"Retention policies":              "enforced (mode: auto, retention: REDUNDANCY 2, WAL retention: MAIN)",
		"No. of available backups":        "2",
		"First available backup":          backups[0].id,
		"Last available backup":           backups[2].id,
		"Minimum redundancy requirements": "FAILED (2/3)",
		"Failures of WAL archiver":        "0",
	} {
		if pg[label] != want {
			t.Errorf("pg %s = %q, want %q", label, pg[label], want)
		}
	}
	// PostgreSQL may archive more segments after ours; never older ones.
	if name, at, ok := strings.Cut(pg["Last archived WAL"], ", at "); !ok || len(name) != 24 || name < archived || at == "" {
		t.Errorf("Last archived WAL = %q, want %s or later with its time", pg["Last archived WAL"], archived)
	}
	if cur := pg["Current WAL segment"]; len(cur) != 24 || cur <= archived {
		t.Errorf("Current WAL segment = %q, want a segment after %s", cur, archived)
	}
	if !strings.HasSuffix(pg["Current data size"], "MiB") {
		t.Errorf("Current data size = %q", pg["Current data size"])
	}
	if !strings.Contains(pg["PostgreSQL 'archive_command' setting"], "%p") {
		t.Errorf("archive_command = %q", pg["PostgreSQL 'archive_command' setting"])
	}
	down := got["down"]
	for label, want := range map[string]string{
		"PostgreSQL version":              "FAILED trying to get PostgreSQL version",
		"Retention policies":              "not enforced",
		"No. of available backups":        "0",
		"First available backup":          "None",
		"Minimum redundancy requirements": "satisfied (0/0)",
	} {
		if down[label] != want {
			t.Errorf("down %s = %q, want %q", label, down[label], want)
		}
	}
	if _, ok := down["Cluster state"]; ok {
		t.Errorf("unreachable server reports a cluster state: %v", down)
	}

	out, _, code = runStatusCLI(t, "-c", cfgFile, "-f", "json", "status", "pg")
	var doc map[string]map[string]map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("status -f json: exit %d\n%s", code, out)
	}
	if r := doc["pg"]["minimum_redundancy"]; r["message"] != "FAILED (2/3)" || r["description"] != "Minimum redundancy requirements" {
		t.Errorf("json minimum_redundancy = %v", r)
	}
	if doc["pg"]["pg_version"]["message"] != version || doc["pg"]["server_archived_wals_per_hour"]["message"] != wantRate {
		t.Errorf("json status: %v", doc["pg"])
	}
	if _, _, code := runStatusCLI(t, "-c", cfgFile, "status", "nosuch"); code != exitUsage {
		t.Errorf("unknown server: exit %d, want %d", code, exitUsage)
	}
}

func TestListFiles(t *testing.T) {
	t.Parallel()
	end := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	b1 := fixtureBackup{id: "20240301T100000", status: catalog.StatusDone, begin: "000000010000000000000002", end: "000000010000000000000003", endTime: end.Add(-2 * time.Hour),
		files: []string{"data/global/pg_control", "data/PG_VERSION", "data/base/1/1259"}}
	b2 := fixtureBackup{id: "20240301T120000", status: catalog.StatusDone, begin: "000000010000000000000005", end: "000000010000000000000006", endTime: end,
		files: []string{"data/PG_VERSION"}}
	failed := fixtureBackup{id: "20240301T110000", status: catalog.StatusFailed, files: []string{"data/PG_VERSION"}}
	names := []string{
		"000000010000000000000001", "000000010000000000000002", "000000010000000000000002.00000028.backup",
		"000000010000000000000003", "000000010000000000000004", "000000010000000000000005",
		"000000010000000000000006", "000000010000000000000007", "00000002.history", "000000020000000000000008",
	}
	var wals []catalog.WALInfo
	for i, n := range names {
		wals = append(wals, catalog.WALInfo{Name: n, Size: 100, Time: pyTime(end.Add(time.Duration(i) * time.Minute))})
	}
	cfgFile, s := statusCatalog(t, "host=/nonexistent port=1", "", []fixtureBackup{b1, failed, b2}, wals)
	base := func(id string, rel ...string) []string {
		var out []string
		for _, r := range rel {
			out = append(out, filepath.Join(s.Layout().BackupDirPath(id), r))
		}
		return out
	}
	walPaths := func(ns ...string) []string {
		var out []string
		for _, n := range ns {
			hash := ""
			if !strings.HasSuffix(n, ".history") {
				hash = n[:16]
			}
			out = append(out, filepath.Join(s.Layout().WalsDir, hash, n))
		}
		return out
	}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// os.walk order: a directory's files, then its subdirectories.
	data1 := base(b1.id, "data/PG_VERSION", "data/base/1/1259", "data/global/pg_control")
	data2 := base(b2.id, "data/PG_VERSION")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"data", []string{b1.id, "--target", "data"}, data1},
		{"standalone default", []string{b1.id}, cat(data1, walPaths(names[1], names[3]))},
		// b1's WAL run up to the next available backup's end_wal (the
		// FAILED one in between does not count); history files always.
		{"wal", []string{b1.id, "--target", "wal"}, walPaths(names[1], names[2], names[3], names[4], names[5], names[6], names[8])},
		{"full newest", []string{"latest", "--target", "full"}, cat(data2, walPaths(names[5], names[6], names[7], names[8], names[9]))},
		{"failed backup data", []string{failed.id, "--target", "standalone"}, base(failed.id, "data/PG_VERSION")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runStatusCLI(t, append([]string{"-c", cfgFile, "list-files", "pg"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			got := strings.Split(strings.TrimSpace(out), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("list-files %v:\n got %q\nwant %q", tc.args, got, tc.want)
			}
			for _, p := range got {
				if !filepath.IsAbs(p) {
					t.Errorf("path %q is not absolute", p)
				}
			}
		})
	}
	out, _, code := runStatusCLI(t, "-c", cfgFile, "-f", "json", "list-files", "--target", "data", "pg", b2.id)
	var list []string
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0] != data2[0] {
		t.Fatalf("list-files -f json: exit %d %q", code, out)
	}
	if _, _, code := runStatusCLI(t, "-c", cfgFile, "list-files", "--target", "bogus", "pg", b1.id); code != exitUsage {
		t.Errorf("bad --target: exit %d, want %d", code, exitUsage)
	}
	if _, errOut, code := runStatusCLI(t, "-c", cfgFile, "list-files", "pg", "20990101T000000"); code != exitFailure || !strings.Contains(errOut, "unknown backup") {
		t.Errorf("unknown backup: exit %d %q", code, errOut)
	}
}
