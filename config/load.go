package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// EnvPrefix starts every configuration environment variable:
// CELLAR_GLOBAL__<OPTION>, CELLAR_GLOBAL__WEB__<OPTION>,
// CELLAR_SERVERS__<NAME>__<OPTION>. `__` nests, names are lower-cased.
// Other CELLAR_* variables (CELLAR_E2E, ...) are not configuration and are
// ignored.
const EnvPrefix = "CELLAR_"

// FlagKeyAnnotation names the pflag annotation that maps a flag to a
// configuration key explicitly:
//
//	fs.SetAnnotation("listen", config.FlagKeyAnnotation, []string{"global.web.listen_address"})
//
// Without it a flag maps to a global option when its name, with - turned
// into _, is one (`--log-level` -> global.log_level, `--web.listen-address`
// or `--web-listen-address` -> global.web.listen_address). Flags that map to
// no option (--format, --config, ...) are not configuration and are skipped.
const FlagKeyAnnotation = "cellar.config-key"

// LoadOptions says where configuration comes from. Layers apply in order:
// defaults, File, Environ, Flags (only flags the user changed).
type LoadOptions struct {
	// File is the YAML file; "" means none (defaults, env and flags only).
	File string
	// Environ is the environment as os.Environ returns it; nil means none
	// (Load never reads the process environment itself, for testability).
	Environ []string
	// Flags is the parsed command-line flag set, or nil.
	Flags *pflag.FlagSet
}

