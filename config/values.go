package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sentinel errors. Every problem Load reports is an *Error whose Err wraps
// one of these, so callers can tell a typo from a bad value with errors.Is.
var (
	// ErrUnknownOption: a key that is not a Cellar option (typo, or a
	// Barman option Cellar does not implement).
	ErrUnknownOption = errors.New("unknown option")
	// ErrInvalidValue: the value does not parse or is out of range.
	ErrInvalidValue = errors.New("invalid value")
	// ErrUnsupported: a valid Barman value that Cellar does not implement
	// (backup_method rsync, compression bzip2 for writing, ...).
	ErrUnsupported = errors.New("not supported by Cellar")
	// ErrMissing: a required option is not set.
	ErrMissing = errors.New("missing required option")
	// ErrInvalidServerName: the section name cannot be a server name.
	ErrInvalidServerName = errors.New("invalid server name")
	// ErrUnknownServer is returned by (*Config).Server.
	ErrUnknownServer = errors.New("unknown server")
)

// valueError carries a user-facing message and matches ErrInvalidValue or
// ErrUnsupported, so the message need not repeat the sentinel's text.
type valueError struct {
	msg    string
	target error
}

func (e *valueError) Error() string        { return e.msg }
func (e *valueError) Is(target error) bool { return target == e.target }

func invalidf(format string, args ...any) error {
	return &valueError{msg: fmt.Sprintf(format, args...), target: ErrInvalidValue}
}

func unsupportedf(format string, args ...any) error {
	return &valueError{msg: fmt.Sprintf(format, args...), target: ErrUnsupported}
}

// ParseBool parses Barman's boolean spellings (barman/config.py parse_boolean),
// case-insensitively: true|t|yes|1|on and false|f|no|0|off.
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "t", "yes", "1", "on":
		return true, nil
	case "false", "f", "no", "0", "off":
		return false, nil
	}
	return false, invalidf("invalid boolean %q (use true|t|yes|1|on or false|f|no|0|off)", s)
}

func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, invalidf("invalid integer %q", s)
	}
	return n, nil
}

// Regexps here are compiled on first use, not at package init: every
// cellar process (restore_command starts one per WAL segment) would
// pay for them.
var intervalRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)^\s*(\d+)\s*(hour|day|week|month)s?\s*$`) })

// ParseDuration accepts the three spellings a Cellar duration option may
// have: Barman's interval syntax (`1 day`, `2 weeks`, `3 hours`, `1 month`
// = 31 days, as barman/config.py parse_time_interval), a Go duration
// (`30s`, `1h30m`) and a bare integer, which is seconds because that is what
// Barman's integer timeouts (check_timeout, keepalive_interval, ...) mean.
// Negative values are refused.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	bad := func() error {
		return invalidf("invalid duration %q (use e.g. 30 (seconds), 30s, 5m, 3 hours, 1 day, 2 weeks, 1 month)", s)
	}
	if t == "" {
		return 0, bad()
	}
	if m := intervalRe().FindStringSubmatch(t); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return 0, bad()
		}
		var unit time.Duration
		switch strings.ToLower(m[2]) {
		case "hour":
			unit = time.Hour
		case "day":
			unit = 24 * time.Hour
		case "week":
			unit = 7 * 24 * time.Hour
		case "month":
			unit = 31 * 24 * time.Hour
		}
		if n > int64(math.MaxInt64/unit) {
			return 0, invalidf("duration %q is too large", s)
		}
		return time.Duration(n) * unit, nil
	}
	if isDigits(t) {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n > int64(math.MaxInt64/time.Second) {
			return 0, invalidf("duration %q is too large", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, bad()
	}
	if d < 0 {
		return 0, invalidf("negative duration %q", s)
	}
	return d, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Size is a byte count written with Barman's SI/IEC suffixes
// (barman/config.py parse_si_suffix): k M G T are powers of 1000,
// Ki Mi Gi Ti powers of 1024, no suffix is bytes; `1 Gi` and `1Gi` are equal.
type Size int64

var sizeRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s*(\d+)\s*(k|Ki|M|Mi|G|Gi|T|Ti)?\s*$`) })

