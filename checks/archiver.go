package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// probeWALArchive: OK once xlog.db is non-empty or a backup waits for its
// WALs. Unlike Barman, nothing is archived or switched to make it pass.
func probeWALArchive() Probe {
	return Probe{
		Name: "WAL archive", Key: "wal_archive", Group: "archive", Critical: true, FailureOnly: true,
		Run: func(ctx context.Context, t Target) Result {
			fi, err := os.Stat(t.Directories().XLogDB)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Unknownf("cannot read %s: %v", t.Directories().XLogDB, err)
			}
			if err == nil && fi.Size() > 0 {
				return Pass("")
			}
			backups, err := t.Backups(ctx)
			if err != nil {
				return Unknownf("cannot read the backup catalog: %v", err)
			}
			for _, b := range backups {
				if b.Status == StatusWaitingForWALs {
					return Pass("")
				}
			}
			return Fail("please make sure WAL shipping is setup")
		},
	}
}

func probeWALMaximumAge() Probe {
	return Probe{
		Name: "wal maximum age", Key: "wal_maximum_age", Group: "wals", Critical: false,
		Gauges: []Gauge{{
			Name: "wal_archived_last_timestamp_seconds",
			Help: "Original modification time of the newest WAL file in the archive (xlog.db), as a Unix timestamp.",
		}},
		Run: func(ctx context.Context, t Target) Result {
			s, err := Summary(ctx, t)
			if err != nil {
				return Unknownf("cannot read the WAL catalog: %v", err)
			}
			var values map[string]float64
			if !s.LastTime.IsZero() {
				values = map[string]float64{"wal_archived_last_timestamp_seconds": unixSeconds(s.LastTime)}
			}
			limit := t.Config().LastWALMaximumAge
			var r Result
			switch {
			case limit <= 0:
				r = Pass("no last_wal_maximum_age provided")
			case s.LastSinceBackupTime.IsZero():
				r = Fail("No WAL files archived for last backup")
			default:
				age := t.Now().Sub(s.LastSinceBackupTime)
				r = Result{
					Status: StatusFor(age <= limit),
					Hint:   fmt.Sprintf("interval provided: %s, latest wal age: %s", HumanDuration(limit), HumanDuration(age)),
					Perf:   []Perf{{Label: "wal_age", Value: seconds(age), UOM: "s", Crit: rangeUpTo(limit), Min: Float(0)}},
				}
			}
			r.Values = values
			return r
		},
	}
}

func probeWALSize() Probe {
	return Probe{
		Name: "wal size", Key: "wal_size", Group: "wals", Critical: true,
		Gauges: []Gauge{
			{Name: "wal_archive_size_bytes", Help: "Stored bytes of every WAL file in the archive (xlog.db)."},
			{Name: "wal_since_last_backup_bytes", Help: "Stored bytes of the WAL archived after the end of the last backup."},
			{Name: "wal_archive_gap_segments", Help: "WAL segments missing from the archive within a timeline, from the oldest available backup to the newest archived segment."},
		},
		Run: func(ctx context.Context, t Target) Result {
			s, err := Summary(ctx, t)
			if err != nil {
				return Unknownf("cannot read the WAL catalog: %v", err)
			}
			r := Pass(PrettySize(s.SinceBackupSize))
			r.Values = map[string]float64{
				"wal_archive_size_bytes":      float64(s.TotalSize),
				"wal_since_last_backup_bytes": float64(s.SinceBackupSize),
				"wal_archive_gap_segments":    float64(s.GapSegments),
			}
			r.Perf = []Perf{{Label: "wals", Value: float64(s.SinceBackupSize), UOM: "B", Min: Float(0)}}
			return r
		},
	}
}

// File archiver checks (Barman's FileWalArchiver.check): archive_mode,
// archive_command, continuous archiving; all three are skipped when
// archive_mode cannot be read.

func fileArchiver(t Target) bool { return t.Config().Archiver && notPassive(t) }

