package checks

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
)

const (
	oldID    = "20261110T030000"
	newestID = "20261124T030000"
)

// verifyRecord is a verification record written before a probe run: result
// res, ago before t0.
type verifyRecord struct {
	id  string
	res catalog.VerifyResult
	ago time.Duration
	msg string
}

// saveVerification writes a real record, as verify-backup does.
func (r *realTarget) saveVerification(t *testing.T, id string, res catalog.VerifyResult, at time.Time, msg string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(r.dirs.Base, id), 0o700); err != nil {
		t.Fatal(err)
	}
	cat := catalog.Open(catalog.NewLayout(r.name, r.dirs.Backup, ""))
	v := catalog.Verification{BackupID: id, Result: res, VerifiedAt: at, Duration: time.Second, Files: 10, Bytes: 1000, Error: msg}
	if err := cat.SaveVerification(v); err != nil {
		t.Fatal(err)
	}
}

// verifyFixture is a catalog with an old DONE backup, the newest DONE one
// (ended 9 h before t0) and a newer FAILED one, which never counts.
func verifyFixture(t *testing.T) *realTarget {
	tgt := newRealTarget(t, "pg")
	tgt.now = t0
	tgt.writeBackup(t, oldID, StatusDone, t0.Add(-14*24*time.Hour), 100, "000000010000000000000002", "000000010000000000000002", "")
	tgt.writeBackup(t, newestID, StatusDone, t0.Add(-9*time.Hour), 100, "000000010000000000000009", "000000010000000000000009", "")
	tgt.writeBackup(t, "20261124T110000", StatusFailed, time.Time{}, 0, "None", "None", "")
	return tgt
}

func TestProbeBackupVerification(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	for _, tc := range []struct {
		name     string
		schedule string
		records  []verifyRecord
		want     Status
		hint     string
		age      float64 // expected backup_verification_age_seconds; NaN = absent
	}{
		{"never verified, no schedule", "", nil, OK, "backup 20261124T030000 not verified (no verify_backup_schedule)", math.NaN()},
		{"never verified, schedule", "@daily", nil, Warning, "no backup ever was although verify_backup_schedule is set", math.Inf(1)},
		{"ok", "", []verifyRecord{{newestID, catalog.VerifyOK, 2 * time.Hour, ""}}, OK, "backup 20261124T030000 verified 2 hours ago", 7200},
		{"failed", "@daily", []verifyRecord{{newestID, catalog.VerifyFailed, time.Hour, "base/1/1234: checksum mismatch"}}, Critical,
			"backup 20261124T030000 failed verification at 2026-11-24T11:00:00Z: base/1/1234: checksum mismatch", 3600},
		{"unverifiable", "@daily", []verifyRecord{{newestID, catalog.VerifyUnverifiable, time.Hour, "no backup_manifest"}}, Warning,
			"backup 20261124T030000 cannot be verified: no backup_manifest", 3600},
		{"stale", "", []verifyRecord{{newestID, catalog.VerifyOK, 9 * day, ""}}, Warning,
			"backup 20261124T030000 last verified 9 days ago, more than verify_backup_max_age 8 days", 9 * 86400},
		// The newest waits for the next scheduled run while an older
		// backup was verified recently: fine.
		{"newest pending", "@daily", []verifyRecord{{oldID, catalog.VerifyOK, 3 * time.Hour, ""}}, OK,
			"backup 20261124T030000 not verified yet (last verification 9 hours ago)", 9 * 3600},
		// The schedule stopped running: the last verification of any
		// backup is too old even though the newest backup is recent.
		{"schedule stopped", "@daily", []verifyRecord{{oldID, catalog.VerifyOK, 10 * day, ""}}, Warning,
			"nothing verified for 10 days, more than verify_backup_max_age 8 days", 10 * 86400},
		// An older backup that failed does not make the newest fail (the
		// per-backup gauges and the alert rule report it).
		{"old failed, newest ok", "", []verifyRecord{{oldID, catalog.VerifyFailed, day, "missing file"}, {newestID, catalog.VerifyOK, time.Hour, ""}}, OK, "verified 1 hour ago", 3600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tgt := verifyFixture(t)
			tgt.cfg.VerifyBackupSchedule = tc.schedule
			tgt.cfg.VerifyBackupMaxAge = 8 * day
			for _, rec := range tc.records {
				tgt.saveVerification(t, rec.id, rec.res, t0.Add(-rec.ago), rec.msg)
			}
			r := mustProbe(t, tgt, "backup_verification", tc.want, tc.hint)
			if r.Critical {
				t.Error("a verification problem must not block backups (non-critical)")
			}
			age, ok := r.Values["backup_verification_age_seconds"]
			switch {
			case math.IsNaN(tc.age) && ok:
				t.Errorf("age = %v, want absent", age)
			case !math.IsNaN(tc.age) && age != tc.age:
				t.Errorf("age = %v (present %v), want %v", age, ok, tc.age)
			}
			if got := r.Values["backup_verification_max_age_seconds"]; got != 8*86400 {
				t.Errorf("max age gauge = %v", got)
			}
			checkVerificationSeries(t, r, tc.records)
		})
	}
}