// ParseSize parses a Size.
func ParseSize(s string) (Size, error) {
	m := sizeRe().FindStringSubmatch(s)
	if m == nil {
		return 0, invalidf("invalid size %q (use e.g. 1048576, 500k, 10 Mi, 1 Gi, 2T)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, invalidf("size %q is too large", s)
	}
	mult := map[string]int64{
		"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
	}[m[2]]
	if n > math.MaxInt64/mult {
		return 0, invalidf("size %q is too large", s)
	}
	return Size(n * mult), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (z *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// MarshalText writes the byte count, which ParseSize reads back.
func (z Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(z), 10)), nil }

// Bytes returns the size as int64.
func (z Size) Bytes() int64 { return int64(z) }

// RetentionKind tells the two Barman retention policies apart.
type RetentionKind string

// Retention policy kinds. The zero RetentionPolicy (Kind "") means "not set".
const (
	RetentionRedundancy     RetentionKind = "REDUNDANCY"
	RetentionRecoveryWindow RetentionKind = "RECOVERY WINDOW"
)

// WindowUnit is the unit of a RECOVERY WINDOW.
type WindowUnit string

// Window units, in Barman's upper-case spelling.
const (
	UnitDays   WindowUnit = "DAYS"
	UnitWeeks  WindowUnit = "WEEKS"
	UnitMonths WindowUnit = "MONTHS"
)

// RetentionPolicy is a parsed `retention_policy`. config parses the string
// itself rather than importing package retention (see the import table);
// server converts it to a retention.Policy.
type RetentionPolicy struct {
	Kind RetentionKind
	// Value is the redundancy count, or the window length in Unit.
	Value int
	// Unit is set for RECOVERY WINDOW only.
	Unit WindowUnit
}

var (
	redundancyRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)^\s*REDUNDANCY\s+(\d+)\s*$`) })
	windowRe     = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)^\s*RECOVERY\s+WINDOW\s+OF\s+(\d+)\s+(DAY|WEEK|MONTH)S?\s*$`)
	})
)

// ParseRetentionPolicy parses `REDUNDANCY n` or
// `RECOVERY WINDOW OF n DAY[S]|WEEK[S]|MONTH[S]`, case-insensitively.
// n must be at least 1.
func ParseRetentionPolicy(s string) (RetentionPolicy, error) {
	bad := func() error {
		return invalidf("invalid retention policy %q (use REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS)", s)
	}
	if m := redundancyRe().FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return RetentionPolicy{}, bad()
		}
		if n < 1 {
			return RetentionPolicy{}, invalidf("invalid retention policy %q: redundancy must be at least 1", s)
		}
		return RetentionPolicy{Kind: RetentionRedundancy, Value: n}, nil
	}
	if m := windowRe().FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 1_000_000 {
			return RetentionPolicy{}, bad()
		}
		if n < 1 {
			return RetentionPolicy{}, invalidf("invalid retention policy %q: window must be at least 1", s)
		}
		return RetentionPolicy{Kind: RetentionRecoveryWindow, Value: n, Unit: WindowUnit(strings.ToUpper(m[2]) + "S")}, nil
	}
	return RetentionPolicy{}, bad()
}

// IsSet reports whether a policy was configured.
func (p RetentionPolicy) IsSet() bool { return p.Kind != "" }

// Window is the length of a RECOVERY WINDOW policy (a month is 31 days, as
// in Barman); 0 for REDUNDANCY or unset.
func (p RetentionPolicy) Window() time.Duration {
	if p.Kind != RetentionRecoveryWindow {
		return 0
	}
	day := 24 * time.Hour
	switch p.Unit {
	case UnitWeeks:
		return time.Duration(p.Value) * 7 * day
	case UnitMonths:
		return time.Duration(p.Value) * 31 * day
	}
	return time.Duration(p.Value) * day
}

