package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// barmanHome is one barman_home shared by the real Barman (Debian's 3.4,
// run as root) and Cellar, for a real PostgreSQL 15 cluster whose
// archive_command drops WAL into the shared incoming/.
type barmanHome struct {
	c         *pgtest.Cluster
	barmanCfg string
	cellarCfg string
	layout    catalog.Layout
}

func newBarmanHome(t *testing.T) *barmanHome {
	t.Helper()
	if _, err := exec.LookPath("barman"); err != nil {
		t.Fatal("barman not found: install Debian's barman (apt-get install --no-install-recommends barman), as .ci/run does")
	}
	return newSharedHome(t)
}

// newSharedHome is the cluster, barman_home and both configurations,
// without requiring barman.
func newSharedHome(t *testing.T) *barmanHome {
	t.Helper()
	root := pgtest.MkdirForPostgres(t)
	home := filepath.Join(root, "home")
	l := catalog.NewLayout("pg", filepath.Join(home, "pg"), home)
	if err := os.MkdirAll(l.IncomingDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, l.IncomingDir)
	archiveCmd := fmt.Sprintf("cp %%p %[1]s/.%%f.tmp && mv %[1]s/.%%f.tmp %[1]s/%%f", l.IncomingDir)
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: archiveCmd})
	h := &barmanHome{c: c, layout: l,
		barmanCfg: filepath.Join(root, "barman.conf"), cellarCfg: filepath.Join(root, "cellar.yaml")}
	barmanConf := fmt.Sprintf(`[barman]
barman_user = root
barman_home = %[1]s
barman_lock_directory = %[1]s
log_file = %[2]s/barman.log
log_level = DEBUG

[pg]
description = Cellar compatibility
conninfo = %[3]s
streaming_conninfo = %[3]s
backup_method = postgres
archiver = on
path_prefix = %[4]s
immediate_checkpoint = true
`, home, root, c.ConnString(), c.BinDir)
	cellarConf := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n    retention_policy: REDUNDANCY 2\n", home, c.ConnString())
	for p, text := range map[string]string{h.barmanCfg: barmanConf, h.cellarCfg: cellarConf} {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.Exec(t, "CREATE TABLE t (id serial, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 500) g")
	return h
}

// barman runs the real barman and fails the test unless it exits 0.
func (h *barmanHome) barman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("barman", append([]string{"-c", h.barmanCfg}, args...)...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(filepath.Dir(h.barmanCfg), "barman.log"))
		t.Fatalf("barman %s: %v\n%s\nbarman.log tail:\n%s", strings.Join(args, " "), err, out, tail(string(log), 40))
	}
	return string(out)
}

