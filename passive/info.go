// Package passive implements Barman's passive node: a second Cellar that
// keeps a copy of a primary Cellar's backups and WAL archive, pulled over
// an ssh command (BARMAN-FACTS §11). The primary side answers sync-info and
// streams tar archives of backups and WAL files; the passive side keeps
// primary.info, sync-wals.info and copies what is missing.
package passive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// ErrInvalidInfo is wrapped by every sync-info / primary.info parse error.
var ErrInvalidInfo = errors.New("invalid sync-info document")

// ErrWALOutOfRange reports a sync-info request whose last WAL is older than
// everything left in the primary's xlog.db: the passive node has fallen
// behind the primary's retention and must restart from scratch.
var ErrWALOutOfRange = errors.New("last WAL is not in the primary's xlog.db")

// Info is the sync-info document (Barman's sync_status output, stored on the
// passive node as primary.info).
type Info struct {
	// Backups maps backup id to its backup.info; only DONE backups.
	Backups map[string]*catalog.BackupInfo
	// WALs are the xlog.db entries after the requested position.
	WALs []catalog.WALInfo
	// Version is the primary's program version.
	Version string
	// Config is the primary server's configuration subset (always has
	// "name"; "compression" when WAL compression is configured).
	Config map[string]any
	// LastPosition is the byte offset of the start of the last xlog.db line
	// read (the line of LastName); LastName is "" when xlog.db is empty.
	LastPosition int64
	LastName     string
}

// SyncInfo builds the sync-info document of the server at layout (the
// primary side). WAL entries are read from byte lastPosition of xlog.db when
// the line there is lastWAL's, otherwise from the start; entries up to
// lastWAL are skipped, and with no lastWAL those older than the first
// backup's begin_wal (history files are always kept: they are tiny and
// recovery needs them).
func SyncInfo(ctx context.Context, layout catalog.Layout, lastWAL string, lastPosition int64) (*Info, error) {
	cat := catalog.Open(layout)
	all, err := cat.Backups()
	if err != nil && len(all) == 0 {
		// A partial read is fine: unreadable backups are just not offered.
		if _, serr := os.Stat(layout.BackupDir); serr != nil {
			return nil, fmt.Errorf("server %s: sync-info: %w", layout.Server, err)
		}
	}
	info := &Info{
		Backups: map[string]*catalog.BackupInfo{},
		Config: map[string]any{
			"name":                  layout.Server,
			"backup_directory":      layout.BackupDir,
			"basebackups_directory": layout.BaseDir,
			"wals_directory":        layout.WalsDir,
		},
	}
	firstBegin := ""
	for _, b := range all {
		if b.Status != catalog.StatusDone {
			continue
		}
		info.Backups[b.ID] = b
		if firstBegin == "" {
			firstBegin = b.BeginWAL
		}
	}

	x := catalog.OpenXLogDB(layout)
	start := int64(0)
	if lastWAL != "" && lastPosition > 0 {
		if ok, err := lineStartsWith(x.Path(), lastPosition, lastWAL); err != nil {
			return nil, fmt.Errorf("server %s: sync-info: %w", layout.Server, err)
		} else if ok {
			start = lastPosition
		}
	}
	entries, err := x.ReadFrom(ctx, start)
	if err != nil {
		return nil, fmt.Errorf("server %s: sync-info: %w", layout.Server, err)
	}
	if start == 0 && lastWAL != "" && len(entries) > 0 && isSegmentLike(lastWAL) {
		// Barman refuses a last WAL that retention has already removed:
		// the passive would silently miss everything in between.
		first := ""
		for _, e := range entries {
			if isSegmentLike(e.Name) {
				first = e.Name
				break
			}
		}
		if first != "" && segmentPart(first) > segmentPart(lastWAL) {
			return nil, fmt.Errorf("server %s: sync-info: %s older than first WAL %s: %w", layout.Server, lastWAL, first, ErrWALOutOfRange)
		}
	}
	info.LastPosition = start
	if start > 0 {
		info.LastName = lastWAL
	}
	for _, e := range entries {
		info.LastPosition = e.Offset
		info.LastName = e.Name
		switch {
		case lastWAL != "" && e.Name <= lastWAL:
			continue
		case lastWAL == "" && firstBegin != "" && isSegmentLike(e.Name) && segmentPart(e.Name) < firstBegin:
			continue
		}
		info.WALs = append(info.WALs, e.WALInfo)
	}
	return info, nil
}

