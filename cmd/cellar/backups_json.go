package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/retention"
	"github.com/cellar-backup/cellar/server"
)

// The JSON of list-backups and show-backup uses Barman's keys and value
// types, so that tools written for `barman -f json` read Cellar's: sizes
// in bytes are numbers, times are Python's str(datetime) with a
// `_timestamp` twin that Barman writes as a string of epoch seconds.
// Keys Barman 3.13+ added (backup_name, backup_type, server_information)
// come on top.

// copyDone reports whether a backup's files are complete (Barman's
// STATUS_COPY_DONE).
func copyDone(b *catalog.BackupInfo) bool {
	return b.Status == catalog.StatusDone || b.Status == catalog.StatusWaitingForWALs
}

// retentionLabels maps backup ids to their retention label, or is nil
// when no policy is enforced (Barman then prints "-" in list-backups and
// "not enforced" in show-backup).
func retentionLabels(s *server.Server) map[string]string {
	p, ds, err := s.RetentionStatus()
	if err != nil || p.Kind == retention.None {
		return nil
	}
	out := make(map[string]string, len(ds))
	for _, d := range ds {
		out[d.ID] = string(d.Label)
	}
	return out
}

func epochString(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func listBackupJSON(b *catalog.BackupInfo, st *server.WALStats, label string) map[string]any {
	row := map[string]any{"backup_id": b.ID, "status": string(b.Status), "backup_type": b.BackupType()}
	if b.BackupName != "" {
		row["backup_name"] = b.BackupName
	}
	if !copyDone(b) {
		return row
	}
	if label == "" {
		label = string(retention.LabelNone)
	}
	size := i64(b.Size) + st.Size
	row["end_time"] = b.EndTime.Local().Format(ctimeLayout)
	row["end_time_timestamp"] = epochString(b.EndTime)
	row["size"], row["size_bytes"] = prettySize(size), size
	row["wal_size"], row["wal_size_bytes"] = prettySize(st.UntilNextSize), st.UntilNextSize
	row["retention_status"] = label
	ts := []map[string]any{}
	for _, sp := range b.Tablespaces {
		ts = append(ts, map[string]any{"name": sp.Name, "location": sp.Location})
	}
	row["tablespaces"] = ts
	return row
}

func showBackupJSON(s *server.Server, b *catalog.BackupInfo, st *server.WALStats, label string) map[string]any {
	m := map[string]any{
		"backup_id": b.ID, "status": string(b.Status), "server_name": s.Name(),
		"backup_type": b.BackupType(),
	}
	if b.BackupName != "" {
		m["backup_name"] = b.BackupName
	}
	if !copyDone(b) {
		if b.Error != "" {
			m["error"] = b.Error
		}
		return m
	}
	m["postgresql_version"] = b.Version
	m["pgdata_directory"] = b.PGData
	ts := []map[string]any{}
	for _, sp := range b.Tablespaces {
		ts = append(ts, map[string]any{"name": sp.Name, "location": sp.Location, "oid": sp.OID})
	}
	m["tablespaces"] = ts
	m["server_information"] = map[string]any{"data_checksums": b.DataChecksums, "system_id": b.SystemID}
	m["base_backup_information"] = baseBackupJSON(b, st)
	m["wal_information"] = walInformationJSON(b, st)
	m["catalog_information"] = catalogInformationJSON(s, b, label)
	return m
}

func baseBackupJSON(b *catalog.BackupInfo, st *server.WALStats) map[string]any {
	size := i64(b.Size)
	bb := map[string]any{
		"backup_method":              b.Mode,
		"disk_usage":                 prettySize(size),
		"disk_usage_bytes":           size,
		"disk_usage_with_wals":       prettySize(size + st.Size),
		"disk_usage_with_wals_bytes": size + st.Size,
		"timeline":                   b.Timeline,
		"begin_wal":                  b.BeginWAL,
		"end_wal":                    b.EndWAL,
		"wal_num":                    st.Num,
		"begin_time":                 catalog.FormatPyTime(b.BeginTime),
		"begin_time_timestamp":       epochString(b.BeginTime),
		"end_time":                   catalog.FormatPyTime(b.EndTime),
		"end_time_timestamp":         epochString(b.EndTime),
		"begin_offset":               i64(b.BeginOffset),
		"end_offset":                 i64(b.EndOffset),
		"begin_lsn":                  b.BeginXLog,
		"end_lsn":                    b.EndXLog,
	}
	if b.DeduplicatedSize != nil && size > 0 {
		dedup := *b.DeduplicatedSize
		bb["incremental_size"], bb["incremental_size_bytes"] = prettySize(dedup), dedup
		bb["incremental_size_ratio"] = fmt.Sprintf("-%.2f%%", (1-float64(dedup)/float64(size))*100)
	}
	addCopyStats(bb, b)
	return bb
}

// addCopyStats adds the copy time and throughput, when the backup
// recorded how long its copy took.
func addCopyStats(bb map[string]any, b *catalog.BackupInfo) {
	copyTime := b.CopyStats["copy_time"]
	if copyTime <= 0 {
		return
	}
	analysis := b.CopyStats["analysis_time"]
	size := i64(b.DeduplicatedSize)
	if size == 0 {
		size = i64(b.Size)
	}
	workers, ok := b.CopyStats["number_of_workers"]
	if !ok {
		workers = 1
	}
	bb["copy_time"], bb["copy_time_seconds"] = humanDuration(copyTime), copyTime
	bb["analysis_time"], bb["analysis_time_seconds"] = humanDuration(analysis), analysis
	bb["throughput"] = prettySize(int64(float64(size)/copyTime)) + "/s"
	bb["throughput_bytes"] = float64(size) / copyTime
	bb["number_of_workers"] = int64(workers)
}

// humanDuration spells seconds as Barman does: "1 hour, 2 minutes, 3
// seconds", or "less than one second".
func humanDuration(sec float64) string {
	total := int64(math.Abs(sec))
	parts := []struct {
		n    int64
		unit string
	}{{total / 86400, "day"}, {total % 86400 / 3600, "hour"}, {total % 3600 / 60, "minute"}, {total % 60, "second"}}
	var out []string
	for _, p := range parts {
		switch {
		case p.n == 1:
			out = append(out, "1 "+p.unit)
		case p.n > 1:
			out = append(out, fmt.Sprintf("%d %ss", p.n, p.unit))
		}
	}
	if len(out) == 0 {
		return "less than one second"
	}
	return strings.Join(out, ", ")
}

func walInformationJSON(b *catalog.BackupInfo, st *server.WALStats) map[string]any {
	w := map[string]any{
		"no_of_files":         st.UntilNextNum,
		"disk_usage":          prettySize(st.UntilNextSize),
		"disk_usage_bytes":    st.UntilNextSize,
		"wal_rate":            0,
		"wal_rate_per_second": 0,
		"compression_ratio":   0,
		"last_available":      st.LastWAL,
		"timelines":           []string{},
	}
	if d := st.LastWALTime.Sub(b.EndTime).Seconds(); st.UntilNextNum > 0 && d > 0 {
		perSecond := float64(st.UntilNextNum) / d
		w["wal_rate"] = fmt.Sprintf("%0.2f/hour", perSecond*3600)
		w["wal_rate_per_second"] = perSecond
	}
	return w
}

func catalogInformationJSON(s *server.Server, b *catalog.BackupInfo, label string) map[string]any {
	if label == "" {
		label = "not enforced"
	}
	c := map[string]any{
		"retention_policy": label,
		"previous_backup":  "- (this is the oldest base backup)",
		"next_backup":      "- (this is the latest base backup)",
	}
	if prev, _ := s.Catalog().Previous(b.ID); prev != nil {
		c["previous_backup"] = prev.ID
	}
	if next, _ := s.Catalog().Next(b.ID); next != nil {
		c["next_backup"] = next.ID
	}
	if keep, _ := s.Catalog().Keep(b.ID); keep != "" {
		c["keep"] = keep
	}
	return c
}