// String gives the canonical Barman spelling ("REDUNDANCY 2",
// "RECOVERY WINDOW OF 7 DAYS"), or "" when unset.
func (p RetentionPolicy) String() string {
	switch p.Kind {
	case RetentionRedundancy:
		return fmt.Sprintf("REDUNDANCY %d", p.Value)
	case RetentionRecoveryWindow:
		return fmt.Sprintf("RECOVERY WINDOW OF %d %s", p.Value, p.Unit)
	}
	return ""
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *RetentionPolicy) UnmarshalText(b []byte) error {
	v, err := ParseRetentionPolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (p RetentionPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// enumParse matches s case-insensitively against allowed and returns the
// canonical spelling.
func enumParse(s string, allowed ...string) (string, error) {
	t := strings.TrimSpace(s)
	for _, a := range allowed {
		if strings.EqualFold(t, a) {
			return a, nil
		}
	}
	return "", invalidf("invalid value %q (allowed: %s)", s, strings.Join(allowed, ", "))
}

// BackupMethod is `backup_method`. Cellar implements only `postgres`
// (streaming BASE_BACKUP); Barman's rsync methods and snapshots are refused.
type BackupMethod string

// Backup methods.
const (
	BackupMethodPostgres BackupMethod = "postgres"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *BackupMethod) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	switch s {
	case "postgres":
		*m = BackupMethodPostgres
		return nil
	case "rsync", "local-rsync", "snapshot":
		return unsupportedf("backup_method %q is not supported by Cellar (only \"postgres\" is)", s)
	}
	return invalidf("invalid backup_method %q (Cellar supports only \"postgres\")", string(b))
}

// Compression is the WAL `compression`. Bzip2 is only ever read (existing
// Barman archives); Load refuses it as the configured compression.
type Compression string

// WAL compressions.
const (
	CompressionNone  Compression = "none"
	CompressionGzip  Compression = "gzip"
	CompressionBzip2 Compression = "bzip2"
	CompressionLZ4   Compression = "lz4"
	CompressionZstd  Compression = "zstd"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Compression) UnmarshalText(b []byte) error {
	s, err := enumParse(string(b), "none", "gzip", "bzip2", "lz4", "zstd")
	if err != nil {
		switch strings.ToLower(strings.TrimSpace(string(b))) {
		case "pigz", "pygzip":
			return unsupportedf("compression %q is not supported by Cellar: use \"gzip\" (same file format)", string(b))
		case "pybzip2":
			return unsupportedf("compression %q is not supported by Cellar: bzip2 WALs are read but never written; use gzip, lz4, zstd or none", string(b))
		case "custom", "xz", "snappy":
			return unsupportedf("compression %q is not supported by Cellar (use none, gzip, lz4 or zstd)", string(b))
		}
		return err
	}
	*c = Compression(s)
	return nil
}

// BackupCompression is `backup_compression` (server-side BASE_BACKUP
// compression, PostgreSQL 15+).
type BackupCompression string

// Backup compressions.
const (
	BackupCompressionNone BackupCompression = "none"
	BackupCompressionGzip BackupCompression = "gzip"
	BackupCompressionLZ4  BackupCompression = "lz4"
	BackupCompressionZstd BackupCompression = "zstd"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *BackupCompression) UnmarshalText(b []byte) error {
	s, err := enumParse(string(b), "none", "gzip", "lz4", "zstd")
	if err != nil {
		return err
	}
	*c = BackupCompression(s)
	return nil
}

// levelRange is the compression level range PostgreSQL accepts.
func (c BackupCompression) levelRange() (lo, hi int) {
	switch c {
	case BackupCompressionGzip:
		return 1, 9
	case BackupCompressionLZ4:
		return 1, 12
	case BackupCompressionZstd:
		return 1, 22
	}
	return 0, 0
}

// CompressionLevel is the WAL `compression_level`: low, medium, high or an
// integer the codec understands.
type CompressionLevel string

// Named compression levels.
const (
	CompressionLevelLow    CompressionLevel = "low"
	CompressionLevelMedium CompressionLevel = "medium"
	CompressionLevelHigh   CompressionLevel = "high"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *CompressionLevel) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	switch s {
	case "low", "medium", "high":
		*l = CompressionLevel(s)
		return nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= -1000 && n <= 1000 {
		*l = CompressionLevel(strconv.Itoa(n))
		return nil
	}
	return invalidf("invalid compression_level %q (use low, medium, high or an integer)", string(b))
}

// Number returns the numeric level when one was given.
func (l CompressionLevel) Number() (int, bool) {
	n, err := strconv.Atoi(string(l))
	return n, err == nil
}

// ReuseBackup is `reuse_backup`.
type ReuseBackup string

// reuse_backup values.
const (
	ReuseOff  ReuseBackup = "off"
	ReuseLink ReuseBackup = "link"
	ReuseCopy ReuseBackup = "copy"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *ReuseBackup) UnmarshalText(b []byte) error {
	s, err := enumParse(string(b), "off", "link", "copy")
	if err != nil {
		return err
	}
	*r = ReuseBackup(s)
	return nil
}

// CreateSlot is `create_slot`.
type CreateSlot string

// create_slot values.
const (
	CreateSlotManual CreateSlot = "manual"
	CreateSlotAuto   CreateSlot = "auto"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *CreateSlot) UnmarshalText(b []byte) error {
	s, err := enumParse(string(b), "manual", "auto")
	if err != nil {
		return err
	}
	*c = CreateSlot(s)
	return nil
}

// RetentionPolicyMode is `retention_policy_mode`; Barman only has `auto`.
type RetentionPolicyMode string

// RetentionModeAuto is the only mode.
const RetentionModeAuto RetentionPolicyMode = "auto"

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *RetentionPolicyMode) UnmarshalText(b []byte) error {
	s, err := enumParse(string(b), "auto")
	if err != nil {
		return err
	}
	*m = RetentionPolicyMode(s)
	return nil
}

