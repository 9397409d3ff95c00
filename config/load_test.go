package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
servers:
  pg1:
    conninfo: host=h1 user=barman password=pw1
`

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: writeConfig(t, minimal)})
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Global
	if g.BarmanHome != "/var/lib/cellar" || g.BarmanLockDirectory != "/var/lib/cellar" || !g.LockDirectoryCleanup ||
		g.LogLevel != LogInfo || g.LogFormat != LogFormatText {
		t.Errorf("global defaults: %+v", g)
	}
	if g.Web.ListenAddress != "127.0.0.1:9533" || g.Web.ScrapeTimeout != 10*time.Second || g.Web.MinProbeInterval != 15*time.Second {
		t.Errorf("web defaults: %+v", g.Web)
	}
	if g.Daemon.ArchiveInterval != 10*time.Second || g.Daemon.CheckBackupInterval != time.Minute || g.Daemon.RetentionInterval != 5*time.Minute {
		t.Errorf("daemon defaults: %+v", g.Daemon)
	}
	s, err := cfg.Server("pg1")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultServer("pg1")
	want.Conninfo = "host=h1 user=barman password=pw1"
	want.StreamingConninfo = want.Conninfo
	want.BackupDirectory = "/var/lib/cellar/pg1"
	want.Archiver = true // both archivers off: forced on
	want.VerifyBackupMaxAge = DefaultVerifyMaxAge
	if got, w := s.Redacted(), want.Redacted(); !equalMaps(got, w) {
		t.Errorf("server defaults:\n got %v\nwant %v", got, w)
	}
	if s.Name != "pg1" || !s.Active || s.CheckTimeout != 30*time.Second || s.StreamingArchiverName != "barman_receive_wal" ||
		s.CreateSlot != CreateSlotManual || s.Compression != CompressionNone || s.RetentionPolicy.IsSet() || s.IsPassive() {
		t.Errorf("server: %+v", s)
	}
	if names := cfg.ServerNames(); len(names) != 1 || names[0] != "pg1" {
		t.Errorf("ServerNames = %v", names)
	}
	if _, err := cfg.Server("nope"); !errors.Is(err, ErrUnknownServer) || !strings.Contains(err.Error(), "pg1") {
		t.Errorf("Server(nope) = %v", err)
	}
}

func equalMaps(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestLoadExampleFile(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: "../config.yaml"})
	if err != nil {
		t.Fatalf("the shipped config.yaml must load: %v", err)
	}
	s, err := cfg.Server("pg1")
	if err != nil {
		t.Fatal(err)
	}
	if !s.StreamingArchiver || s.SlotName != "barman" || s.Compression != CompressionGzip ||
		s.RetentionPolicy.String() != "RECOVERY WINDOW OF 7 DAYS" || s.LastBackupMaximumAge != 24*time.Hour ||
		s.LastWALMaximumAge != time.Hour || s.BackupSchedule != "0 3 * * *" || s.MinimumRedundancy != 1 ||
		s.VerifyBackupSchedule != "0 5 * * 0" || s.VerifyBackupMaxAge != DefaultVerifyMaxAge {
		t.Errorf("example server: %+v", s)
	}
	// Every server option must be documented in the example, commented out or not.
	data, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range OptionNames() {
		if strings.HasSuffix(name, "_script") || name == "forward_config_path" || strings.HasPrefix(name, "basebackup_retry") {
			continue
		}
		if !strings.Contains(string(data), name+":") {
			t.Errorf("config.yaml does not document %s", name)
		}
	}
}

func TestLoadAllValueSyntaxes(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
global:
  barman_home: /srv/backup
  log_level: debug
  web:
    scrape_timeout: 20
    min_probe_interval: 0
  daemon:
    retention_interval: 1 hour
servers:
  pg.main-1:
    active: off
    conninfo: postgres://u:pw@h/db
    streaming_archiver: yes
    archiver: "no"
    slot_name: barman_1
    immediate_checkpoint: t
    parallel_jobs: "4"
    bandwidth_limit: 1000
    last_backup_maximum_age: 2 weeks
    last_wal_maximum_age: 3 hours
    last_backup_minimum_size: 1 Gi
    check_timeout: 45
    keepalive_interval: 1m
    retention_policy: redundancy 3
    minimum_redundancy: 1
    compression: ZSTD
    compression_level: 7
    backup_compression: lz4
    backup_compression_level: 12
    reuse_backup: copy
    recovery_options: get-wal,delta-restore
    description: 42
    backup_directory: /data/pgmain
    pre_backup_script: /bin/true
    staging_path: ~
    streaming_conninfo: ""
`)
	cfg, err := Load(LoadOptions{File: p})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Global.BarmanHome != "/srv/backup" || cfg.Global.LogLevel != LogDebug || cfg.Global.Web.ScrapeTimeout != 20*time.Second ||
		cfg.Global.Web.MinProbeInterval != 0 || cfg.Global.Daemon.RetentionInterval != time.Hour {
		t.Errorf("global: %+v", cfg.Global)
	}
	s := cfg.Servers["pg.main-1"]
	if s == nil {
		t.Fatalf("servers: %v", cfg.ServerNames())
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"active", !s.Active},
		{"streaming_archiver", s.StreamingArchiver && !s.Archiver},
		{"immediate_checkpoint", s.ImmediateCheckpoint},
		{"parallel_jobs", s.ParallelJobs == 4},
		{"bandwidth_limit", s.BandwidthLimit == 1000},
		{"last_backup_maximum_age", s.LastBackupMaximumAge == 14*24*time.Hour},
		{"last_wal_maximum_age", s.LastWALMaximumAge == 3*time.Hour},
		{"last_backup_minimum_size", s.LastBackupMinimumSize == 1<<30},
		{"check_timeout", s.CheckTimeout == 45*time.Second},
		{"keepalive_interval", s.KeepaliveInterval == time.Minute},
		{"retention_policy", s.RetentionPolicy == RetentionPolicy{Kind: RetentionRedundancy, Value: 3}},
		{"compression", s.Compression == CompressionZstd},
		{"compression_level", s.CompressionLevel == "7"},
		{"backup_compression", s.BackupCompression == BackupCompressionLZ4 && s.BackupCompressionLevel == 12},
		{"reuse_backup", s.ReuseBackup == ReuseCopy},
		{"recovery_options", s.RecoveryOptions.Has(RecoveryGetWAL) && s.RecoveryOptions.Has(RecoveryDeltaRestore)},
		{"description", s.Description == "42"},
		{"backup_directory", s.BackupDirectory == "/data/pgmain"},
		{"pre_backup_script", s.PreBackupScript == "/bin/true"},
		{"staging_path", s.StagingPath == ""},
		{"streaming_conninfo defaults to conninfo", s.StreamingConninfo.Raw() == "postgres://u:pw@h/db"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: %+v", c.name, s)
		}
	}
}

