package checks

import (
	"context"
	"fmt"
	"strings"
)

func probeBackupMaximumAge() Probe {
	return Probe{
		Name: "backup maximum age", Key: "backup_maximum_age", Group: "backups", Critical: false,
		Gauges: []Gauge{
			{Name: "backup_last_success_timestamp_seconds", Help: "End time of the newest available (WAITING_FOR_WALS or DONE) backup, as a Unix timestamp."},
			{Name: "recovery_window_seconds", Help: "Seconds from the end of the oldest available backup (the oldest recoverable point) to the newest archived WAL or backup end."},
		},
		Run: func(ctx context.Context, t Target) Result {
			backups, err := t.Backups(ctx)
			if err != nil {
				return Unknownf("cannot read the backup catalog: %v", err)
			}
			last := LastAvailable(backups)
			values := map[string]float64{}
			if last != nil && !last.EndTime.IsZero() {
				values["backup_last_success_timestamp_seconds"] = unixSeconds(last.EndTime)
			}
			if oldest := OldestAvailable(backups); oldest != nil && !oldest.EndTime.IsZero() {
				newest := last.EndTime
				if s, err := Summary(ctx, t); err == nil && s.LastTime.After(newest) {
					newest = s.LastTime
				}
				values["recovery_window_seconds"] = max(0, newest.Sub(oldest.EndTime).Seconds())
			}
			limit := t.Config().LastBackupMaximumAge
			var r Result
			switch {
			case limit <= 0:
				r = Pass("no last_backup_maximum_age provided")
			case last == nil || last.EndTime.IsZero():
				r = Fail(fmt.Sprintf("interval provided: %s, latest backup age: No available backups", HumanDuration(limit)))
			default:
				age := t.Now().Sub(last.EndTime)
				r = Result{
					Status: StatusFor(age <= limit),
					Hint:   fmt.Sprintf("interval provided: %s, latest backup age: %s", HumanDuration(limit), HumanDuration(age)),
					Perf:   []Perf{{Label: "backup_age", Value: seconds(age), UOM: "s", Crit: rangeUpTo(limit), Min: Float(0)}},
				}
			}
			r.Values = values
			return r
		},
	}
}

func probeBackupMinimumSize() Probe {
	return Probe{
		Name: "backup minimum size", Key: "backup_minimum_size", Group: "backups", Critical: false,
		Gauges: []Gauge{{Name: "backup_last_size_bytes", Help: "Size in bytes of the newest available backup."}},
		Run: func(ctx context.Context, t Target) Result {
			backups, err := t.Backups(ctx)
			if err != nil {
				return Unknownf("cannot read the backup catalog: %v", err)
			}
			last := LastAvailable(backups)
			if last == nil {
				return Pass("No backups available")
			}
			size := last.Size
			min := t.Config().LastBackupMinimumSize.Bytes()
			perf := Perf{Label: "backup_size", Value: float64(size), UOM: "B", Min: Float(0)}
			var r Result
			switch {
			case min <= 0:
				r = Pass(PrettySize(size))
			case size < min:
				r = Fail(fmt.Sprintf("last backup size %s < %s minimum", PrettySize(size), PrettySize(min)))
				perf.Crit = fmt.Sprintf("%d:", min)
			default:
				r = Pass(fmt.Sprintf("last backup size %s > %s minimum", PrettySize(size), PrettySize(min)))
				perf.Crit = fmt.Sprintf("%d:", min)
			}
			r.Values = map[string]float64{"backup_last_size_bytes": float64(size)}
			r.Perf = []Perf{perf}
			return r
		},
	}
}

func probeFailedBackups() Probe {
	return Probe{
		Name: "failed backups", Key: "failed_backups", Group: "backups", Critical: false,
		Gauges: []Gauge{{
			Name: "backups", Help: "Backups in the catalog, by status.",
			Label: "status", LabelValues: BackupStatuses(),
		}},
		Run: func(ctx context.Context, t Target) Result {
			backups, err := t.Backups(ctx)
			if err != nil {
				return Unknownf("cannot read the backup catalog: %v", err)
			}
			values := map[string]float64{}
			for _, s := range BackupStatuses() {
				values[SeriesKey("backups", s)] = 0
			}
			failed := 0
			var deleting []string
			for _, b := range backups {
				values[SeriesKey("backups", b.Status)]++
				switch b.Status {
				case StatusFailed:
					failed++
				case StatusDeleting:
					deleting = append(deleting, b.ID)
				}
			}
			hint := fmt.Sprintf("there are %d failed backups", failed)
			if len(deleting) > 0 {
				hint += fmt.Sprintf(", %d being deleted (%s)", len(deleting), strings.Join(deleting, ", "))
			}
			r := Result{Status: StatusFor(failed == 0), Hint: hint, Values: values}
			r.Perf = []Perf{{Label: "failed_backups", Value: float64(failed), Crit: "0", Min: Float(0)}}
			return r
		},
	}
}

func probeMinimumRedundancy() Probe {
	return Probe{
		Name: "minimum redundancy requirements", Key: "minimum_redundancy_requirements", Group: "backups", Critical: false,
		Run: func(ctx context.Context, t Target) Result {
			backups, err := t.Backups(ctx)
			if err != nil {
				return Unknownf("cannot read the backup catalog: %v", err)
			}
			n := 0
			for _, b := range backups {
				if b.Status == StatusDone && b.ParentID == "" {
					n++
				}
			}
			want := t.Config().MinimumRedundancy
			r := Result{
				Status: StatusFor(n >= want),
				Hint:   fmt.Sprintf("have %d non-incremental backups, expected at least %d", n, want),
			}
			r.Perf = []Perf{{Label: "redundancy", Value: float64(n), Crit: fmt.Sprintf("%d:", want), Min: Float(0)}}
			return r
		},
	}
}