// WALRetentionPolicy is `wal_retention_policy`; Barman only has `main`.
type WALRetentionPolicy string

// WALRetentionMain is the only WAL retention policy.
const WALRetentionMain WALRetentionPolicy = "main"

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *WALRetentionPolicy) UnmarshalText(b []byte) error {
	s, err := enumParse(string(b), "main")
	if err != nil {
		return err
	}
	*p = WALRetentionPolicy(s)
	return nil
}

// LogLevel is `log_level`, in Barman's (Python logging) spelling.
type LogLevel string

// Log levels.
const (
	LogDebug    LogLevel = "DEBUG"
	LogInfo     LogLevel = "INFO"
	LogWarning  LogLevel = "WARNING"
	LogError    LogLevel = "ERROR"
	LogCritical LogLevel = "CRITICAL"
)

// UnmarshalText implements encoding.TextUnmarshaler; WARN is accepted for WARNING.
func (l *LogLevel) UnmarshalText(b []byte) error {
	if strings.EqualFold(strings.TrimSpace(string(b)), "warn") {
		*l = LogWarning
		return nil
	}
	s, err := enumParse(string(b), "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
	if err != nil {
		return err
	}
	*l = LogLevel(s)
	return nil
}

// LogFormat is Cellar's `log_format`: text or json. Barman's value is a
// Python logging format string, which Cellar does not interpret.
type LogFormat string

// Log formats.
const (
	LogFormatText LogFormat = "text"
	LogFormatJSON LogFormat = "json"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *LogFormat) UnmarshalText(b []byte) error {
	s, err := enumParse(string(b), "text", "json")
	if err != nil {
		return invalidf("invalid log_format %q (Cellar uses text or json, not a Python format string)", string(b))
	}
	*f = LogFormat(s)
	return nil
}

// RecoveryOptions is `recovery_options`, a comma-separated list.
type RecoveryOptions []string

// Known recovery options.
const (
	RecoveryGetWAL       = "get-wal"
	RecoveryDeltaRestore = "delta-restore"
)

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *RecoveryOptions) UnmarshalText(b []byte) error {
	var out RecoveryOptions
	for _, p := range strings.Split(string(b), ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		if p != RecoveryGetWAL && p != RecoveryDeltaRestore {
			return invalidf("invalid recovery option %q (allowed: get-wal, delta-restore)", p)
		}
		if !r.hasIn(out, p) {
			out = append(out, p)
		}
	}
	*r = out
	return nil
}

func (RecoveryOptions) hasIn(list []string, p string) bool {
	for _, x := range list {
		if x == p {
			return true
		}
	}
	return false
}

// Has reports whether option o is set.
func (r RecoveryOptions) Has(o string) bool { return r.hasIn(r, o) }

// MarshalText implements encoding.TextMarshaler.
func (r RecoveryOptions) MarshalText() ([]byte, error) {
	return []byte(strings.Join(r, ",")), nil
}
