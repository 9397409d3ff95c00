package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cellar-backup/cellar/internal/durable"
)

// Status is a backup's lifecycle state as stored in backup.info.
type Status string

// BackupStatus is an alias kept for readers who know Barman's naming.
type BackupStatus = Status

// Backup statuses (BARMAN-FACTS §2.4, §11).
const (
	StatusEmpty          Status = "EMPTY"
	StatusStarted        Status = "STARTED"
	StatusWaitingForWALs Status = "WAITING_FOR_WALS"
	StatusDone           Status = "DONE"
	StatusFailed         Status = "FAILED"
	StatusSyncing        Status = "SYNCING"
)

// AllStatuses lists every status in Barman's STATUS_ALL order.
func AllStatuses() []Status {
	return []Status{StatusEmpty, StatusStarted, StatusWaitingForWALs, StatusDone, StatusSyncing, StatusFailed}
}

// DefaultAvailable is the default "available" filter (copy done).
func DefaultAvailable() []Status { return []Status{StatusWaitingForWALs, StatusDone} }

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool { return slices.Contains(AllStatuses(), s) }

// CanTransition reports whether a backup may move from one status to
// another. Saving a backup in the same status is always allowed. FAILED
// may become SYNCING again because a passive node re-copies a backup that
// failed locally.
func CanTransition(from, to Status) bool {
	if from == to {
		return true
	}
	switch from {
	case StatusEmpty:
		return to == StatusStarted || to == StatusFailed || to == StatusSyncing
	case StatusStarted:
		return to == StatusWaitingForWALs || to == StatusFailed
	case StatusWaitingForWALs:
		return to == StatusDone || to == StatusFailed
	case StatusSyncing:
		return to == StatusDone || to == StatusFailed
	case StatusFailed:
		return to == StatusSyncing
	}
	return false
}

// StatusDeleting is never stored: the catalog shows it, in place of the
// stored status, for a backup that carries a delete_this marker (a delete
// that was interrupted and will be finished). Such a backup is not
// available for recovery and is never chosen by a shortcut.
const StatusDeleting Status = "DELETING"

// StatusUnreadable is never stored either: list-backups shows it for a
// backup whose backup.info cannot be read or parsed.
const StatusUnreadable Status = "UNREADABLE"

// parseStatus accepts only the statuses Barman writes: a file with any
// other value (a torn or hand-edited line) tells nothing reliable about
// the backup.
func parseStatus(b *BackupInfo, v string) error {
	s := Status(v)
	if !s.Valid() {
		return fmt.Errorf("unknown status %q", v)
	}
	b.Status, b.stored = s, s
	return nil
}

// Deleting reports whether the catalog found a delete_this marker for the
// backup (Status is then StatusDeleting).
func (b *BackupInfo) Deleting() bool { return b.Status == StatusDeleting }

// StoredStatus is the status written in backup.info: for a DELETING backup
// the status it had when its deletion started.
func (b *BackupInfo) StoredStatus() Status {
	if b.Status == StatusDeleting {
		return b.stored
	}
	return b.Status
}

// markDeleting shows b as DELETING while keeping its stored status.
func (b *BackupInfo) markDeleting() {
	if b.Status != StatusDeleting {
		b.stored, b.Status = b.Status, StatusDeleting
	}
}

// DefaultXLogSegmentSize is backup.info's default xlog_segment_size.
const DefaultXLogSegmentSize = 16 << 20

// Tablespace is one entry of backup.info's tablespaces list.
type Tablespace struct {
	Name     string
	OID      uint32
	Location string
}