// Error is one configuration problem. File names where the offending value
// came from: the YAML path, `$CELLAR_...` for an environment variable,
// `--flag` for a flag, or "defaults". Server is empty for global and
// top-level keys; then Key is the full dotted path ("global.log_level").
type Error struct {
	File   string
	Line   int // 1-based line in File, 0 when unknown
	Server string
	Key    string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Server != "" {
		fmt.Fprintf(&b, "server %q: ", e.Server)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("configuration error")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// source is where a value came from.
type source struct {
	file string
	line int
}

// provenance maps a key path (joined with \x00, since server names may
// contain dots) to the source that set it last.
type provenance map[string]source

func pathKey(path []string) string { return strings.Join(path, "\x00") }

func (p provenance) set(path []string, s source) { p[pathKey(path)] = s }

// walk records s for every key in m (a layer about to be merged).
func (p provenance) walk(m map[string]any, path []string, s source) {
	for k, v := range m {
		sub := append(slices.Clip(path), k)
		p.set(sub, s)
		if mm, ok := v.(map[string]any); ok {
			p.walk(mm, sub, s)
		}
	}
}

// lookup finds the most specific source recorded for path or a parent.
func (p provenance) lookup(path []string) source {
	for i := len(path); i > 0; i-- {
		if s, ok := p[pathKey(path[:i])]; ok {
			return s
		}
	}
	return source{}
}

// reporter collects problems as *Error values.
type reporter struct {
	prov     provenance
	fallback string // main file, for problems with no recorded source
	errs     []error
	failed   map[string]bool
}

// hasFailed reports whether a problem was already reported at path or a
// parent, so validation does not pile "missing" on top of "invalid".
func (r *reporter) hasFailed(path []string) bool {
	for i := len(path); i > 0; i-- {
		if r.failed[pathKey(path[:i])] {
			return true
		}
	}
	return false
}

func (r *reporter) add(path []string, err error) {
	s := r.prov.lookup(path)
	if s.file == "" || s.file == "defaults" && r.fallback != "" {
		s = source{file: r.fallback}
		if s.file == "" {
			s.file = "defaults"
		}
	}
	e := &Error{File: s.file, Line: s.line, Err: err}
	if len(path) >= 2 && path[0] == "servers" {
		e.Server = path[1]
		e.Key = strings.Join(path[2:], ".")
	} else {
		e.Key = strings.Join(path, ".")
	}
	r.errs = append(r.errs, e)
	if r.failed == nil {
		r.failed = map[string]bool{}
	}
	r.failed[pathKey(path)] = true
}

// Load builds the configuration from the layers in opts and validates it.
// It returns every problem found, joined with errors.Join; each is an *Error
// (use errors.As) wrapping ErrUnknownOption, ErrInvalidValue,
// ErrUnsupported, ErrMissing or ErrInvalidServerName (use errors.Is), or a
// file-system error for an unreadable file. It does not touch the process
// environment and does no I/O besides reading opts.File. Called once at
// start-up and on every reload; safe for concurrent use.
func Load(opts LoadOptions) (*Config, error) {
	var data []byte
	if opts.File != "" {
		var err error
		data, err = os.ReadFile(opts.File)
		if err != nil {
			// The path is already in Error.File; keep only the cause
			// (errors.Is(err, fs.ErrNotExist) still holds).
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, &Error{File: opts.File, Err: err}
		}
	}
	return load(opts, data)
}

// load is Load with the file's content already read (ImportBarmanINI
// validates its output through it without a temporary file).
func load(opts LoadOptions, data []byte) (*Config, error) {
	k := koanf.New(".")
	prov := provenance{}

	g := DefaultGlobal()
	defaults := map[string]any{"global": encodeStruct(&g, false)}
	prov.walk(defaults, nil, source{file: "defaults"})
	if err := k.Load(confmap.Provider(defaults, ""), nil); err != nil {
		return nil, fmt.Errorf("config: loading defaults: %w", err)
	}

	var fileServers []string
	if opts.File != "" {
		m, err := parseYAML(opts.File, data, prov)
		if err != nil {
			return nil, err
		}
		if s, ok := m["servers"].(map[string]any); ok {
			for n := range s {
				fileServers = append(fileServers, n)
			}
		}
		// The delimiter is "" so that dotted server names stay one key.
		if err := k.Load(confmap.Provider(m, ""), nil); err != nil {
			return nil, &Error{File: opts.File, Err: err}
		}
	}

	envMap, envErrs := envLayer(opts.Environ, fileServers, prov)
	if len(envMap) > 0 {
		if err := k.Load(confmap.Provider(envMap, ""), nil); err != nil {
			return nil, fmt.Errorf("config: environment: %w", err)
		}
	}

	if opts.Flags != nil {
		known := globalKeys()
		p := posflag.ProviderWithFlag(opts.Flags, ".", k, func(f *pflag.Flag) (string, any) {
			// Only flags the user set override: a flag's default must not
			// replace a value from the file or the environment.
			if !f.Changed {
				return "", nil
			}
			key := flagKey(f, known)
			if key == "" {
				return "", nil
			}
			prov.set(strings.Split(key, "."), source{file: "--" + f.Name})
			return key, posflag.FlagVal(opts.Flags, f)
		})
		if err := k.Load(p, nil); err != nil {
			return nil, fmt.Errorf("config: flags: %w", err)
		}
	}

	r := &reporter{prov: prov, fallback: opts.File}
	r.errs = append(r.errs, envErrs...)
	cfg := build(k.Raw(), r)
	cfg.File = opts.File
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	return cfg, nil
}

// globalKeys lists the dotted keys flags may address by name.
func globalKeys() map[string]bool {
	known := map[string]bool{}
	var walk func(fs []field, prefix string)
	walk = func(fs []field, prefix string) {
		for _, f := range fs {
			if f.sub {
				walk(structFields(f.typ), prefix+f.key+".")
				continue
			}
			known[prefix+f.key] = true
		}
	}
	walk(structFields(typeOfGlobal), "global.")
	return known
}

func flagKey(f *pflag.Flag, known map[string]bool) string {
	if v := f.Annotations[FlagKeyAnnotation]; len(v) > 0 && v[0] != "" {
		return v[0]
	}
	n := strings.ReplaceAll(f.Name, "-", "_")
	if known["global."+n] {
		return "global." + n
	}
	for _, sec := range []string{"web", "daemon"} {
		if rest, ok := strings.CutPrefix(n, sec+"_"); ok && known["global."+sec+"."+rest] {
			return "global." + sec + "." + rest
		}
	}
	return ""
}

// envLayer turns CELLAR_GLOBAL__* and CELLAR_SERVERS__* variables into a
// nested map. A server name matches a file server case-insensitively,
// because variable names are conventionally upper case.
func envLayer(environ []string, fileServers []string, prov provenance) (map[string]any, []error) {
	sorted := slices.Clone(environ)
	slices.Sort(sorted)
	out := map[string]any{}
	var errs []error
	for _, kv := range sorted {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		parts := strings.Split(name[len(EnvPrefix):], "__")
		for i := range parts {
			parts[i] = strings.ToLower(parts[i])
		}
		if parts[0] != "global" && parts[0] != "servers" {
			continue
		}
		src := "$" + name
		bad := func(msg string) {
			errs = append(errs, &Error{File: src, Err: invalidf("%s", msg)})
		}
		if slices.Contains(parts, "") {
			bad("malformed variable name (use __ only between names)")
			continue
		}
		if parts[0] == "global" && len(parts) < 2 {
			bad("expected CELLAR_GLOBAL__<OPTION>")
			continue
		}
		if parts[0] == "servers" {
			if len(parts) < 3 {
				bad("expected CELLAR_SERVERS__<NAME>__<OPTION>")
				continue
			}
			for _, s := range fileServers {
				if strings.EqualFold(s, parts[1]) {
					parts[1] = s
					break
				}
			}
		}
		cur := out
		conflict := false
		for i, p := range parts[:len(parts)-1] {
			next, exists := cur[p]
			if !exists {
				nm := map[string]any{}
				cur[p] = nm
				cur = nm
				prov.set(parts[:i+1], source{file: src})
				continue
			}
			nm, ok := next.(map[string]any)
			if !ok {
				conflict = true
				break
			}
			cur = nm
		}
		last := parts[len(parts)-1]
		if _, isMap := cur[last].(map[string]any); conflict || isMap {
			bad("conflicts with another CELLAR_ variable (a section and an option at the same path)")
			continue
		}
		cur[last] = val
		prov.set(parts, source{file: src})
	}
	return out, errs
}

var (
	// Regexps here are compiled on first use, not at package init: every
	// cellar process (restore_command starts one per WAL segment) would
	// pay for them.
	serverNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`) })
	slotNameRe   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-z_]+$`) })
)