func TestLoadLayering(t *testing.T) {
	t.Parallel()
	p := writeConfig(t, `
global:
  log_level: WARNING
  web:
    listen_address: 0.0.0.0:1
servers:
  PG1:
    conninfo: host=file
    check_timeout: 10s
`)
	fs := pflag.NewFlagSet("cellar", pflag.ContinueOnError)
	fs.String("log-level", "INFO", "")
	fs.String("web.listen-address", "127.0.0.1:9533", "")
	fs.Duration("timeout", time.Second, "")
	fs.String("format", "console", "") // not a config option: ignored
	fs.Bool("unchanged-home", false, "")
	fs.String("home", "/x", "")
	if err := fs.SetAnnotation("home", FlagKeyAnnotation, []string{"global.barman_home"}); err != nil {
		t.Fatal(err)
	}
	if err := fs.SetAnnotation("timeout", FlagKeyAnnotation, []string{"servers.PG1.check_timeout"}); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--log-level=ERROR", "--format=json", "--timeout=7s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{
		File: p,
		Environ: []string{
			"PATH=/bin",
			"CELLAR_E2E=1", // not configuration
			"CELLAR_GLOBAL__LOG_LEVEL=DEBUG",
			"CELLAR_GLOBAL__BARMAN_HOME=/env/home",
			"CELLAR_GLOBAL__WEB__LISTEN_ADDRESS=:9999",
			"CELLAR_SERVERS__PG1__CONNINFO=host=env",
			"CELLAR_SERVERS__PG1__CHECK_TIMEOUT=45s",
			"CELLAR_SERVERS__PG2__CONNINFO=host=two",
		},
		Flags: fs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Global.LogLevel != LogError {
		t.Errorf("flag must beat env and file: log_level = %s", cfg.Global.LogLevel)
	}
	if cfg.Global.BarmanHome != "/env/home" {
		t.Errorf("an unchanged flag must not override: barman_home = %s", cfg.Global.BarmanHome)
	}
	if cfg.Global.Web.ListenAddress != ":9999" {
		t.Errorf("env must beat file, unchanged flag must not: listen_address = %s", cfg.Global.Web.ListenAddress)
	}
	s := cfg.Servers["PG1"]
	if s == nil || s.Conninfo.Raw() != "host=env" || s.CheckTimeout != 7*time.Second {
		t.Errorf("PG1 = %+v (servers %v)", s, cfg.ServerNames())
	}
	if s2 := cfg.Servers["pg2"]; s2 == nil || s2.Conninfo.Raw() != "host=two" || s2.BackupDirectory != "/env/home/pg2" {
		t.Errorf("pg2 from env = %+v", s2)
	}
}

func TestLoadNoFile(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 0 || cfg.Global.BarmanHome != DefaultBarmanHome {
		t.Errorf("%+v", cfg)
	}
	if _, err := Load(LoadOptions{File: filepath.Join(t.TempDir(), "missing.yaml")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	} else if ce := new(Error); !errors.As(err, &ce) || !strings.HasSuffix(ce.File, "missing.yaml") {
		t.Errorf("missing file error must name the file: %v", err)
	}
}

func TestLoadPassive(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: writeConfig(t, `
servers:
  standby:
    primary_ssh_command: ssh barman@primary
    streaming_archiver: on
`)})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Servers["standby"]; !s.IsPassive() {
		t.Errorf("%+v", s)
	}
}

