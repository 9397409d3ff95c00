package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeDrill(t *testing.T, tgt *realTarget, end time.Time, result, errText string) {
	t.Helper()
	dir := filepath.Join(tgt.dirs.Backup, "drills")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	start := end.Add(-90 * time.Second)
	id := start.UTC().Format("20060102T150405.000000Z")
	rec := fmt.Sprintf(`{"id":%q,"backup_id":"20261124T100000","start":%q,"end":%q,
"phases":[{"name":"restore","seconds":30},{"name":"startup","seconds":10},{"name":"replay","seconds":40},{"name":"checks","seconds":10}],
"recovered_time":%q,"result":%q,"error":%q}`, id, start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano),
		end.Add(-time.Hour).Format(time.RFC3339Nano), result, errText)
	if err := os.WriteFile(filepath.Join(dir, id+".json"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestProbeRestoreDrillMaximumAge(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	tgt.now = t0
	r := mustProbe(t, tgt, "restore_drill_maximum_age", OK, "no last_drill_maximum_age provided")
	if len(r.Values) != 0 {
		t.Errorf("values without drills: %v", r.Values)
	}
	tgt.cfg.LastDrillMaximumAge = 24 * time.Hour
	mustProbe(t, tgt, "restore_drill_maximum_age", Critical, "No successful drills")

	writeDrill(t, tgt, t0.Add(-2*time.Hour), "OK", "")
	r = mustProbe(t, tgt, "restore_drill_maximum_age", OK, "latest successful drill age: 2 hours")
	want := map[string]float64{
		"restore_drill_last_result":                           0,
		"restore_drill_last_success_timestamp_seconds":        unixSeconds(t0.Add(-2 * time.Hour)),
		"restore_drill_recovered_timestamp_seconds":           unixSeconds(t0.Add(-3 * time.Hour)),
		SeriesKey("restore_drill_duration_seconds", "replay"): 40,
		SeriesKey("restore_drill_duration_seconds", "total"):  80,
	}
	for k, v := range want {
		if r.Values[k] != v {
			t.Errorf("%s = %v, want %v", k, r.Values[k], v)
		}
	}

	tgt.now = t0.Add(48 * time.Hour)
	mustProbe(t, tgt, "restore_drill_maximum_age", Critical, "latest successful drill age: 2 days")

	writeDrill(t, tgt, t0.Add(47*time.Hour), "FAILED", "backup x: WAL missing from the archive: 000000010000000000000007\nmore")
	r = mustProbe(t, tgt, "restore_drill_maximum_age", Critical, "FAILED: backup x: WAL missing from the archive: 000000010000000000000007")
	if r.Values["restore_drill_last_result"] != 1 || r.Values["restore_drill_last_success_timestamp_seconds"] != unixSeconds(t0.Add(-2*time.Hour)) {
		t.Errorf("values after a failed drill: %v", r.Values)
	}

	// A damaged record is UNKNOWN, not a silent pass.
	if err := os.WriteFile(filepath.Join(tgt.dirs.Backup, "drills", "20261130T000000.000000Z.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustProbe(t, tgt, "restore_drill_maximum_age", Unknown, "cannot read the drill records")
}

func FuzzParseDrillRecord(f *testing.F) {
	f.Add([]byte(`{"id":"20261124T100000.000000Z","backup_id":"b","start":"2026-11-24T10:00:00Z","end":"2026-11-24T10:01:00Z","result":"OK"}`))
	f.Add([]byte(`{"id":"x","result":"FAILED"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseDrillRecord("fuzz", data)
		if err == nil && (r.End.IsZero() || (r.Result != "OK" && r.Result != "FAILED")) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