// BackupInfo is the content of one backup.info file. Null ("None") is the
// zero value for strings, slices, maps and times, and nil for the *int64
// fields whose zero is a meaningful value. Timeline, Version and
// XLogSegmentSize use 0 for None because 0 is never valid for them.
//
// Values read from a file are remembered verbatim, so that Marshal writes
// an unchanged field back byte for byte even where Barman's Python repr is
// not canonical (dict order, nested copy_stats, naive times, ...).
type BackupInfo struct {
	// ID is the backup id; it is not a field of the file but comes from its
	// path (meta/<id>-backup.info or base/<id>/backup.info).
	ID string

	BackupLabel       string // Python str literal decoded; "" = None
	BackupName        string // omitted from the file when ""
	BeginOffset       *int64
	BeginTime         time.Time // zero = None
	BeginWAL          string
	BeginXLog         string
	ChildrenBackupIDs []string
	ClusterSize       *int64
	Compression       string
	ConfigFile        string
	CopyStats         map[string]float64 // numeric entries only; nested ones are kept verbatim while unchanged
	DataChecksums     string
	DeduplicatedSize  *int64
	Encryption        string
	EndOffset         *int64
	EndTime           time.Time // zero = None
	EndWAL            string
	EndXLog           string
	Error             string
	HBAFile           string
	IdentFile         string
	IncludedFiles     []string
	Mode              string
	ParentBackupID    string
	PGData            string
	ServerName        string
	Size              *int64
	SnapshotsInfo     string // raw Python dict literal; "" = None (omitted)
	Status            Status
	SummarizeWAL      string
	SystemID          string
	Tablespaces       []Tablespace
	Timeline          int64
	Version           int64
	XLogSegmentSize   int64

	// stored is the status as read from the file, kept while Status
	// shows StatusDeleting.
	stored Status
	raw    map[string]rawValue
}

// rawValue is a value as read from disk plus the canonical form it had
// right after parsing; Marshal reuses raw while the canonical form is
// unchanged.
type rawValue struct {
	raw, canon string
}

// NewBackupInfo returns a backup.info with Barman's defaults (status EMPTY,
// 16 MiB segments).
func NewBackupInfo(id string) *BackupInfo {
	return &BackupInfo{ID: id, Status: StatusEmpty, XLogSegmentSize: DefaultXLogSegmentSize}
}

// Int64 returns a pointer to v, for the nullable integer fields.
func Int64(v int64) *int64 { return &v }

// BackupType derives the backup type: snapshot, rsync, incremental or full.
func (b *BackupInfo) BackupType() string {
	switch {
	case strings.HasPrefix(b.Mode, "snapshot"):
		return "snapshot"
	case strings.HasPrefix(b.Mode, "rsync"):
		return "rsync"
	case b.ParentBackupID != "":
		return "incremental"
	}
	return "full"
}

// IsFull reports whether the backup can be restored on its own (full or
// rsync type), as used by the latest-full shortcut.
func (b *BackupInfo) IsFull() bool {
	t := b.BackupType()
	return t == "full" || t == "rsync"
}

// ErrInvalidBackupInfo is matched by every *InfoError.
var ErrInvalidBackupInfo = errors.New("invalid backup.info")

// InfoError reports a bad line in a backup.info file.
type InfoError struct {
	File string
	Line int
	Key  string // "" when the line has no key
	Err  error
}

func (e *InfoError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("backup.info %s line %d: key %q: %v", e.File, e.Line, e.Key, e.Err)
	}
	return fmt.Sprintf("backup.info %s line %d: %v", e.File, e.Line, e.Err)
}

func (e *InfoError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidBackupInfo) true.
func (e *InfoError) Is(target error) bool { return target == ErrInvalidBackupInfo }

// errUnknownKey is wrapped by the InfoError for a key Barman does not know.
var errUnknownKey = errors.New("unknown key")

type infoField struct {
	key        string
	hideIfNull bool
	format     func(b *BackupInfo) string // canonical value; "None" for null
	parse      func(b *BackupInfo, v string) error
	null       func(b *BackupInfo) // resets the field to None (its zero value)
}

func textField(key string, p func(b *BackupInfo) *string) infoField {
	return infoField{
		key: key,
		format: func(b *BackupInfo) string {
			if s := *p(b); s != "" {
				return s
			}
			return "None"
		},
		parse: func(b *BackupInfo, v string) error { *p(b) = v; return nil },
		null:  func(b *BackupInfo) { *p(b) = "" },
	}
}

func nullIntField(key string, p func(b *BackupInfo) **int64) infoField {
	return infoField{
		key: key,
		format: func(b *BackupInfo) string {
			if v := *p(b); v != nil {
				return strconv.FormatInt(*v, 10)
			}
			return "None"
		},
		parse: func(b *BackupInfo, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("not an integer: %q", v)
			}
			*p(b) = &n
			return nil
		},
		null: func(b *BackupInfo) { *p(b) = nil },
	}
}