func TestLoadWarnings(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: writeConfig(t, `
servers:
  pg1:
    conninfo: host=h
    retention_policy: REDUNDANCY 1
    minimum_redundancy: 2
`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "minimum_redundancy") {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
}

func TestLoadYAMLMergeKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: writeConfig(t, `
x-common: &common
  compression: gzip
  check_timeout: 10s
servers:
  a:
    <<: *common
    conninfo: host=a
  b:
    <<: *common
    conninfo: host=b
    check_timeout: 20s
`)})
	// x-common is not an option: refused, but the servers still decode.
	if err == nil || !strings.Contains(err.Error(), `key "x-common": unknown option`) || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("want only the x-common error, got %v", err)
	}
	_ = cfg
	cfg, err = Load(LoadOptions{File: writeConfig(t, `
servers:
  a: &a
    compression: gzip
    check_timeout: 10s
    conninfo: host=a
    backup_directory: /a
  b:
    <<: *a
    conninfo: host=b
    backup_directory: /b
    check_timeout: 20s
`)})
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Servers["b"]
	if b.Compression != CompressionGzip || b.CheckTimeout != 20*time.Second || b.Conninfo.Raw() != "host=b" {
		t.Errorf("merged server: %+v", b)
	}
}

// TestLoadErrors covers every error path: each case must produce exactly
// the listed messages (all of them, at once).
func TestLoadErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		yaml    string
		env     []string
		want    []string // substrings, one per expected error line
		wantErr error
	}{
		{"unknown server key", "servers:\n  pg1:\n    conninfo: h\n    retention_polcy: REDUNDANCY 2\n",
			nil, []string{`config.yaml:4: server "pg1": key "retention_polcy": unknown option (did you mean "retention_policy"?)`}, ErrUnknownOption},
		{"unknown global key", "global:\n  log_levl: INFO\n",
			nil, []string{`config.yaml:2: key "global.log_levl": unknown option (did you mean "log_level"?)`}, ErrUnknownOption},
		{"unknown web key", "global:\n  web:\n    listen: x\n",
			nil, []string{`config.yaml:3: key "global.web.listen": unknown option`}, ErrUnknownOption},
		{"unknown top key", "server:\n  pg1: {}\n",
			nil, []string{`config.yaml:1: key "server": unknown option (did you mean "servers"?)`}, ErrUnknownOption},
		{"barman-only option", "servers:\n  pg1:\n    conninfo: h\n    ssh_command: ssh pg\n",
			nil, []string{`key "ssh_command": Barman option not supported by Cellar: it is used by rsync backups only`}, ErrUnknownOption},
		{"many errors at once", "global:\n  log_level: LOUD\nservers:\n  pg1:\n    conninfo: h\n    archiver: maybe\n    check_timeout: soon\n    parallel_jobs: many\n    last_backup_minimum_size: 1 GB\n    retention_policy: KEEP 2\n",
			nil, []string{
				`config.yaml:2: key "global.log_level": invalid value "LOUD" (allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL)`,
				`config.yaml:6: server "pg1": key "archiver": invalid boolean "maybe"`,
				`config.yaml:7: server "pg1": key "check_timeout": invalid duration "soon"`,
				`config.yaml:8: server "pg1": key "parallel_jobs": invalid integer "many"`,
				`config.yaml:9: server "pg1": key "last_backup_minimum_size": invalid size "1 GB"`,
				`config.yaml:10: server "pg1": key "retention_policy": invalid retention policy "KEEP 2"`,
			}, ErrInvalidValue},
		{"rsync", "servers:\n  pg1:\n    conninfo: h\n    backup_method: rsync\n",
			nil, []string{`server "pg1": key "backup_method": backup_method "rsync" is not supported by Cellar (only "postgres" is)`}, ErrUnsupported},
		{"local-rsync", "servers:\n  pg1:\n    conninfo: h\n    backup_method: local-rsync\n",
			nil, []string{`backup_method "local-rsync" is not supported by Cellar`}, ErrUnsupported},
		{"bzip2", "servers:\n  pg1:\n    conninfo: h\n    compression: bzip2\n",
			nil, []string{`config.yaml:4: server "pg1": key "compression": compression "bzip2" is read-only in Cellar`}, ErrUnsupported},
		{"all reserved", "servers:\n  all:\n    conninfo: h\n",
			nil, []string{`config.yaml:2: server "all": "all" is reserved`}, ErrInvalidServerName},
		{"slash in name", "servers:\n  a/b:\n    conninfo: h\n",
			nil, []string{`server "a/b": "a/b" is not a valid server name`}, ErrInvalidServerName},
		{"dot name", "servers:\n  ..:\n    conninfo: h\n",
			nil, []string{`server "..": ".." is not a valid server name`}, ErrInvalidServerName},
		{"missing conninfo", "servers:\n  pg1:\n    description: x\n",
			nil, []string{`config.yaml:2: server "pg1": key "conninfo": conninfo is required`}, ErrMissing},
		{"streaming without slot", "servers:\n  pg1:\n    conninfo: h\n    streaming_archiver: on\n",
			nil, []string{`server "pg1": key "slot_name": slot_name is required when streaming_archiver is on`}, ErrMissing},
		{"bad slot", "servers:\n  pg1:\n    conninfo: h\n    slot_name: Barman-1\n",
			nil, []string{`config.yaml:4: server "pg1": key "slot_name": invalid slot_name "Barman-1"`}, ErrInvalidValue},
		{"duplicate backup dir", "servers:\n  a:\n    conninfo: h\n    backup_directory: /x/y\n  b:\n    conninfo: h\n    backup_directory: /x/y/\n",
			nil, []string{`config.yaml:7: server "b": key "backup_directory": backup_directory "/x/y" is also used by server "a"`}, ErrInvalidValue},
		{"default dir clash", "servers:\n  a:\n    conninfo: h\n  b:\n    conninfo: h\n    backup_directory: /var/lib/cellar/a\n",
			nil, []string{`server "b": key "backup_directory": backup_directory "/var/lib/cellar/a" is also used by server "a"`}, ErrInvalidValue},
		{"relative dirs", "global:\n  barman_home: backups\nservers:\n  a:\n    conninfo: h\n    backup_directory: rel\n",
			nil, []string{`key "global.barman_home": barman_home "backups" must be an absolute path`, `server "a": key "backup_directory": backup_directory "rel" must be an absolute path`}, ErrInvalidValue},
		{"backup compression level", "servers:\n  a:\n    conninfo: h\n    backup_compression_level: 5\n  b:\n    conninfo: h\n    backup_compression: gzip\n    backup_compression_level: 10\n",
			nil, []string{`server "a": key "backup_compression_level": backup_compression_level needs backup_compression`, `server "b": key "backup_compression_level": backup_compression_level 10 is out of range for gzip (1..9)`}, ErrInvalidValue},
		{"bad cron", "servers:\n  a:\n    conninfo: h\n    backup_schedule: every night\n",
			nil, []string{`key "backup_schedule": invalid backup_schedule "every night"`}, ErrInvalidValue},
		{"bad barman_compatibility", "global:\n  barman_compatibility: \"3.9\"\n",
			nil, []string{`config.yaml:2: key "global.barman_compatibility": invalid barman_compatibility "3.9" (use 3.4 or 3.17)`}, ErrInvalidValue},
		{"bad verify cron", "global:\n  verify_backup_schedule: weekly\n  verify_backup_max_age: 0\nservers:\n  a:\n    conninfo: h\n    verify_backup_schedule: 61 * * * * * *\n    verify_backup_max_age: a week\n",
			nil, []string{
				`config.yaml:2: key "global.verify_backup_schedule": invalid verify_backup_schedule "weekly"`,
				`config.yaml:3: key "global.verify_backup_max_age": must be greater than zero`,
				`config.yaml:7: server "a": key "verify_backup_schedule": invalid verify_backup_schedule "61 * * * * * *"`,
				`config.yaml:8: server "a": key "verify_backup_max_age": invalid duration "a week"`,
			}, ErrInvalidValue},
		{"ranges", "global:\n  web:\n    listen_address: nowhere\n  daemon:\n    archive_interval: 0\nservers:\n  a:\n    conninfo: h\n    parallel_jobs: 0\n    minimum_redundancy: -1\n    check_timeout: 0\n",
			nil, []string{
				`key "global.web.listen_address": invalid listen_address "nowhere"`,
				`key "global.daemon.archive_interval": must be greater than zero`,
				`server "a": key "check_timeout": check_timeout must be greater than zero`,
				`server "a": key "minimum_redundancy": -1 is below the minimum 0`,
				`server "a": key "parallel_jobs": 0 is below the minimum 1`,
			}, ErrInvalidValue},
		{"server not a map", "servers:\n  pg1: hello\n",
			nil, []string{`config.yaml:2: server "pg1": expected a mapping of options, got the value "hello"`}, ErrInvalidValue},
		{"list value", "servers:\n  pg1:\n    conninfo: [a, b]\n",
			nil, []string{`config.yaml:3: server "pg1": key "conninfo": expected a single value, got a list`}, ErrInvalidValue},
		{"top level list", "- a\n- b\n",
			nil, []string{`config.yaml:1: the top level must be a mapping`}, ErrInvalidValue},
		{"yaml syntax", "servers:\n  pg1:\n conninfo: : :\n\t- x\n",
			nil, []string{`config.yaml: yaml:`}, ErrInvalidValue},
		{"duplicate key", "servers:\n  pg1:\n    conninfo: a\n    conninfo: b\n",
			nil, []string{`config.yaml:4: key "conninfo" is defined twice`}, ErrInvalidValue},
		{"env unknown", "servers:\n  pg1:\n    conninfo: h\n",
			[]string{"CELLAR_SERVERS__PG1__SLOTNAME=x", "CELLAR_GLOBAL__NOPE=1"},
			[]string{`$CELLAR_GLOBAL__NOPE: key "global.nope": unknown option`, `$CELLAR_SERVERS__PG1__SLOTNAME: server "pg1": key "slotname": unknown option (did you mean "slot_name"?)`}, ErrUnknownOption},
		{"env bad value", "servers:\n  pg1:\n    conninfo: h\n",
			[]string{"CELLAR_SERVERS__PG1__ARCHIVER=sometimes"},
			[]string{`$CELLAR_SERVERS__PG1__ARCHIVER: server "pg1": key "archiver": invalid boolean "sometimes"`}, ErrInvalidValue},
		{"env malformed", "",
			[]string{"CELLAR_SERVERS__PG1=x", "CELLAR_GLOBAL____X=1"},
			[]string{`$CELLAR_GLOBAL____X: malformed variable name`, `$CELLAR_SERVERS__PG1: expected CELLAR_SERVERS__<NAME>__<OPTION>`}, ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(LoadOptions{File: p, Environ: tc.env})
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned with an error")
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			lines := strings.Split(msg, "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(lines), len(tc.want), msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("missing %q in:\n%s", w, msg)
				}
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("errors.Is(%v) is false:\n%s", tc.wantErr, msg)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File == "" {
				t.Errorf("no *Error with a File in %v", err)
			}
		})
	}
}

