package checks

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/config"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestProbeWALArchive(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	r := mustProbe(t, tgt, "wal_archive", Critical, "please make sure WAL shipping is setup")
	if !r.FailureOnly {
		t.Error("WAL archive must be failure-only")
	}
	// A backup waiting for its WALs is enough.
	tgt.writeBackup(t, "20261124T100000", StatusWaitingForWALs, t0, 10, "000000010000000000000002", "000000010000000000000002", "")
	mustProbe(t, tgt, "wal_archive", OK, "")
	// So is a non-empty xlog.db.
	tgt2 := newRealTarget(t, "pg2")
	tgt2.appendWAL(t, "000000010000000000000001", 100, t0)
	mustProbe(t, tgt2, "wal_archive", OK, "")
}

func TestProbeIncomingDirectories(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	// archiver on, no queue limit: the queue is counted (its gauge is
	// exported) but never fails.
	mustSkip(t, tgt, "empty_incoming_directory")
	tgt.writeFile(t, filepath.Join(tgt.dirs.Incoming, "000000010000000000000009"))
	if r := mustProbe(t, tgt, "incoming_wals_directory", OK, ""); r.Values["incoming_wals_queue_files"] != 1 {
		t.Errorf("queue gauge without max_incoming_wals_queue = %v", r.Values)
	}
	if err := os.Remove(filepath.Join(tgt.dirs.Incoming, "000000010000000000000009")); err != nil {
		t.Fatal(err)
	}

	tgt.cfg.MaxIncomingWALsQueue = 1
	tgt.writeFile(t, filepath.Join(tgt.dirs.Incoming, "000000010000000000000001"))
	tgt.writeFile(t, filepath.Join(tgt.dirs.Incoming, "x.tmp"))
	r := mustProbe(t, tgt, "incoming_wals_directory", OK, "")
	if r.Values["incoming_wals_queue_files"] != 1 {
		t.Errorf("queue gauge = %v", r.Values)
	}
	tgt.writeFile(t, filepath.Join(tgt.dirs.Incoming, "000000010000000000000002"))
	mustProbe(t, tgt, "incoming_wals_directory", Critical, "there are too many WALs in queue: 2, max 1")

	tgt.cfg.Archiver = false
	tgt.cfg.StreamingArchiver = true
	mustProbe(t, tgt, "empty_incoming_directory", Critical, "must be empty when archiver=off")
	for _, n := range []string{"000000010000000000000001", "000000010000000000000002"} {
		if err := os.Remove(filepath.Join(tgt.dirs.Incoming, n)); err != nil {
			t.Fatal(err)
		}
	}
	mustProbe(t, tgt, "empty_incoming_directory", OK, "")
}

func TestProbeStreamingDirectories(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	// streaming_archiver off: one file (the .partial allowance) passes,
	// two fail.
	tgt.writeFile(t, filepath.Join(tgt.dirs.Streaming, "000000010000000000000001.partial"))
	mustProbe(t, tgt, "empty_streaming_directory", OK, "")
	tgt.writeFile(t, filepath.Join(tgt.dirs.Streaming, "000000010000000000000000"))
	mustProbe(t, tgt, "empty_streaming_directory", Critical, "must be empty when streaming_archiver=off")

	tgt.cfg.StreamingArchiver = true
	tgt.cfg.MaxIncomingWALsQueue = 1
	mustSkip(t, tgt, "empty_streaming_directory")
	mustProbe(t, tgt, "streaming_wals_directory", OK, "")
	tgt.writeFile(t, filepath.Join(tgt.dirs.Streaming, "00000001000000000000000F"))
	mustProbe(t, tgt, "streaming_wals_directory", Critical, "too many WALs in queue: 2, max 1")
}

func TestProbeDirectories(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	mustProbe(t, tgt, "directories", OK, "")
	if err := os.Remove(tgt.dirs.Errors); err != nil {
		t.Fatal(err)
	}
	// Missing is fine: the catalog creates it when first needed.
	mustProbe(t, tgt, "directories", OK, "created when first needed: "+tgt.dirs.Errors)
	tgt.writeFile(t, tgt.dirs.Errors)
	mustProbe(t, tgt, "directories", Critical, tgt.dirs.Errors+": not a directory")
}

func TestProbeRetentionPolicySettings(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	mustProbe(t, tgt, "retention_policy_settings", OK, "")
	tgt.cfg.RetentionPolicy = config.RetentionPolicy{Kind: config.RetentionRedundancy, Value: 2}
	mustProbe(t, tgt, "retention_policy_settings", OK, "")
	tgt.cfg.RetentionPolicy = config.RetentionPolicy{Kind: config.RetentionRedundancy, Value: 0}
	mustProbe(t, tgt, "retention_policy_settings", Critical, "see log")
}