// lineStartsWith reports whether the xlog.db line at offset begins with
// name (Barman compares the 24 bytes there with the last WAL).
func lineStartsWith(path string, offset int64, name string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("xlog.db %s: %w", path, err)
	}
	defer f.Close()
	if offset > 0 {
		var prev [1]byte
		if _, err := f.ReadAt(prev[:], offset-1); err != nil || prev[0] != '\n' {
			return false, nil
		}
	}
	buf := make([]byte, len(name)+1)
	n, _ := f.ReadAt(buf, offset)
	return n == len(buf) && string(buf[:len(name)]) == name && (buf[len(name)] == '\t' || buf[len(name)] == ' '), nil
}

// isSegmentLike reports whether name is a segment, .partial or .backup file
// (something with a 24-hex-digit segment prefix), as opposed to a history
// file.
func isSegmentLike(name string) bool {
	n, err := wal.ParseName(name)
	return err == nil && n.Kind != wal.KindHistory
}

// segmentPart is the 24-character segment name of a segment-like file.
func segmentPart(name string) string {
	if len(name) >= 24 {
		return name[:24]
	}
	return name
}

// MarshalJSON renders the document with Barman's field names.
func (in *Info) MarshalJSON() ([]byte, error) {
	backups := make(map[string]any, len(in.Backups))
	for id, b := range in.Backups {
		backups[id] = BackupInfoJSON(id, b)
	}
	wals := make([]any, 0, len(in.WALs))
	for _, w := range in.WALs {
		wals = append(wals, map[string]any{
			"name":        w.Name,
			"size":        w.Size,
			"time":        w.Time,
			"compression": nullIfEmpty(w.Compression),
			"encryption":  nullIfEmpty(w.Encryption),
		})
	}
	cfg := in.Config
	if cfg == nil {
		cfg = map[string]any{}
	}
	doc := map[string]any{
		"backups":       backups,
		"wals":          wals,
		"version":       in.Version,
		"config":        cfg,
		"last_position": nil,
		"last_name":     nil,
	}
	if in.LastName != "" {
		doc["last_position"] = in.LastPosition
		doc["last_name"] = in.LastName
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// ctimeLayout is Python's datetime.ctime().
const ctimeLayout = "Mon Jan _2 15:04:05 2006"

// isoTime is Python's datetime.isoformat() of an aware datetime.
func isoTime(t time.Time) string {
	s := catalog.FormatPyTime(t)
	return strings.Replace(s, " ", "T", 1)
}

// BackupInfoJSON is the JSON object Barman's BackupInfo.to_json produces:
// every backup.info field (null for None), backup_id and backup_type, times
// as ctime() strings plus *_iso fields, tablespaces as [name, oid, location]
// lists. snapshots_info is passed as its raw text (Cellar never creates
// snapshot backups).
func BackupInfoJSON(id string, b *catalog.BackupInfo) map[string]any {
	str := nullIfEmpty
	i64 := func(p *int64) any {
		if p == nil {
			return nil
		}
		return *p
	}
	nz := func(v int64) any {
		if v == 0 {
			return nil
		}
		return v
	}
	m := map[string]any{
		"backup_id":           id,
		"backup_type":         b.BackupType(),
		"backup_label":        str(b.BackupLabel),
		"backup_name":         str(b.BackupName),
		"begin_offset":        i64(b.BeginOffset),
		"begin_time":          nil,
		"begin_wal":           str(b.BeginWAL),
		"begin_xlog":          str(b.BeginXLog),
		"children_backup_ids": nil,
		"cluster_size":        i64(b.ClusterSize),
		"compression":         str(b.Compression),
		"config_file":         str(b.ConfigFile),
		"copy_stats":          nil,
		"data_checksums":      str(b.DataChecksums),
		"deduplicated_size":   i64(b.DeduplicatedSize),
		"encryption":          str(b.Encryption),
		"end_offset":          i64(b.EndOffset),
		"end_time":            nil,
		"end_wal":             str(b.EndWAL),
		"end_xlog":            str(b.EndXLog),
		"error":               str(b.Error),
		"hba_file":            str(b.HBAFile),
		"ident_file":          str(b.IdentFile),
		"included_files":      nil,
		"mode":                str(b.Mode),
		"parent_backup_id":    str(b.ParentBackupID),
		"pgdata":              str(b.PGData),
		"server_name":         str(b.ServerName),
		"size":                i64(b.Size),
		"snapshots_info":      str(b.SnapshotsInfo),
		"status":              string(b.Status),
		"summarize_wal":       str(b.SummarizeWAL),
		"systemid":            str(b.SystemID),
		"tablespaces":         nil,
		"timeline":            nz(b.Timeline),
		"version":             nz(b.Version),
		"xlog_segment_size":   nz(b.XLogSegmentSize),
	}
	if !b.BeginTime.IsZero() {
		m["begin_time"] = b.BeginTime.Format(ctimeLayout)
		m["begin_time_iso"] = isoTime(b.BeginTime)
	}
	if !b.EndTime.IsZero() {
		m["end_time"] = b.EndTime.Format(ctimeLayout)
		m["end_time_iso"] = isoTime(b.EndTime)
	}
	if len(b.ChildrenBackupIDs) > 0 {
		m["children_backup_ids"] = b.ChildrenBackupIDs
	}
	if len(b.CopyStats) > 0 {
		m["copy_stats"] = b.CopyStats
	}
	if len(b.IncludedFiles) > 0 {
		m["included_files"] = b.IncludedFiles
	}
	if len(b.Tablespaces) > 0 {
		ts := make([]any, 0, len(b.Tablespaces))
		for _, t := range b.Tablespaces {
			ts = append(ts, []any{t.Name, t.OID, t.Location})
		}
		m["tablespaces"] = ts
	}
	return m
}

// ParseInfo decodes a sync-info document (primary.info).
func ParseInfo(data []byte) (*Info, error) {
	var raw struct {
		Backups      map[string]map[string]json.RawMessage `json:"backups"`
		WALs         []json.RawMessage                     `json:"wals"`
		Version      any                                   `json:"version"`
		Config       map[string]any                        `json:"config"`
		LastPosition *json.Number                          `json:"last_position"`
		LastName     *string                               `json:"last_name"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInfo, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidInfo)
	}
	in := &Info{Backups: map[string]*catalog.BackupInfo{}, Config: raw.Config}
	if in.Config == nil {
		in.Config = map[string]any{}
	}
	if raw.Version != nil {
		in.Version = fmt.Sprint(raw.Version)
	}
	if raw.LastName != nil {
		in.LastName = *raw.LastName
	}
	if raw.LastPosition != nil {
		n, err := raw.LastPosition.Int64()
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: bad last_position %q", ErrInvalidInfo, raw.LastPosition.String())
		}
		in.LastPosition = n
	}
	for id, fields := range raw.Backups {
		if !catalog.IsBackupID(id) {
			return nil, fmt.Errorf("%w: bad backup id %q", ErrInvalidInfo, id)
		}
		b, err := backupInfoFromJSON(id, fields)
		if err != nil {
			return nil, fmt.Errorf("%w: backup %s: %v", ErrInvalidInfo, id, err)
		}
		in.Backups[id] = b
	}
	for i, r := range raw.WALs {
		w, err := walFromJSON(r)
		if err != nil {
			return nil, fmt.Errorf("%w: wals[%d]: %v", ErrInvalidInfo, i, err)
		}
		in.WALs = append(in.WALs, w)
	}
	return in, nil
}

func walFromJSON(r json.RawMessage) (catalog.WALInfo, error) {
	var v struct {
		Name        string      `json:"name"`
		Size        json.Number `json:"size"`
		Time        json.Number `json:"time"`
		Compression *string     `json:"compression"`
		Encryption  *string     `json:"encryption"`
	}
	if err := json.Unmarshal(r, &v); err != nil {
		return catalog.WALInfo{}, err
	}
	if _, err := wal.ParseName(v.Name); err != nil {
		return catalog.WALInfo{}, fmt.Errorf("bad WAL name %q", v.Name)
	}
	size, err := v.Size.Int64()
	if err != nil || size < 0 {
		return catalog.WALInfo{}, fmt.Errorf("%s: bad size %q", v.Name, v.Size)
	}
	t, err := v.Time.Float64()
	if err != nil || math.IsNaN(t) || math.IsInf(t, 0) {
		return catalog.WALInfo{}, fmt.Errorf("%s: bad time %q", v.Name, v.Time)
	}
	w := catalog.WALInfo{Name: v.Name, Size: size, Time: t}
	if v.Compression != nil && *v.Compression != "None" {
		w.Compression = *v.Compression
	}
	if v.Encryption != nil && *v.Encryption != "None" {
		w.Encryption = *v.Encryption
	}
	if strings.ContainsFunc(w.Compression+w.Encryption, func(r rune) bool { return r <= ' ' || r == 0x85 || r == 0xa0 }) {
		return catalog.WALInfo{}, fmt.Errorf("%s: bad compression/encryption", v.Name)
	}
	return w, nil
}

// backupInfoFromJSON rebuilds a BackupInfo from its JSON form. Times come
// from *_iso when present (ctime() loses the zone and microseconds).
func backupInfoFromJSON(id string, f map[string]json.RawMessage) (*catalog.BackupInfo, error) {
	b := catalog.NewBackupInfo(id)
	var err error
	get := func(key string, dst any) {
		r, ok := f[key]
		if !ok || err != nil || string(r) == "null" {
			return
		}
		if e := json.Unmarshal(r, dst); e != nil {
			err = fmt.Errorf("field %s: %v", key, e)
		}
	}
	ptr := func(key string) *int64 {
		var v *int64
		get(key, &v)
		return v
	}
	var status string
	get("backup_label", &b.BackupLabel)
	get("backup_name", &b.BackupName)
	b.BeginOffset = ptr("begin_offset")
	get("begin_wal", &b.BeginWAL)
	get("begin_xlog", &b.BeginXLog)
	get("children_backup_ids", &b.ChildrenBackupIDs)
	b.ClusterSize = ptr("cluster_size")
	get("compression", &b.Compression)
	get("config_file", &b.ConfigFile)
	get("copy_stats", &b.CopyStats)
	get("data_checksums", &b.DataChecksums)
	b.DeduplicatedSize = ptr("deduplicated_size")
	get("encryption", &b.Encryption)
	b.EndOffset = ptr("end_offset")
	get("end_wal", &b.EndWAL)
	get("end_xlog", &b.EndXLog)
	get("error", &b.Error)
	get("hba_file", &b.HBAFile)
	get("ident_file", &b.IdentFile)
	get("included_files", &b.IncludedFiles)
	get("mode", &b.Mode)
	get("parent_backup_id", &b.ParentBackupID)
	get("pgdata", &b.PGData)
	get("server_name", &b.ServerName)
	b.Size = ptr("size")
	get("snapshots_info", &b.SnapshotsInfo)
	get("status", &status)
	get("summarize_wal", &b.SummarizeWAL)
	get("systemid", &b.SystemID)
	get("timeline", &b.Timeline)
	get("version", &b.Version)
	get("xlog_segment_size", &b.XLogSegmentSize)
	var ts [][]json.RawMessage
	get("tablespaces", &ts)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		var tb catalog.Tablespace
		if len(t) != 3 || json.Unmarshal(t[0], &tb.Name) != nil || json.Unmarshal(t[1], &tb.OID) != nil || json.Unmarshal(t[2], &tb.Location) != nil {
			return nil, fmt.Errorf("field tablespaces: expected [name, oid, location]")
		}
		b.Tablespaces = append(b.Tablespaces, tb)
	}
	if status != "" {
		b.Status = catalog.Status(status)
		if !b.Status.Valid() {
			return nil, fmt.Errorf("unknown status %q", status)
		}
	}
	for _, k := range []string{"begin_time", "end_time"} {
		t, terr := jsonTime(f, k)
		if terr != nil {
			return nil, terr
		}
		if k == "begin_time" {
			b.BeginTime = t
		} else {
			b.EndTime = t
		}
	}
	// Round-trip through the backup.info text so that values which would
	// not read back (newlines, bad literals) are refused here.
	if _, perr := catalog.ParseBackupInfo(b.Marshal(), "sync-info"); perr != nil {
		return nil, perr
	}
	return b, nil
}

func jsonTime(f map[string]json.RawMessage, key string) (time.Time, error) {
	var s string
	if r, ok := f[key+"_iso"]; ok && string(r) != "null" {
		if err := json.Unmarshal(r, &s); err != nil {
			return time.Time{}, fmt.Errorf("field %s_iso: %v", key, err)
		}
		t, err := catalog.ParsePyTime(s, time.Local)
		if err != nil {
			return time.Time{}, fmt.Errorf("field %s_iso: %v", key, err)
		}
		return t, nil
	}
	r, ok := f[key]
	if !ok || string(r) == "null" {
		return time.Time{}, nil
	}
	if err := json.Unmarshal(r, &s); err != nil {
		return time.Time{}, fmt.Errorf("field %s: %v", key, err)
	}
	if t, err := time.ParseInLocation(ctimeLayout, s, time.Local); err == nil {
		return t, nil
	}
	t, err := catalog.ParsePyTime(s, time.Local)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %s: %v", key, err)
	}
	return t, nil
}

// BackupIDs returns the primary's backup ids, oldest first.
func (in *Info) BackupIDs() []string {
	ids := make([]string, 0, len(in.Backups))
	for id := range in.Backups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Compression returns the primary's configured WAL compression ("" when
// none or unknown).
func (in *Info) Compression() string {
	if c, ok := in.Config["compression"].(string); ok && c != "none" && c != "None" {
		return c
	}
	return ""
}