func archiverPG(ctx context.Context, t Target) (*PGStatus, bool) {
	pg, ok := pgStatus(ctx, t)
	if !ok || pg.ArchiveMode == "" {
		return nil, false
	}
	return pg, true
}

func probeArchiveMode() Probe {
	return Probe{
		Name: "archive_mode", Key: "archive_mode", Group: "archiver", Critical: true, Applies: fileArchiver,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := archiverPG(ctx, t)
			if !ok {
				return Skip()
			}
			if pg.ArchiveMode == "on" || pg.ArchiveMode == "always" {
				return Pass("")
			}
			return Fail("please set it to 'on' or 'always'")
		},
	}
}

func probeArchiveCommand() Probe {
	return Probe{
		Name: "archive_command", Key: "archive_command", Group: "archiver", Critical: true, Applies: fileArchiver,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := archiverPG(ctx, t)
			if !ok {
				return Skip()
			}
			cmd := strings.TrimSpace(pg.ArchiveCommand)
			if cmd != "" && cmd != "(disabled)" {
				return Pass("")
			}
			return Fail("please set it accordingly to documentation")
		},
	}
}

func probeContinuousArchiving() Probe {
	return Probe{
		Name: "continuous archiving", Key: "continuous_archiving", Group: "archiver", Critical: true, Applies: fileArchiver,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := archiverPG(ctx, t)
			if !ok {
				return Skip()
			}
			if pg.Archiver.IsArchiving {
				return Pass("")
			}
			r := Fail("")
			if pg.Archiver.LastFailedWAL != "" {
				r.Detail = fmt.Sprintf("last failed WAL %s at %s", pg.Archiver.LastFailedWAL, pg.Archiver.LastFailedTime.UTC().Format(time.RFC3339))
			}
			return r
		},
	}
}

// Error kinds of files in errors/, by suffix, with Barman's hint wording.
var errorKinds = [...]struct{ suffix, key, label string }{
	{".duplicate", "duplicate", "duplicates"},
	{".unknown", "unknown", "unknown"},
	{".error", "not_relevant", "not relevant"},
	{"", "unknown_failure", "unknown failure"},
}

func probeArchiverErrors() Probe {
	kinds := make([]string, len(errorKinds))
	for i, k := range errorKinds {
		kinds[i] = k.key
	}
	return Probe{
		Name: "archiver errors", Key: "archiver_errors", Group: "errors", Critical: false,
		Gauges: []Gauge{{
			Name: "archiver_errors", Help: "Files in the server's errors/ directory, by kind.",
			Label: "kind", LabelValues: kinds,
		}},
		Run: func(_ context.Context, t Target) Result {
			dir := t.Directories().Errors
			entries, err := os.ReadDir(dir)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Unknownf("cannot read %s: %v", dir, err)
			}
			counts := make([]int, len(errorKinds))
			total := 0
			for _, e := range entries {
				if e.IsDir() {
					continue
				}
				total++
				for i, k := range errorKinds {
					if k.suffix == "" || strings.HasSuffix(e.Name(), k.suffix) {
						counts[i]++
						break
					}
				}
			}
			values := make(map[string]float64, len(errorKinds))
			var parts []string
			for i, k := range errorKinds {
				values[SeriesKey("archiver_errors", k.key)] = float64(counts[i])
				if counts[i] > 0 {
					parts = append(parts, fmt.Sprintf("%s: %d", k.label, counts[i]))
				}
			}
			r := Result{Status: StatusFor(total == 0), Hint: strings.Join(parts, ", "), Values: values}
			r.Perf = []Perf{{Label: "archiver_errors", Value: float64(total), Min: Float(0)}}
			return r
		},
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func seconds(d time.Duration) float64 {
	return float64(d.Round(time.Second) / time.Second)
}

// rangeUpTo is the Nagios range alerting above limit ("N" = outside 0..N).
func rangeUpTo(limit time.Duration) string {
	return fmt.Sprintf("%d", int64(limit/time.Second))
}