// ValidServerName reports whether name can be a server: letters, digits,
// `_`, `.`, `-`, not starting with a dot (lock and directory names are
// derived from it), at most 64 bytes, and not Barman's reserved `all`.
func ValidServerName(name string) error {
	switch {
	case strings.EqualFold(name, "all"):
		return &valueError{msg: `"all" is reserved (it means every server on the command line)`, target: ErrInvalidServerName}
	case len(name) > 64 || !serverNameRe().MatchString(name):
		return &valueError{msg: fmt.Sprintf("%q is not a valid server name (use letters, digits, _ . -; no leading dot; at most 64 characters)", name), target: ErrInvalidServerName}
	}
	return nil
}

// build decodes the merged map and validates it, reporting into r.
func build(raw map[string]any, r *reporter) *Config {
	cfg := &Config{Global: DefaultGlobal(), Servers: map[string]*Server{}}
	for _, key := range sortedKeys(raw) {
		switch key {
		case "global":
			if m, ok := asMap(raw[key], []string{key}, r); ok {
				decodeStruct(reflectValue(&cfg.Global), m, []string{"global"}, r)
			}
		case "servers":
			m, ok := asMap(raw[key], []string{key}, r)
			if !ok {
				continue
			}
			for _, name := range sortedKeys(m) {
				path := []string{"servers", name}
				if err := ValidServerName(name); err != nil {
					r.add(path, err)
					continue
				}
				s := DefaultServer(name)
				if sm, ok := asMap(m[name], path, r); ok {
					decodeStruct(reflectValue(s), sm, path, r)
				}
				cfg.Servers[name] = s
			}
		default:
			r.add([]string{key}, unknownOption(key, []string{"global", "servers"}))
		}
	}
	validateGlobal(cfg, r)
	for _, name := range cfg.ServerNames() {
		validateServer(cfg, cfg.Servers[name], r)
	}
	validateUnique(cfg, r)
	return cfg
}

// asMap accepts a mapping, or null meaning an empty section.
func asMap(v any, path []string, r *reporter) (map[string]any, bool) {
	switch m := v.(type) {
	case nil:
		return map[string]any{}, true
	case map[string]any:
		return m, true
	}
	r.add(path, invalidf("expected a mapping of options, got %s", describe(v)))
	return nil, false
}