func intField(key string, p func(b *BackupInfo) *int64) infoField {
	return infoField{
		key: key,
		format: func(b *BackupInfo) string {
			if v := *p(b); v != 0 {
				return strconv.FormatInt(v, 10)
			}
			return "None"
		},
		parse: func(b *BackupInfo, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("not an integer: %q", v)
			}
			*p(b) = n
			return nil
		},
		null: func(b *BackupInfo) { *p(b) = 0 },
	}
}

func timeField(key string, p func(b *BackupInfo) *time.Time) infoField {
	return infoField{
		key: key,
		format: func(b *BackupInfo) string {
			if t := *p(b); !t.IsZero() {
				return FormatPyTime(t)
			}
			return "None"
		},
		parse: func(b *BackupInfo, v string) error {
			t, err := ParsePyTime(v, time.Local)
			if err != nil {
				return err
			}
			*p(b) = t
			return nil
		},
		null: func(b *BackupInfo) { *p(b) = time.Time{} },
	}
}

// infoFields lists every backup.info key in sorted order, which is the
// order Barman writes them.
var infoFields = []infoField{
	{
		key: "backup_label",
		format: func(b *BackupInfo) string {
			if b.BackupLabel == "" {
				return "None"
			}
			return pyReprStr(b.BackupLabel)
		},
		parse: func(b *BackupInfo, v string) error {
			pv, err := parsePyLiteral(v)
			if err != nil {
				return err
			}
			if pv.kind != pyStr {
				return fmt.Errorf("expected a string literal")
			}
			b.BackupLabel = pv.s
			return nil
		},
		null: func(b *BackupInfo) { b.BackupLabel = "" },
	},
	func() infoField {
		f := textField("backup_name", func(b *BackupInfo) *string { return &b.BackupName })
		f.hideIfNull = true
		return f
	}(),
	nullIntField("begin_offset", func(b *BackupInfo) **int64 { return &b.BeginOffset }),
	timeField("begin_time", func(b *BackupInfo) *time.Time { return &b.BeginTime }),
	textField("begin_wal", func(b *BackupInfo) *string { return &b.BeginWAL }),
	textField("begin_xlog", func(b *BackupInfo) *string { return &b.BeginXLog }),
	{
		key: "children_backup_ids",
		format: func(b *BackupInfo) string {
			if len(b.ChildrenBackupIDs) == 0 {
				return "None"
			}
			return strings.Join(b.ChildrenBackupIDs, ",")
		},
		parse: func(b *BackupInfo, v string) error {
			if v != "" {
				b.ChildrenBackupIDs = strings.Split(v, ",")
			}
			return nil
		},
		null: func(b *BackupInfo) { b.ChildrenBackupIDs = nil },
	},
	nullIntField("cluster_size", func(b *BackupInfo) **int64 { return &b.ClusterSize }),
	textField("compression", func(b *BackupInfo) *string { return &b.Compression }),
	textField("config_file", func(b *BackupInfo) *string { return &b.ConfigFile }),
	{
		key:    "copy_stats",
		format: formatCopyStats,
		parse:  parseCopyStats,
		null:   func(b *BackupInfo) { b.CopyStats = nil },
	},
	textField("data_checksums", func(b *BackupInfo) *string { return &b.DataChecksums }),
	nullIntField("deduplicated_size", func(b *BackupInfo) **int64 { return &b.DeduplicatedSize }),
	textField("encryption", func(b *BackupInfo) *string { return &b.Encryption }),
	nullIntField("end_offset", func(b *BackupInfo) **int64 { return &b.EndOffset }),
	timeField("end_time", func(b *BackupInfo) *time.Time { return &b.EndTime }),
	textField("end_wal", func(b *BackupInfo) *string { return &b.EndWAL }),
	textField("end_xlog", func(b *BackupInfo) *string { return &b.EndXLog }),
	textField("error", func(b *BackupInfo) *string { return &b.Error }),
	textField("hba_file", func(b *BackupInfo) *string { return &b.HBAFile }),
	textField("ident_file", func(b *BackupInfo) *string { return &b.IdentFile }),
	{
		key: "included_files",
		format: func(b *BackupInfo) string {
			if len(b.IncludedFiles) == 0 {
				return "None"
			}
			v := pyValue{kind: pyList}
			for _, f := range b.IncludedFiles {
				v.items = append(v.items, pyValue{kind: pyStr, s: f})
			}
			return v.repr()
		},
		parse: func(b *BackupInfo, v string) error {
			pv, err := parsePyLiteral(v)
			if err != nil {
				return err
			}
			if pv.kind != pyList && pv.kind != pyTuple {
				return fmt.Errorf("expected a list literal")
			}
			var files []string
			for _, it := range pv.items {
				if it.kind != pyStr {
					return fmt.Errorf("expected a list of strings")
				}
				files = append(files, it.s)
			}
			b.IncludedFiles = files
			return nil
		},
		null: func(b *BackupInfo) { b.IncludedFiles = nil },
	},
	textField("mode", func(b *BackupInfo) *string { return &b.Mode }),
	textField("parent_backup_id", func(b *BackupInfo) *string { return &b.ParentBackupID }),
	textField("pgdata", func(b *BackupInfo) *string { return &b.PGData }),
	textField("server_name", func(b *BackupInfo) *string { return &b.ServerName }),
	nullIntField("size", func(b *BackupInfo) **int64 { return &b.Size }),
	{
		key:        "snapshots_info",
		hideIfNull: true,
		format: func(b *BackupInfo) string {
			if b.SnapshotsInfo == "" {
				return "None"
			}
			return b.SnapshotsInfo
		},
		parse: func(b *BackupInfo, v string) error {
			if _, err := parsePyLiteral(v); err != nil {
				return err
			}
			b.SnapshotsInfo = v
			return nil
		},
		null: func(b *BackupInfo) { b.SnapshotsInfo = "" },
	},
	{
		key: "status",
		format: func(b *BackupInfo) string {
			switch b.Status {
			case "":
				return "None"
			case StatusDeleting:
				// Shown, never stored: the file keeps its real status
				// so that Barman reads it unchanged.
				return string(b.stored)
			}
			return string(b.Status)
		},
		parse: parseStatus,
		null:  func(b *BackupInfo) { b.Status, b.stored = "", "" },
	},
	textField("summarize_wal", func(b *BackupInfo) *string { return &b.SummarizeWAL }),
	textField("systemid", func(b *BackupInfo) *string { return &b.SystemID }),
	{
		key:    "tablespaces",
		format: formatTablespaces,
		parse:  parseTablespaces,
		null:   func(b *BackupInfo) { b.Tablespaces = nil },
	},
	intField("timeline", func(b *BackupInfo) *int64 { return &b.Timeline }),
	intField("version", func(b *BackupInfo) *int64 { return &b.Version }),
	intField("xlog_segment_size", func(b *BackupInfo) *int64 { return &b.XLogSegmentSize }),
}

