package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// `cellar check --nagios` on a real PostgreSQL and catalog reports the
// newest DONE backup's verification record: CRITICAL when it failed,
// WARNING when it is older than verify_backup_max_age, OK when fresh,
// with the verification_age perfdata.
func TestCheckNagiosBackupVerification(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	home := t.TempDir()
	cat, b := healthyCatalog(t, home, 10*time.Minute)
	if err := os.MkdirAll(cat.Layout().BackupDirPath(b.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	doc := fmt.Sprintf("global:\n  barman_home: %s\n  verify_backup_max_age: 2 days\nservers:\n  pg:\n    conninfo: %q\n    verify_backup_schedule: \"@daily\"\n", home, c.ConnString())
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		res    catalog.VerifyResult
		ago    time.Duration
		code   int
		status string
		line   string // long output line
	}{
		{"failed", catalog.VerifyFailed, time.Minute, 2, "CELLAR CRITICAL",
			"pg.backup verification: CRITICAL (backup 20240101T000000 failed verification at "},
		{"stale", catalog.VerifyOK, 3 * 24 * time.Hour, 1, "CELLAR WARNING",
			"pg.backup verification: WARNING (backup 20240101T000000 last verified 3 days ago, more than verify_backup_max_age 2 days)"},
		{"fresh", catalog.VerifyOK, time.Hour, 0, "CELLAR OK", ""},
	} {
		v := catalog.Verification{BackupID: b.ID, Result: tc.res, VerifiedAt: time.Now().Add(-tc.ago), Duration: time.Second, Files: 10, Bytes: 1 << 20}
		if tc.res == catalog.VerifyFailed {
			v.Error = "base/5/16384: checksum mismatch"
		}
		if err := cat.SaveVerification(v); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runCLI(t, "-c", cfg, "check", "--nagios", "pg")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if code != tc.code || !strings.HasPrefix(lines[0], tc.status) {
			t.Fatalf("%s: exit %d (want %d) stderr %q\n%s", tc.name, code, tc.code, errOut, out)
		}
		if tc.line != "" && !strings.Contains(out, "\n"+tc.line) {
			t.Errorf("%s: no long output line %q:\n%s", tc.name, tc.line, out)
		}
		perf := perfOf(t, lines[0])["pg_verification_age"]
		if perf[1] != "s" || !strings.HasPrefix(perf[2], ";172800") {
			t.Errorf("%s: verification_age perfdata %q in %q", tc.name, perf, lines[0])
		}
	}
}