func TestProbeBackupMaximumAge(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	tgt.now = t0
	mustProbe(t, tgt, "backup_maximum_age", OK, "no last_backup_maximum_age provided")
	tgt.cfg.LastBackupMaximumAge = 24 * time.Hour
	mustProbe(t, tgt, "backup_maximum_age", Critical, "interval provided: 1 day, latest backup age: No available backups")

	tgt.writeBackup(t, "20261122T100000", StatusDone, t0.Add(-50*time.Hour), 100, "000000010000000000000002", "000000010000000000000002", "")
	r := mustProbe(t, tgt, "backup_maximum_age", Critical, "interval provided: 1 day, latest backup age: 2 days, 2 hours")
	if got := r.Values["backup_last_success_timestamp_seconds"]; got != float64(t0.Add(-50*time.Hour).Unix()) {
		t.Errorf("timestamp gauge = %v", got)
	}
	if len(r.Perf) != 1 || r.Perf[0].Value != 50*3600 || r.Perf[0].Crit != "86400" || r.Perf[0].UOM != "s" {
		t.Errorf("perf = %+v", r.Perf)
	}
	// A newer backup (and a FAILED one, which does not count) makes it pass.
	tgt.writeBackup(t, "20261124T100000", StatusDone, t0.Add(-90*time.Minute), 100, "000000010000000000000004", "000000010000000000000004", "")
	tgt.writeBackup(t, "20261124T110000", StatusFailed, time.Time{}, 0, "None", "None", "")
	tgt.appendWAL(t, "000000010000000000000005", 100, t0.Add(-time.Minute))
	r = mustProbe(t, tgt, "backup_maximum_age", OK, "latest backup age: 1 hour, 30 minutes")
	if got, want := r.Values["recovery_window_seconds"], (50*time.Hour - time.Minute).Seconds(); got != want {
		t.Errorf("recovery window = %v, want %v", got, want)
	}
}

func TestProbeBackupMinimumSize(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	mustProbe(t, tgt, "backup_minimum_size", OK, "No backups available")
	tgt.writeBackup(t, "20261124T100000", StatusDone, t0, 2048, "000000010000000000000002", "000000010000000000000002", "")
	r := mustProbe(t, tgt, "backup_minimum_size", OK, "2.0 KiB")
	if r.Values["backup_last_size_bytes"] != 2048 || r.Perf[0].Value != 2048 || r.Perf[0].UOM != "B" {
		t.Errorf("values %v perf %+v", r.Values, r.Perf)
	}
	tgt.cfg.LastBackupMinimumSize = 1024
	mustProbe(t, tgt, "backup_minimum_size", OK, "last backup size 2.0 KiB > 1.0 KiB minimum")
	tgt.cfg.LastBackupMinimumSize = 1 << 20
	mustProbe(t, tgt, "backup_minimum_size", Critical, "last backup size 2.0 KiB < 1.0 MiB minimum")
}

func TestProbeWALMaximumAgeAndSize(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	tgt.now = t0
	mustProbe(t, tgt, "wal_maximum_age", OK, "no last_wal_maximum_age provided")
	tgt.cfg.LastWALMaximumAge = time.Hour
	mustProbe(t, tgt, "wal_maximum_age", Critical, "No WAL files archived for last backup")

	tgt.writeBackup(t, "20261124T100000", StatusDone, t0.Add(-2*time.Hour), 100, "000000010000000000000003", "000000010000000000000004", "")
	tgt.appendWAL(t, "000000010000000000000001", 10, t0.Add(-5*time.Hour))
	tgt.appendWAL(t, "000000010000000000000003", 20, t0.Add(-3*time.Hour))
	tgt.appendWAL(t, "000000010000000000000004", 40, t0.Add(-2*time.Hour))
	r := mustProbe(t, tgt, "wal_maximum_age", Critical, "interval provided: 1 hour, latest wal age: 2 hours")
	if r.Values["wal_archived_last_timestamp_seconds"] != float64(t0.Add(-2*time.Hour).Unix()) {
		t.Errorf("values %v", r.Values)
	}
	// WAL 2 is missing, but before the oldest backup's begin WAL: no gap.
	r = mustProbe(t, tgt, "wal_size", OK, "0 B")
	if r.Values["wal_archive_gap_segments"] != 0 || r.Values["wal_archive_size_bytes"] != 70 {
		t.Errorf("values %v", r.Values)
	}
	tgt.appendWAL(t, "000000010000000000000007", 1536, t0.Add(-10*time.Minute))
	mustProbe(t, tgt, "wal_maximum_age", OK, "latest wal age: 10 minutes")
	r = mustProbe(t, tgt, "wal_size", OK, "1.5 KiB")
	if r.Values["wal_archive_gap_segments"] != 2 || r.Values["wal_since_last_backup_bytes"] != 1536 || r.Perf[0].Value != 1536 {
		t.Errorf("values %v perf %+v", r.Values, r.Perf)
	}
}