func validateGlobal(cfg *Config, r *reporter) {
	g := &cfg.Global
	gp := func(k ...string) []string { return append([]string{"global"}, k...) }
	if !filepath.IsAbs(g.BarmanHome) {
		r.add(gp("barman_home"), invalidf("barman_home %q must be an absolute path", g.BarmanHome))
	}
	if g.BarmanLockDirectory == "" {
		g.BarmanLockDirectory = g.BarmanHome
	} else if !filepath.IsAbs(g.BarmanLockDirectory) {
		r.add(gp("barman_lock_directory"), invalidf("barman_lock_directory %q must be an absolute path", g.BarmanLockDirectory))
	}
	if g.ConfigurationFilesDirectory != "" && !filepath.IsAbs(g.ConfigurationFilesDirectory) {
		r.add(gp("configuration_files_directory"), invalidf("configuration_files_directory %q must be an absolute path", g.ConfigurationFilesDirectory))
	}
	if _, _, err := net.SplitHostPort(g.Web.ListenAddress); err != nil {
		r.add(gp("web", "listen_address"), invalidf("invalid listen_address %q (use host:port, e.g. 127.0.0.1:9533 or :9533)", g.Web.ListenAddress))
	}
	switch {
	case strings.EqualFold(g.VerifyBackupSchedule, ScheduleOff):
		g.VerifyBackupSchedule = ""
	case g.VerifyBackupSchedule != "":
		if err := validateCron("verify_backup_schedule", g.VerifyBackupSchedule); err != nil {
			r.add(gp("verify_backup_schedule"), err)
		}
	}
	switch g.BarmanCompatibility {
	case "", "3.4", "3.17":
	default:
		r.add(gp("barman_compatibility"), invalidf("invalid barman_compatibility %q (use 3.4 or 3.17)", g.BarmanCompatibility))
	}
	for _, c := range []struct {
		path []string
		ok   bool
	}{
		{gp("verify_backup_max_age"), g.VerifyBackupMaxAge > 0},
		{gp("web", "scrape_timeout"), g.Web.ScrapeTimeout > 0},
		{gp("daemon", "archive_interval"), g.Daemon.ArchiveInterval > 0},
		{gp("daemon", "check_backup_interval"), g.Daemon.CheckBackupInterval > 0},
		{gp("daemon", "retention_interval"), g.Daemon.RetentionInterval > 0},
	} {
		if !c.ok {
			r.add(c.path, invalidf("must be greater than zero"))
		}
	}
}

func validateServer(cfg *Config, s *Server, r *reporter) {
	p := func(k string) []string { return []string{"servers", s.Name, k} }
	missing := func(k, msg string) {
		if !r.hasFailed(p(k)) {
			r.add(p(k), &valueError{msg: msg, target: ErrMissing})
		}
	}
	if s.BackupDirectory == "" {
		s.BackupDirectory = filepath.Join(cfg.Global.BarmanHome, s.Name)
	} else if !filepath.IsAbs(s.BackupDirectory) {
		r.add(p("backup_directory"), invalidf("backup_directory %q must be an absolute path", s.BackupDirectory))
	}
	if !s.StreamingConninfo.IsSet() {
		s.StreamingConninfo = s.Conninfo
	}
	if !s.Archiver && !s.StreamingArchiver {
		// barman/config.py forces the file archiver on rather than leaving
		// a server with no WAL archiving at all.
		s.Archiver = true
	}
	if !s.IsPassive() {
		if !s.Conninfo.IsSet() {
			missing("conninfo", "conninfo is required (unless primary_ssh_command makes the server passive)")
		}
		if s.StreamingArchiver {
			if s.SlotName == "" {
				missing("slot_name", "slot_name is required when streaming_archiver is on")
			}
			if !s.StreamingConninfo.IsSet() {
				missing("streaming_conninfo", "streaming_conninfo (or conninfo) is required when streaming_archiver is on")
			}
		}
	}
	if s.SlotName != "" && (!slotNameRe().MatchString(s.SlotName) || len(s.SlotName) > 63) {
		r.add(p("slot_name"), invalidf("invalid slot_name %q (lower-case letters, digits and _ only, at most 63 characters)", s.SlotName))
	}
	if s.Compression == CompressionBzip2 {
		r.add(p("compression"), unsupportedf("compression \"bzip2\" is read-only in Cellar: existing bzip2 WALs are read, but new WALs cannot be written with it (use gzip, lz4, zstd or none)"))
	}
	if s.BackupCompressionLevel != 0 {
		lo, hi := s.BackupCompression.levelRange()
		switch {
		case s.BackupCompression == BackupCompressionNone:
			r.add(p("backup_compression_level"), invalidf("backup_compression_level needs backup_compression (gzip, lz4 or zstd)"))
		case s.BackupCompressionLevel < lo || s.BackupCompressionLevel > hi:
			r.add(p("backup_compression_level"), invalidf("backup_compression_level %d is out of range for %s (%d..%d)", s.BackupCompressionLevel, s.BackupCompression, lo, hi))
		}
	}
	if s.BackupSchedule != "" {
		if err := validateCron("backup_schedule", s.BackupSchedule); err != nil {
			r.add(p("backup_schedule"), err)
		}
	}
	resolveVerify(&cfg.Global, s, r)
	for _, c := range []struct {
		key string
		v   int
		min int
	}{
		{"parallel_jobs", s.ParallelJobs, 1},
		{"bandwidth_limit", s.BandwidthLimit, 0},
		{"archiver_batch_size", s.ArchiverBatchSize, 0},
		{"streaming_archiver_batch_size", s.StreamingArchiverBatchSize, 0},
		{"minimum_redundancy", s.MinimumRedundancy, 0},
		{"max_incoming_wals_queue", s.MaxIncomingWALsQueue, 0},
		{"basebackup_retry_times", s.BasebackupRetryTimes, 0},
	} {
		if c.v < c.min {
			r.add(p(c.key), invalidf("%d is below the minimum %d", c.v, c.min))
		}
	}
	if s.CheckTimeout <= 0 {
		r.add(p("check_timeout"), invalidf("check_timeout must be greater than zero"))
	}
	if s.RetentionPolicy.Kind == RetentionRedundancy && s.RetentionPolicy.Value < s.MinimumRedundancy {
		cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("server %q: retention policy %s is below minimum_redundancy %d; %d backups are kept", s.Name, s.RetentionPolicy, s.MinimumRedundancy, s.MinimumRedundancy))
	}
}

