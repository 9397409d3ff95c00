package exporter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
)

func saveVerification(t *testing.T, f *fakeTarget, id string, res catalog.VerifyResult, at time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(f.dirs.Base, id), 0o700); err != nil {
		t.Fatal(err)
	}
	cat := catalog.Open(catalog.NewLayout(f.name, f.dirs.Backup, ""))
	if err := cat.SaveVerification(catalog.Verification{BackupID: id, Result: res, VerifiedAt: at, Error: "x"}); err != nil {
		t.Fatal(err)
	}
}

// The verification gauges, per server, by result and per failed backup
// (backup_id label), from real records: pg1's newest DONE backup failed,
// an older one passed and a third is unverifiable; pg2 has a schedule but nothing verified
// (+Inf age); pg3 has no DONE backup (no verification series at all).
func TestCollectorVerification(t *testing.T) {
	t.Parallel()
	pg1 := newFake(t, "pg1")
	pg1.backups = []checks.Backup{
		{ID: "20261120T100000", Status: checks.StatusDone, EndTime: t0.Add(-4 * 24 * time.Hour)},
		{ID: "20261122T100000", Status: checks.StatusDone, EndTime: t0.Add(-50 * time.Hour)},
		{ID: "20261124T100000", Status: checks.StatusDone, EndTime: t0.Add(-2 * time.Hour)},
		{ID: "20261124T110000", Status: checks.StatusFailed},
	}
	saveVerification(t, pg1, "20261120T100000", catalog.VerifyOK, t0.Add(-3*24*time.Hour))
	saveVerification(t, pg1, "20261122T100000", catalog.VerifyUnverifiable, t0.Add(-48*time.Hour))
	saveVerification(t, pg1, "20261124T100000", catalog.VerifyFailed, t0.Add(-time.Hour))
	pg2 := newFake(t, "pg2")
	pg2.cfg.VerifyBackupSchedule = "@daily"
	pg2.cfg.VerifyBackupMaxAge = 3 * 24 * time.Hour
	pg2.backups = []checks.Backup{{ID: "20261124T100000", Status: checks.StatusDone, EndTime: t0.Add(-2 * time.Hour)}}
	pg3 := newFake(t, "pg3")
	for _, f := range []*fakeTarget{pg1, pg3} {
		f.cfg.VerifyBackupMaxAge = 8 * 24 * time.Hour
	}
	c := NewCollector(checks.Default(), TargetList{pg1, pg2, pg3}, Options{ScrapeTimeout: 5 * time.Second})
	want := `
# HELP cellar_backup_last_verification_failed 1 when the last verification of the newest DONE backup failed, else 0 (absent when never verified). Unverifiable: both _ok and _failed are 0.
# TYPE cellar_backup_last_verification_failed gauge
cellar_backup_last_verification_failed{server="pg1"} 1
# HELP cellar_backup_last_verification_ok 1 when the last verification of the newest DONE backup passed, 0 when it failed or the backup is unverifiable (absent when never verified).
# TYPE cellar_backup_last_verification_ok gauge
cellar_backup_last_verification_ok{server="pg1"} 0
# HELP cellar_backup_last_verification_timestamp_seconds When the newest DONE backup was last verified, as a Unix timestamp (absent when never).
# TYPE cellar_backup_last_verification_timestamp_seconds gauge
cellar_backup_last_verification_timestamp_seconds{server="pg1"} 1.795518e+09
# HELP cellar_backup_verification_age_seconds Seconds since the newest DONE backup was last verified against its manifest. When it never was: the longer of the time since it ended and the time since any backup of the server was last verified, +Inf when none ever was. Absent without DONE backups, and when the newest was never verified and verify_backup_schedule is not set.
# TYPE cellar_backup_verification_age_seconds gauge
cellar_backup_verification_age_seconds{server="pg1"} 3600
cellar_backup_verification_age_seconds{server="pg2"} +Inf
# HELP cellar_backup_verification_failed 1 for each backup whose last verification failed (no series for the others).
# TYPE cellar_backup_verification_failed gauge
cellar_backup_verification_failed{backup_id="20261124T100000",server="pg1"} 1
# HELP cellar_backup_verification_failed_timestamp_seconds When the failed last verification of a backup ran, as a Unix timestamp (failed backups only).
# TYPE cellar_backup_verification_failed_timestamp_seconds gauge
cellar_backup_verification_failed_timestamp_seconds{backup_id="20261124T100000",server="pg1"} 1.795518e+09
# HELP cellar_backup_verification_max_age_seconds The server's verify_backup_max_age in seconds: the backup verification check warns when backup_verification_age_seconds exceeds it.
# TYPE cellar_backup_verification_max_age_seconds gauge
cellar_backup_verification_max_age_seconds{server="pg1"} 691200
cellar_backup_verification_max_age_seconds{server="pg2"} 259200
# HELP cellar_backup_verifications DONE backups by the result of their last verification (never: not verified).
# TYPE cellar_backup_verifications gauge
cellar_backup_verifications{result="failed",server="pg1"} 1
cellar_backup_verifications{result="never",server="pg1"} 0
cellar_backup_verifications{result="ok",server="pg1"} 1
cellar_backup_verifications{result="unverifiable",server="pg1"} 1
cellar_backup_verifications{result="failed",server="pg2"} 0
cellar_backup_verifications{result="never",server="pg2"} 1
cellar_backup_verifications{result="ok",server="pg2"} 0
cellar_backup_verifications{result="unverifiable",server="pg2"} 0
`
	names := []string{
		"cellar_backup_last_verification_failed", "cellar_backup_last_verification_ok", "cellar_backup_last_verification_timestamp_seconds",
		"cellar_backup_verification_age_seconds", "cellar_backup_verification_failed", "cellar_backup_verification_failed_timestamp_seconds",
		"cellar_backup_verification_max_age_seconds", "cellar_backup_verifications",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for srv, want := range map[string]float64{"pg1": 2, "pg2": 1, "pg3": 0} {
		if got := gaugeValue(t, reg, "cellar_check_status", map[string]string{"server": srv, "check": "backup_verification"}); got != want {
			t.Errorf("%s backup_verification status = %v, want %v", srv, got, want)
		}
	}
}