func (h *barmanHome) cellar(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, append([]string{"-c", h.cellarCfg}, args...)...)
	if code != 0 {
		t.Fatalf("cellar %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// archived closes the current WAL segment and waits until PostgreSQL has
// handed it to incoming/.
func (h *barmanHome) archived(t *testing.T) {
	t.Helper()
	h.c.WaitArchived(t, h.c.SwitchWAL(t))
}

func (h *barmanHome) barmanBackup(t *testing.T) string {
	t.Helper()
	out := h.barman(t, "backup", "--wait", "pg")
	m := regexp.MustCompile(`Backup completed|Starting backup using postgres method for server pg in \S+/base/(\d{8}T\d{6})`).FindAllStringSubmatch(out, -1)
	for _, g := range m {
		if g[1] != "" {
			return g[1]
		}
	}
	t.Fatalf("no backup id in barman backup output:\n%s", out)
	return ""
}

func (h *barmanHome) cellarBackup(t *testing.T, round int) string {
	t.Helper()
	h.c.Exec(t, fmt.Sprintf("INSERT INTO t (v) SELECT md5((g*%d)::text) FROM generate_series(1, 500) g", round+2))
	h.archived(t)
	h.cellar(t, "archive-wal", "pg")
	var bk struct {
		ID     string `json:"backup_id"`
		Status string `json:"status"`
	}
	out := h.cellar(t, "-f", "json", "backup", "--wait", "--wait-timeout", "60", "--immediate-checkpoint", "pg")
	if err := json.Unmarshal([]byte(out), &bk); err != nil || bk.Status != "DONE" {
		t.Fatalf("cellar backup: %+v %v\n%s", bk, err, out)
	}
	return bk.ID
}

// TestBarman34RoundTrip: Debian's Barman 3.4 starts a catalog; Cellar
// archives, backs up, applies retention and deletes in it; Barman 3.4
// still lists, shows, checks and recovers Cellar's backup (PostgreSQL
// starts on it with the same data), and Cellar reads Barman's next backup.
func TestBarman34RoundTrip(t *testing.T) {
	t.Parallel()
	h := newBarmanHome(t)
	h.barman(t, "switch-wal", "--force", "--archive", "--archive-timeout", "60", "pg")
	first := h.barmanBackup(t)

	// The state an older Cellar left (the issue): Barman 3.4 cannot read
	// it, and `check --fix` puts it back.
	breakLikeOldCellar(t, h.layout, first)
	if out, err := exec.Command("barman", "-c", h.barmanCfg, "list-backups", "pg").CombinedOutput(); err == nil && strings.Contains(string(out), first) {
		t.Fatalf("barman read the broken catalog:\n%s", out)
	}
	runCLI(t, "-c", h.cellarCfg, "check", "--fix", "pg")
	if out := h.barman(t, "list-backups", "pg"); !strings.Contains(out, first) {
		t.Fatalf("barman list-backups after check --fix:\n%s", out)
	}

	// Freshly imported: nothing to fix, and check says whose format it is.
	out, errOut, code := runCLI(t, "-c", h.cellarCfg, "-f", "json", "check", "pg")
	var doc map[string]map[string]struct{ Status, Hint string }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, errOut)
	}
	if d := doc["pg"]["directories"]; d.Status != "OK" {
		t.Errorf("directories on a Barman 3.4 catalog: %+v (exit %d)", d, code)
	}
	if f := doc["pg"]["catalog_format"]; f.Status != "OK" || !strings.Contains(f.Hint, "Barman 3.4") {
		t.Errorf("catalog format: %+v", f)
	}

	older := h.cellarBackup(t, 1)
	newer := h.cellarBackup(t, 2)
	h.c.Exec(t, "SELECT pg_create_restore_point('cellar_compat')")
	want := h.c.QueryRow(t, "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t")
	h.archived(t)
	h.cellar(t, "archive-wal", "pg")
	// REDUNDANCY 2 makes Barman's backup obsolete; then delete the older
	// of Cellar's by hand.
	h.cellar(t, "retention", "pg")
	h.cellar(t, "delete", "pg", older)
	h.cellar(t, "keep", "--target", "full", "pg", newer)

	if _, err := os.Stat(h.layout.MetaDir); !os.IsNotExist(err) {
		t.Errorf("Cellar created meta/ in a Barman 3.4 catalog (%v)", err)
	}
	list := h.barman(t, "list-backups", "pg")
	if !strings.Contains(list, "pg "+newer+" ") || strings.Contains(list, first) || strings.Contains(list, older) {
		t.Fatalf("barman list-backups, want only %s:\n%s", newer, list)
	}
	if out := h.barman(t, "show-backup", "pg", newer); !strings.Contains(out, "Status                 : DONE") {
		t.Fatalf("barman show-backup:\n%s", out)
	}
	if out := h.barman(t, "keep", "--status", "pg", newer); !strings.Contains(out, "full") {
		t.Fatalf("barman keep --status:\n%s", out)
	}
	h.barman(t, "check-backup", "pg", newer)

	dest := filepath.Join(pgtest.MkdirForPostgres(t), "data")
	h.barman(t, "recover", "--target-name", "cellar_compat", "--target-action", "promote", "pg", newer, dest)
	if got := recoverCluster(t, h.c, dest, "false"); got != want {
		t.Fatalf("Barman recovered %q from Cellar's backup, source has %q", got, want)
	}

	// Barman carries on in the same catalog, and Cellar reads it.
	h.cellar(t, "keep", "--release", "pg", newer)
	again := h.barmanBackup(t)
	if out := h.cellar(t, "list-backups", "pg"); !strings.Contains(out, again) || !strings.Contains(out, newer) {
		t.Fatalf("cellar list-backups after Barman's backup:\n%s", out)
	}
	if out := h.cellar(t, "show-backup", "pg", again); !strings.Contains(out, "DONE") {
		t.Fatalf("cellar show-backup of Barman's backup:\n%s", out)
	}
	// Both JSON forms, live on the same catalog.
	var barmanShow, cellarShow map[string]map[string]any
	if err := json.Unmarshal([]byte(h.barman(t, "-f", "json", "show-backup", "pg", newer)), &barmanShow); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(h.cellar(t, "-f", "json", "show-backup", "pg", newer)), &cellarShow); err != nil {
		t.Fatal(err)
	}
	for _, m := range missingKeys("show-backup", barmanShow["pg"], cellarShow["pg"]) {
		t.Error(m)
	}
}