// resolveVerify applies the global verification defaults to a server
// that does not set its own, and validates the server's schedule (the
// global one is validated once, in validateGlobal).
func resolveVerify(g *Global, s *Server, r *reporter) {
	if s.VerifyBackupMaxAge == 0 {
		s.VerifyBackupMaxAge = g.VerifyBackupMaxAge
	}
	switch {
	case s.VerifyBackupSchedule == "":
		s.VerifyBackupSchedule = g.VerifyBackupSchedule
	case strings.EqualFold(s.VerifyBackupSchedule, ScheduleOff):
		s.VerifyBackupSchedule = ""
	default:
		if err := validateCron("verify_backup_schedule", s.VerifyBackupSchedule); err != nil {
			r.add([]string{"servers", s.Name, "verify_backup_schedule"}, err)
		}
	}
}

// validateUnique refuses two servers sharing a backup directory: their
// catalogs and WAL archives would overwrite each other.
func validateUnique(cfg *Config, r *reporter) {
	seen := map[string]string{}
	for _, name := range cfg.ServerNames() {
		d := cleanPath(cfg.Servers[name].BackupDirectory)
		if other, ok := seen[d]; ok {
			r.add([]string{"servers", name, "backup_directory"}, invalidf("backup_directory %q is also used by server %q", d, other))
			continue
		}
		seen[d] = name
	}
}

var (
	cronFieldRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9A-Za-z*/,?#-]+$`) })
	cronDescr   = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)

// validateCron does the syntax check config can do without the scheduler
// library (gocron is confined to package jobs): a descriptor, `@every
// <duration>`, or 5 (or 6, with seconds) fields, optionally after TZ=/CRON_TZ=.
func validateCron(key, expr string) error {
	bad := func() error {
		return invalidf("invalid %s %q (use a cron expression such as \"0 3 * * *\", @daily or \"@every 6h\")", key, expr)
	}
	fields := strings.Fields(expr)
	if len(fields) > 0 && (strings.HasPrefix(fields[0], "TZ=") || strings.HasPrefix(fields[0], "CRON_TZ=")) {
		fields = fields[1:]
	}
	if len(fields) == 0 {
		return bad()
	}
	if strings.HasPrefix(fields[0], "@") {
		if fields[0] == "@every" {
			if len(fields) != 2 {
				return bad()
			}
			if d, err := time.ParseDuration(fields[1]); err != nil || d <= 0 {
				return bad()
			}
			return nil
		}
		if len(fields) == 1 && slices.Contains(cronDescr, fields[0]) {
			return nil
		}
		return bad()
	}
	if len(fields) != 5 && len(fields) != 6 {
		return bad()
	}
	for _, f := range fields {
		if !cronFieldRe().MatchString(f) {
			return bad()
		}
	}
	return nil
}
