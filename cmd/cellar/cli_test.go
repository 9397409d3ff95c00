package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// copyTree copies a fixture tree (files 0600, dirs 0700).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// barmanCatalog lays out a catalog as Barman 3.x writes it (fixtures owned
// by the catalog package) and returns a config file pointing at it.
func barmanCatalog(t *testing.T) (cfgFile, home string) {
	t.Helper()
	home = t.TempDir()
	copyTree(t, "../../catalog/testdata/barman/pg1", filepath.Join(home, "pg1"))
	copyTree(t, "../../catalog/testdata/xlogdb/current", filepath.Join(home, "pg1", "wals"))
	cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf(`global:
  barman_home: %s
servers:
  pg1:
    description: "Barman-written catalog"
    conninfo: "host=/nonexistent port=1 user=barman password=s3cret"
`, home)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile, home
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(t.Context(), args, &o, &e, nil)
	return o.String(), e.String(), code
}

func TestListServersAndBackupsOnBarmanCatalog(t *testing.T) {
	cfg, _ := barmanCatalog(t)

	out, errOut, code := runCLI(t, "-c", cfg, "list-servers")
	if code != 0 || strings.TrimSpace(out) != "pg1 - Barman-written catalog" {
		t.Fatalf("list-servers: code %d out %q err %q", code, out, errOut)
	}

	out, errOut, code = runCLI(t, "-c", cfg, "list-backups", "pg1")
	if code != 0 {
		t.Fatalf("list-backups: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("list-backups printed %d lines:\n%s", len(lines), out)
	}
	// Newest first; FAILED shows only its status.
	if lines[0] != "pg1 20240116T030000 - F - FAILED" {
		t.Errorf("first line %q", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "pg1 2024011") || !strings.Contains(l, "Size: ") || !strings.Contains(l, "WAL Size: ") {
			t.Errorf("line %q lacks Barman's layout", l)
		}
	}
	if !strings.HasPrefix(lines[1], "pg1 20240115T100000") || !strings.HasPrefix(lines[2], "pg1 20240110T020000") {
		t.Errorf("order wrong:\n%s", out)
	}

	out, _, code = runCLI(t, "-c", cfg, "-f", "json", "list-backups", "all")
	var js map[string][]map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || len(js["pg1"]) != 3 {
		t.Fatalf("json list-backups: code %d %q", code, out)
	}

	out, _, code = runCLI(t, "-c", cfg, "list-backups", "--minimal", "pg1")
	if code != 0 || strings.Fields(out)[0] != "20240116T030000" {
		t.Fatalf("--minimal: %q", out)
	}
}

func TestShowBackup(t *testing.T) {
	cfg, _ := barmanCatalog(t)
	out, errOut, code := runCLI(t, "-c", cfg, "show-backup", "pg1", "oldest")
	if code != 0 {
		t.Fatalf("show-backup: %d %s", code, errOut)
	}
	for _, want := range []string{"Backup 20240110T020000:", "Server Name", "Base backup information:", "WAL information:", "Catalog information:", "Next Backup"} {
		if !strings.Contains(out, want) {
			t.Errorf("show-backup lacks %q:\n%s", want, out)
		}
	}
	out, _, code = runCLI(t, "-c", cfg, "show-backup", "pg1", "last-failed")
	if code != 0 || !strings.Contains(out, "failure backup (connection to server failed") {
		t.Fatalf("last-failed: %d\n%s", code, out)
	}
	_, errOut, code = runCLI(t, "-c", cfg, "show-backup", "pg1", "20990101T000000")
	if code != exitFailure || !strings.Contains(errOut, "20990101T000000") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("unknown backup: code %d stderr %q", code, errOut)
	}
}