// TestBarman317LayoutRoundTrip: the same Cellar operations in a catalog
// Barman 3.17 started (meta/, <server>-xlog.db; 3.17 is not installable
// here, so its files come from a fixture written to its format). Barman's
// file is left byte for byte, every file Cellar writes has 3.17's place
// and shape, and Cellar's backup restores with the same data.
func TestBarman317LayoutRoundTrip(t *testing.T) {
	t.Parallel()
	h := newSharedHome(t)
	l := h.layout
	const failed = "20240116T030000"
	fixture, err := os.ReadFile("../../catalog/testdata/barman/pg1/meta/" + failed + "-backup.info")
	if err != nil {
		t.Fatal(err)
	}
	fixture = []byte(strings.ReplaceAll(string(fixture), "server_name=pg1", "server_name=pg"))
	mustWriteFile(t, l.MetaBackupInfoPath(failed), fixture)
	mustWriteFile(t, filepath.Join(l.WalsDir, "pg-xlog.db"), nil)

	older := h.cellarBackup(t, 1)
	newer := h.cellarBackup(t, 2)
	h.c.Exec(t, "SELECT pg_create_restore_point('cellar_compat')")
	want := h.c.QueryRow(t, "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t")
	h.archived(t)
	h.cellar(t, "archive-wal", "pg")
	h.cellar(t, "delete", "pg", older)
	h.cellar(t, "retention", "pg")
	h.cellar(t, "keep", "--target", "full", "pg", newer)

	if got, _ := os.ReadFile(l.MetaBackupInfoPath(failed)); string(got) != string(fixture) {
		t.Errorf("Barman's backup.info changed:\n%s", got)
	}
	wantKeys := infoKeys(t, fixture)
	if got := infoKeys(t, mustReadFile(t, l.MetaBackupInfoPath(newer))); !slices.Equal(got, wantKeys) {
		t.Errorf("backup.info keys %v, Barman 3.17 writes %v", got, wantKeys)
	}
	for _, p := range []string{l.LegacyBackupInfoPath(newer), filepath.Join(l.WalsDir, "xlog.db"), filepath.Join(l.BackupDirPath(newer), "annotations")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists in a 3.17 catalog (%v)", p, err)
		}
	}
	if got := string(mustReadFile(t, filepath.Join(l.MetaDir, newer+"-keep"))); got != "full" {
		t.Errorf("keep annotation = %q", got)
	}
	xlog := strings.TrimSuffix(string(mustReadFile(t, filepath.Join(l.WalsDir, "pg-xlog.db"))), "\n")
	for _, line := range strings.Split(xlog, "\n") {
		if f := strings.Split(line, "\t"); len(f) != 5 || f[4] != "None" {
			t.Errorf("xlog.db line %q: want 5 tab-separated fields, encryption None", line)
		}
	}

	dest := filepath.Join(pgtest.MkdirForPostgres(t), "data")
	h.cellar(t, "recover", "--target-name", "cellar_compat", "--target-action", "promote", "pg", newer, dest)
	if got := recoverCluster(t, h.c, dest, "false"); got != want {
		t.Fatalf("recovered %q, source has %q", got, want)
	}
}

func infoKeys(t *testing.T, data []byte) []string {
	t.Helper()
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("backup.info line %q", line)
		}
		keys = append(keys, k)
	}
	return keys
}

func mustWriteFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// breakLikeOldCellar rewrites a Barman 3.4 catalog the way Cellar did
// before it kept the catalog's format: five-field xlog.db lines, and
// backup id's backup.info in meta/ with keys Barman 3.4 rejects.
func breakLikeOldCellar(t *testing.T, l catalog.Layout, id string) {
	t.Helper()
	xlog := filepath.Join(l.WalsDir, "xlog.db")
	data := mustReadFile(t, xlog)
	mustWriteFile(t, xlog, []byte(strings.ReplaceAll(string(data), "\n", "\tNone\n")))
	b, err := catalog.ReadBackupInfo(l.LegacyBackupInfoPath(id))
	if err != nil {
		t.Fatal(err)
	}
	b.ClusterSize, b.DataChecksums = catalog.Int64(1), "off"
	mustWriteFile(t, l.MetaBackupInfoPath(id), b.Marshal())
	if err := os.Remove(l.LegacyBackupInfoPath(id)); err != nil {
		t.Fatal(err)
	}
}