func TestRedactedView(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: writeConfig(t, minimal)})
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Redacted()
	g := r["global"].(map[string]any)
	if g["barman_home"] != "/var/lib/cellar" || g["web"].(map[string]any)["scrape_timeout"] != "10s" {
		t.Errorf("global view: %v", g)
	}
	s := r["servers"].(map[string]any)["pg1"].(map[string]any)
	if s["conninfo"] != "host=h1 user=barman password=********" || s["name"] != "pg1" || s["check_timeout"] != "30s" || s["parallel_jobs"] != 1 || s["active"] != true {
		t.Errorf("server view: %v", s)
	}
	opts := cfg.Servers["pg1"].Options()
	if len(opts) != len(OptionNames())+1 {
		t.Errorf("Options has %d entries, want %d", len(opts), len(OptionNames())+1)
	}
	for i := 1; i < len(opts); i++ {
		if opts[i-1].Key >= opts[i].Key {
			t.Fatalf("Options not sorted at %s, %s", opts[i-1].Key, opts[i].Key)
		}
	}
}

// A server takes the global verification options unless it sets its own;
// "off" turns an inherited schedule off.
func TestLoadVerifyBackupDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: writeConfig(t, `
global:
  verify_backup_schedule: "@weekly"
  verify_backup_max_age: 3 days
servers:
  inherits:
    conninfo: h
  own:
    conninfo: h
    verify_backup_schedule: "0 4 * * *"
    verify_backup_max_age: 36h
  off:
    conninfo: h
    verify_backup_schedule: "OFF"
`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		server, schedule string
		maxAge           time.Duration
	}{
		{"inherits", "@weekly", 72 * time.Hour},
		{"own", "0 4 * * *", 36 * time.Hour},
		{"off", "", 72 * time.Hour},
	} {
		s := cfg.Servers[tc.server]
		if s.VerifyBackupSchedule != tc.schedule || s.VerifyBackupMaxAge != tc.maxAge {
			t.Errorf("%s: schedule %q max age %s, want %q %s", tc.server, s.VerifyBackupSchedule, s.VerifyBackupMaxAge, tc.schedule, tc.maxAge)
		}
	}
	// The environment overrides a server's option like any other.
	cfg, err = Load(LoadOptions{File: writeConfig(t, minimal), Environ: []string{"CELLAR_SERVERS__PG1__VERIFY_BACKUP_SCHEDULE=@daily", "CELLAR_GLOBAL__VERIFY_BACKUP_MAX_AGE=2 days"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Servers["pg1"]; s.VerifyBackupSchedule != "@daily" || s.VerifyBackupMaxAge != 48*time.Hour {
		t.Errorf("env: %+v", s)
	}
}