func TestRebuildXLogDBAgrees(t *testing.T) {
	cfg, home := barmanCatalog(t)
	// Lay out real files for what xlog.db lists, then rebuild from wals/.
	wals := filepath.Join(home, "pg1", "wals")
	for _, f := range []string{"0000000100000000/000000010000000000000001", "0000000100000000/000000010000000000000002"} {
		os.MkdirAll(filepath.Join(wals, filepath.Dir(f)), 0o700)
		os.WriteFile(filepath.Join(wals, f), []byte("x"), 0o600)
	}
	os.WriteFile(filepath.Join(wals, "00000002.history"), []byte("1\t0/3000000\tno recovery target specified\n"), 0o600)
	out, errOut, code := runCLI(t, "-c", cfg, "rebuild-xlogdb", "pg1")
	if code != 0 {
		t.Fatalf("rebuild: %d %s", code, errOut)
	}
	if !strings.Contains(out, "history: 1, backup_labels: 0, wal_file: 2") {
		t.Fatalf("rebuild output: %q", out)
	}
	db, err := os.ReadFile(filepath.Join(wals, "pg1-xlog.db"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(db), "\n"); n != 3 {
		t.Fatalf("xlog.db has %d lines after rebuild:\n%s", n, db)
	}
}

func TestErrorsAndExitCodes(t *testing.T) {
	cfg, _ := barmanCatalog(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-c", cfg, "list-backups", "nope"}, exitUsage, `unknown server "nope"`},
		{[]string{"-c", "/nonexistent/cellar.yaml", "list-servers"}, exitUsage, "/nonexistent/cellar.yaml"},
		{[]string{"-c", cfg, "no-such-command"}, exitUsage, "unknown command"},
		{[]string{"-c", cfg, "-f", "xml", "list-servers"}, exitUsage, "--format"},
		{[]string{"-c", cfg, "show-backup", "pg1"}, exitUsage, "accepts 2 arg"},
	} {
		_, errOut, code := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d stderr %q; want %d containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
		if strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "s3cret") {
			t.Errorf("%v: stderr leaks a stack or password: %q", tc.args, errOut)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("servers:\n  pg1:\n    conninfo: x\n    retention_polcy: REDUNDANCY 2\n"), 0o600)
	_, errOut, code := runCLI(t, "-c", bad, "list-servers")
	if code != exitUsage || !strings.Contains(errOut, "retention_polcy") || !strings.Contains(errOut, "pg1") {
		t.Errorf("bad config: %d %q", code, errOut)
	}
}

func TestShowServersRedactsPassword(t *testing.T) {
	cfg, _ := barmanCatalog(t)
	out, _, code := runCLI(t, "-c", cfg, "show-servers", "pg1")
	if code != 0 || strings.Contains(out, "s3cret") || !strings.Contains(out, "conninfo") || !strings.Contains(out, "connection_error") {
		t.Fatalf("show-servers: %d\n%s", code, out)
	}
}

func TestConfigImportBarman(t *testing.T) {
	ini := filepath.Join(t.TempDir(), "barman.conf")
	os.WriteFile(ini, []byte("[barman]\nbarman_home = /var/lib/barman\nbarman_user = barman\n\n[pg]\ndescription = main\nconninfo = host=pg user=barman dbname=postgres\nbackup_method = postgres\nretention_policy = REDUNDANCY 2\n"), 0o600)
	yaml := filepath.Join(t.TempDir(), "out.yaml")
	_, errOut, code := runCLI(t, "config", "import-barman", ini, "-o", yaml)
	if code != 0 {
		t.Fatalf("import: %d %s", code, errOut)
	}
	out, errOut, code := runCLI(t, "-c", yaml, "list-servers")
	if code != 0 || !strings.Contains(out, "pg - main") {
		t.Fatalf("imported config: %d %q %q", code, out, errOut)
	}
}

// The real binary: --version and a one-line error with the documented code.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cellar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "cellar version ") {
		t.Fatalf("--version: %q %v", out, err)
	}
	cmd := exec.Command(bin, "-c", "/nonexistent.yaml", "list-servers")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitUsage || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("error run: %v stderr %q", err, stderr.String())
	}
}