func TestProbeCompressionSettings(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	mustProbe(t, tgt, "compression_settings", OK, "")
	tgt.cfg.Compression = "snappy"
	mustProbe(t, tgt, "compression_settings", Critical, `unknown compression "snappy"`)
	tgt.cfg.Compression = config.CompressionZstd
	tgt.cfg.BackupCompression = "rar"
	mustProbe(t, tgt, "compression_settings", Critical, `unknown backup_compression "rar"`)
}

func TestProbeFailedBackupsAndRedundancy(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	tgt.cfg.MinimumRedundancy = 2
	r := mustProbe(t, tgt, "failed_backups", OK, "there are 0 failed backups")
	if len(r.Values) != len(BackupStatuses()) {
		t.Errorf("every status must be exported, got %v", r.Values)
	}
	mustProbe(t, tgt, "minimum_redundancy_requirements", Critical, "have 0 non-incremental backups, expected at least 2")
	tgt.writeBackup(t, "20261124T080000", StatusDone, t0, 1, "000000010000000000000002", "000000010000000000000002", "")
	tgt.writeBackup(t, "20261124T090000", StatusDone, t0, 1, "000000010000000000000004", "000000010000000000000004", "20261124T080000")
	tgt.writeBackup(t, "20261124T100000", StatusFailed, time.Time{}, 0, "None", "None", "")
	r = mustProbe(t, tgt, "failed_backups", Critical, "there are 1 failed backups")
	if r.Values[SeriesKey("backups", StatusDone)] != 2 || r.Values[SeriesKey("backups", StatusFailed)] != 1 {
		t.Errorf("values %v", r.Values)
	}
	mustProbe(t, tgt, "minimum_redundancy_requirements", Critical, "have 1 non-incremental backups")
	tgt.writeBackup(t, "20261124T110000", StatusDone, t0, 1, "000000010000000000000006", "000000010000000000000006", "")
	mustProbe(t, tgt, "minimum_redundancy_requirements", OK, "have 2 non-incremental backups, expected at least 2")
}

func TestProbeConfiguration(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	mustProbe(t, tgt, "configuration", OK, "")
	tgt.cfg.Archiver = false
	mustProbe(t, tgt, "configuration", Critical, "No archiver enabled")
}

func TestProbeArchiverErrors(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	mustProbe(t, tgt, "archiver_errors", OK, "")
	for _, n := range []string{
		"000000010000000000000001.20261124T120000Z.duplicate",
		"000000010000000000000002.20261124T120000Z.duplicate",
		"junk.20261124T120000Z.unknown",
		"000000010000000000000003.error",
		"weird",
	} {
		tgt.writeFile(t, filepath.Join(tgt.dirs.Errors, n))
	}
	r := mustProbe(t, tgt, "archiver_errors", Critical, "duplicates: 2, unknown: 1, not relevant: 1, unknown failure: 1")
	if r.Values[SeriesKey("archiver_errors", "duplicate")] != 2 || r.Values[SeriesKey("archiver_errors", "unknown_failure")] != 1 {
		t.Errorf("values %v", r.Values)
	}
	if r.Critical {
		t.Error("archiver errors is a non-critical check")
	}
}

func TestProbeReceiveWALRunning(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	mustSkip(t, tgt, "receive_wal_running")
	tgt.cfg.StreamingArchiver = true
	mustProbe(t, tgt, "receive_wal_running", Critical, "See the Cellar log file for more details")
	tgt.holdReceiveWALLock(t)
	mustProbe(t, tgt, "receive_wal_running", OK, "")
}

func TestProbeSystemIDCoherenceIdentity(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	tgt.cfg.Conninfo = ""
	tgt.cfg.PrimarySSHCommand = "ssh primary" // passive: compares identity only
	mustProbe(t, tgt, "systemid_coherence", OK, "no system Id stored on disk")
	if err := os.WriteFile(filepath.Join(tgt.dirs.Backup, "identity.json"), []byte(`{not json`), 0o600); err != nil {
		t.Fatal(err)
	}
	mustProbe(t, tgt, "systemid_coherence", Unknown, "cannot read identity.json")
}