// checkVerificationSeries: the counts by result add up over the two DONE
// backups, failed records (only) have per-backup series, and the newest's
// record is also the server's.
func checkVerificationSeries(t *testing.T, r Result, records []verifyRecord) {
	t.Helper()
	counts := map[string]float64{"never": 2}
	failed := 0
	for _, rec := range records {
		counts[string(rec.res)]++
		counts["never"]--
		if rec.res == catalog.VerifyFailed {
			failed++
			if r.Values[SeriesKey("backup_verification_failed", rec.id)] != 1 ||
				r.Values[SeriesKey("backup_verification_failed_timestamp_seconds", rec.id)] != float64(t0.Add(-rec.ago).Unix()) {
				t.Errorf("series of failed %s wrong: %v", rec.id, r.Values)
			}
		}
	}
	for _, res := range []string{"ok", "failed", "unverifiable", "never"} {
		if got := r.Values[SeriesKey("backup_verifications", res)]; got != counts[res] {
			t.Errorf("backup_verifications{result=%s} = %v, want %v", res, got, counts[res])
		}
	}
	perBackup := 0
	for k := range r.Values {
		if name, _, labelled := ParseSeriesKey(k); labelled && name != "backup_verifications" {
			perBackup++
		}
	}
	if perBackup != 2*failed {
		t.Errorf("%d per-backup series for %d failed records: %v", perBackup, failed, r.Values)
	}
	newestSeen := false
	for _, rec := range records {
		if rec.id != newestID {
			continue
		}
		newestSeen = true
		okWant, failedWant := boolGauge(rec.res == catalog.VerifyOK), boolGauge(rec.res == catalog.VerifyFailed)
		if r.Values["backup_last_verification_ok"] != okWant || r.Values["backup_last_verification_failed"] != failedWant ||
			r.Values["backup_last_verification_timestamp_seconds"] != float64(t0.Add(-rec.ago).Unix()) {
			t.Errorf("server series wrong for %s: %v", rec.res, r.Values)
		}
		if len(r.Perf) != 1 || r.Perf[0].Label != "verification_age" || r.Perf[0].Value != rec.ago.Seconds() || r.Perf[0].Warn != "691200" {
			t.Errorf("perf = %+v", r.Perf)
		}
	}
	if _, ok := r.Values["backup_last_verification_ok"]; ok != newestSeen {
		t.Errorf("server result series present = %v, newest verified = %v", ok, newestSeen)
	}
}

func TestProbeBackupVerificationEdgeCases(t *testing.T) {
	t.Parallel()
	// No DONE backup: nothing to verify.
	tgt := newRealTarget(t, "pg")
	tgt.cfg.VerifyBackupSchedule = "@daily"
	r := mustProbe(t, tgt, "backup_verification", OK, "no DONE backup to verify")
	if len(r.Values) != 0 {
		t.Errorf("values without backups: %v", r.Values)
	}
	// A damaged verifyRecord is UNKNOWN, naming the file.
	tgt = verifyFixture(t)
	path := filepath.Join(tgt.dirs.Base, newestID, catalog.VerificationFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustProbe(t, tgt, "backup_verification", Unknown, path)
	// A record with a result the probe does not know never passes.
	rec := `{"backup_id":"` + newestID + `","result":"fine","verified_at":"2026-11-24T11:00:00Z"}`
	if err := os.WriteFile(path, []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	mustProbe(t, tgt, "backup_verification", Unknown, `unknown result "fine"`)
}
