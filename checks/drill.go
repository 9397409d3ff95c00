package checks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// drillPhases are the phases a restore drill records (label values of
// restore_drill_duration_seconds), plus the whole drill.
var drillPhases = []string{"restore", "startup", "replay", "checks", "total"}

// drillRecordMax bounds a drill record file read by the probe.
const drillRecordMax = 1 << 20

var drillIDPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z$`)

// DrillRecord is what the probe reads from <backup_directory>/drills/<id>.json
// (written by cellar drill).
type DrillRecord struct {
	ID       string    `json:"id"`
	BackupID string    `json:"backup_id"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Phases   []struct {
		Name    string  `json:"name"`
		Seconds float64 `json:"seconds"`
	} `json:"phases"`
	RecoveredTime *time.Time `json:"recovered_time"`
	Result        string     `json:"result"`
	Error         string     `json:"error"`
}

// ParseDrillRecord decodes one drill record; name is used in errors.
func ParseDrillRecord(name string, data []byte) (*DrillRecord, error) {
	var r DrillRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("drill record %s: %w", name, err)
	}
	if !drillIDPattern.MatchString(r.ID) || (r.Result != "OK" && r.Result != "FAILED") || r.End.IsZero() {
		return nil, fmt.Errorf("drill record %s: bad id %q, result %q or end time", name, r.ID, r.Result)
	}
	return &r, nil
}

// readDrills returns the newest drill record and the newest successful
// one (nil when there is none) of the server.
func readDrills(dir string) (last, lastOK *DrillRecord, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && drillIDPattern.MatchString(id) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for i := len(names) - 1; i >= 0 && lastOK == nil; i-- {
		r, err := readDrill(filepath.Join(dir, names[i]))
		if err != nil {
			return nil, nil, err
		}
		if last == nil {
			last = r
		}
		if r.Result == "OK" {
			lastOK = r
		}
	}
	return last, lastOK, nil
}

func readDrill(p string) (*DrillRecord, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, drillRecordMax+1)
	n, _ := f.Read(data)
	if n > drillRecordMax {
		return nil, fmt.Errorf("drill record %s: larger than %d bytes", p, drillRecordMax)
	}
	return ParseDrillRecord(p, data[:n])
}

// drillValues are the gauges of the newest drill (durations, result) and
// the newest successful one (timestamps).
func drillValues(last, lastOK *DrillRecord) map[string]float64 {
	v := map[string]float64{}
	if last == nil {
		return v
	}
	v["restore_drill_last_result"] = 0
	if last.Result != "OK" {
		v["restore_drill_last_result"] = 1
	}
	for _, p := range last.Phases {
		if slices.Contains(drillPhases, p.Name) {
			v[SeriesKey("restore_drill_duration_seconds", p.Name)] = p.Seconds
		}
	}
	// total is the RTO: until the restored server was usable (the checks
	// and the tear-down are not part of it).
	var rto float64
	for _, p := range last.Phases {
		if p.Name == "restore" || p.Name == "startup" || p.Name == "replay" {
			rto += p.Seconds
		}
	}
	v[SeriesKey("restore_drill_duration_seconds", "total")] = rto
	if lastOK != nil {
		v["restore_drill_last_success_timestamp_seconds"] = unixSeconds(lastOK.End)
		if lastOK.RecoveredTime != nil {
			v["restore_drill_recovered_timestamp_seconds"] = unixSeconds(*lastOK.RecoveredTime)
		}
	}
	return v
}

// drillVerdict fails when the newest drill failed, or when the newest
// successful one is older than last_drill_maximum_age.
func drillVerdict(last, lastOK *DrillRecord, limit time.Duration, now time.Time) Result {
	switch {
	case last != nil && last.Result != "OK":
		msg, _, _ := strings.Cut(last.Error, "\n")
		return Fail(fmt.Sprintf("last drill %s of backup %s FAILED: %s", last.ID, last.BackupID, msg))
	case limit <= 0:
		return Pass("no last_drill_maximum_age provided")
	case lastOK == nil:
		return Fail(fmt.Sprintf("interval provided: %s, latest successful drill age: No successful drills", HumanDuration(limit)))
	}
	age := now.Sub(lastOK.End)
	return Result{
		Status: StatusFor(age <= limit),
		Hint:   fmt.Sprintf("interval provided: %s, latest successful drill age: %s", HumanDuration(limit), HumanDuration(age)),
		Perf:   []Perf{{Label: "drill_age", Value: seconds(age), UOM: "s", Crit: rangeUpTo(limit), Min: Float(0)}},
	}
}

func probeRestoreDrillMaximumAge() Probe {
	return Probe{
		Name: "restore drill maximum age", Key: "restore_drill_maximum_age", Group: "backups", Critical: false,
		Gauges: []Gauge{
			{Name: "restore_drill_last_success_timestamp_seconds", Help: "End time of the newest successful restore drill, as a Unix timestamp."},
			{Name: "restore_drill_last_result", Help: "Result of the newest restore drill: 0 OK, 1 FAILED."},
			{Name: "restore_drill_duration_seconds", Help: "Duration of each phase of the newest restore drill (total: restore+startup+replay, the measured RTO).", Label: "phase", LabelValues: drillPhases},
			{Name: "restore_drill_recovered_timestamp_seconds", Help: "Commit time of the last transaction the newest successful restore drill recovered, as a Unix timestamp."},
		},
		Run: func(_ context.Context, t Target) Result {
			last, lastOK, err := readDrills(filepath.Join(t.Directories().Backup, "drills"))
			if err != nil {
				return Unknownf("cannot read the drill records: %v", err)
			}
			r := drillVerdict(last, lastOK, t.Config().LastDrillMaximumAge, t.Now())
			r.Values = drillValues(last, lastOK)
			return r
		},
	}
}