func fieldByKey(key string) (infoField, bool) {
	i, ok := slices.BinarySearchFunc(infoFields, key, func(f infoField, k string) int { return strings.Compare(f.key, k) })
	if !ok {
		return infoField{}, false
	}
	return infoFields[i], true
}

// copyStatsOrder is the key order Barman's postgres method writes.
var copyStatsOrder = []string{"copy_time", "total_time"}

func formatCopyStats(b *BackupInfo) string {
	if len(b.CopyStats) == 0 {
		return "None"
	}
	keys := make([]string, 0, len(b.CopyStats))
	for k := range b.CopyStats {
		if !slices.Contains(copyStatsOrder, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var ordered []string
	for _, k := range copyStatsOrder {
		if _, ok := b.CopyStats[k]; ok {
			ordered = append(ordered, k)
		}
	}
	ordered = append(ordered, keys...)
	v := pyValue{kind: pyDict}
	for _, k := range ordered {
		f := b.CopyStats[k]
		num := pyValue{kind: pyFloat, f: f}
		// Worker counts are Python ints.
		if k == "number_of_workers" && f == float64(int64(f)) {
			num = pyValue{kind: pyInt, i: int64(f)}
		}
		v.items = append(v.items, pyValue{kind: pyStr, s: k}, num)
	}
	return v.repr()
}

func parseCopyStats(b *BackupInfo, v string) error {
	pv, err := parsePyLiteral(v)
	if err != nil {
		return err
	}
	if pv.kind != pyDict {
		return fmt.Errorf("expected a dict literal")
	}
	m := make(map[string]float64)
	for i := 0; i+1 < len(pv.items); i += 2 {
		k, val := pv.items[i], pv.items[i+1]
		if k.kind != pyStr {
			continue
		}
		switch val.kind {
		case pyInt:
			m[k.s] = float64(val.i)
		case pyFloat:
			m[k.s] = val.f
		}
	}
	if len(m) > 0 {
		b.CopyStats = m
	}
	return nil
}

func formatTablespaces(b *BackupInfo) string {
	if len(b.Tablespaces) == 0 {
		return "None"
	}
	v := pyValue{kind: pyList}
	for _, ts := range b.Tablespaces {
		v.items = append(v.items, pyValue{kind: pyTuple, items: []pyValue{
			{kind: pyStr, s: ts.Name},
			{kind: pyInt, i: int64(ts.OID)},
			{kind: pyStr, s: ts.Location},
		}})
	}
	return v.repr()
}

func parseTablespaces(b *BackupInfo, v string) error {
	pv, err := parsePyLiteral(v)
	if err != nil {
		return err
	}
	if pv.kind != pyList && pv.kind != pyTuple {
		return fmt.Errorf("expected a list literal")
	}
	var out []Tablespace
	for _, it := range pv.items {
		if (it.kind != pyTuple && it.kind != pyList) || len(it.items) != 3 ||
			it.items[0].kind != pyStr || it.items[2].kind != pyStr {
			return fmt.Errorf("expected (name, oid, location) tuples")
		}
		var oid int64
		switch o := it.items[1]; o.kind {
		case pyInt:
			oid = o.i
		case pyStr:
			oid, err = strconv.ParseInt(o.s, 10, 64)
			if err != nil {
				return fmt.Errorf("tablespace %q: bad oid %q", it.items[0].s, o.s)
			}
		default:
			return fmt.Errorf("tablespace %q: bad oid", it.items[0].s)
		}
		if oid < 0 || oid > 0xFFFFFFFF {
			return fmt.Errorf("tablespace %q: oid %d out of range", it.items[0].s, oid)
		}
		out = append(out, Tablespace{Name: it.items[0].s, OID: uint32(oid), Location: it.items[2].s})
	}
	b.Tablespaces = out
	return nil
}

// ErrTruncatedBackupInfo is wrapped by the InfoError of a backup.info that
// lacks a required key or ends inside a line: Barman writes every file
// whole, each line ending in a newline, so such a file was cut short and
// says nothing reliable about its backup.
var ErrTruncatedBackupInfo = errors.New("truncated backup.info")

// requiredKeys are the keys every Barman version writes; the status is
// what every reader acts on, and its absence would otherwise default to
// EMPTY.
var requiredKeys = []string{"status"}

// ParseBackupInfo parses backup.info content. source names the file in
// errors. Like Barman, it skips blank and '#' lines, splits each line at
// the first '=', strips both sides, treats "None" as null and rejects
// unknown keys. Unlike Barman, it rejects a file whose last line has no
// newline, lacks a required key (status) or has an unknown status: such a
// file is truncated or damaged, and defaulting to EMPTY would let
// retention treat a real backup as nothing. Other missing keys keep their
// defaults (16 MiB segments). The ID is left empty; ReadBackupInfo fills
// it from the path.
func ParseBackupInfo(data []byte, source string) (*BackupInfo, error) {
	b, err := parseBackupInfoLines(data, source)
	if err != nil {
		return nil, err
	}
	if err := checkComplete(b, data, source); err != nil {
		return nil, err
	}
	return b, nil
}

// checkComplete rejects a parsed file that was cut short.
func checkComplete(b *BackupInfo, data []byte, source string) error {
	lines := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		return &InfoError{File: source, Line: lines + 1, Err: fmt.Errorf("%w: the last line has no newline", ErrTruncatedBackupInfo)}
	}
	for _, k := range requiredKeys {
		if _, ok := b.raw[k]; !ok {
			return &InfoError{File: source, Line: lines, Key: k, Err: fmt.Errorf("%w: required key is missing", ErrTruncatedBackupInfo)}
		}
	}
	return nil
}

func parseBackupInfoLines(data []byte, source string) (*BackupInfo, error) {
	b := NewBackupInfo("")
	b.stored = b.Status
	b.raw = make(map[string]rawValue)
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if !utf8.Valid(line) {
			// Barman decodes every line as UTF-8 and fails otherwise.
			return nil, &InfoError{File: source, Line: lineNo, Err: errors.New("line is not valid UTF-8")}
		}
		s := string(line)
		trimmed := strings.TrimSpace(s)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		key, value, ok := strings.Cut(s, "=")
		if !ok {
			return nil, &InfoError{File: source, Line: lineNo, Err: fmt.Errorf("invalid line %q", trimmed)}
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		f, ok := fieldByKey(key)
		if !ok {
			return nil, &InfoError{File: source, Line: lineNo, Key: key, Err: errUnknownKey}
		}
		// A later duplicate key wins, as in Barman: start from None.
		f.null(b)
		if value != "None" {
			if err := f.parse(b, value); err != nil {
				return nil, &InfoError{File: source, Line: lineNo, Key: key, Err: err}
			}
		}
		b.raw[key] = rawValue{raw: value, canon: f.format(b)}
	}
	return b, nil
}

// Marshal returns the file content Barman would write: every key sorted,
// "key=value\n", None for null, backup_name and snapshots_info omitted
// when null. Fields unchanged since parsing are written exactly as read.
func (b *BackupInfo) Marshal() []byte {
	data, _ := b.MarshalFormat(NewestFormat)
	return data
}

// MarshalFormat is Marshal for a catalog of format f: only the keys that
// version writes. A field it cannot store (an encrypted or incremental
// backup in a Barman 3.4 catalog) is an error rather than silently lost.
func (b *BackupInfo) MarshalFormat(format Format) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(2048)
	for _, f := range infoFields {
		v := f.format(b)
		if !format.hasKey(f.key) {
			if err := droppable(f.key, v, format); err != nil {
				return nil, fmt.Errorf("backup %s: %w", b.ID, err)
			}
			continue
		}
		if v == "None" && f.hideIfNull {
			continue
		}
		if r, ok := b.raw[f.key]; ok && r.canon == v {
			v = r.raw
		}
		buf.WriteString(f.key)
		buf.WriteByte('=')
		buf.WriteString(v)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// droppable refuses to leave out a field whose value changes what the
// backup is: an encrypted backup or an incremental one cannot be restored
// by a Barman that does not know those fields. Descriptive fields (sizes,
// checksums setting, children) are only lost.
func droppable(key, value string, format Format) error {
	if value == "None" || (key != "encryption" && key != "parent_backup_id") {
		return nil
	}
	return fmt.Errorf("%s=%s cannot be stored in a Barman %s catalog", key, value, format)
}

// Regexps here are compiled on first use, not at package init: every
// cellar process (restore_command starts one per WAL segment) would
// pay for them.
var metaInfoRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(.+?)-backup\.info$`) })

// backupIDFromPath detects the id the way Barman does: the
// "<id>-backup.info" prefix, else the parent directory name.
func backupIDFromPath(path string) string {
	if m := metaInfoRE().FindStringSubmatch(filepath.Base(path)); m != nil {
		return m[1]
	}
	return filepath.Base(filepath.Dir(path))
}

// ReadBackupInfo reads and parses one backup.info file and sets its ID
// from the path.
func ReadBackupInfo(path string) (*BackupInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read backup.info: %w", err)
	}
	b, err := ParseBackupInfo(data, path)
	if err != nil {
		return nil, err
	}
	b.ID = backupIDFromPath(path)
	return b, nil
}

// WriteBackupInfo writes b durably to path (temp file, fsync, rename,
// directory fsync), mode 0600.
func WriteBackupInfo(path string, b *BackupInfo) error {
	if err := durable.WriteFile(path, b.Marshal(), 0o600); err != nil {
		return fmt.Errorf("backup %s: %w", b.ID, err)
	}
	return nil
}
