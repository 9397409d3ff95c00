package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestImportBarmanINI(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/barman.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, warns, err := ImportBarmanINI(f, "barman.conf")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The result must load with Load, from a real file.
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{File: p})
	if err != nil {
		t.Fatalf("converted YAML does not load: %v\n%s", err, out)
	}
	if got := strings.Join(cfg.ServerNames(), ","); got != "pg,ssh-pg,streaming" {
		t.Errorf("servers = %s (model sections must be skipped)", got)
	}
	g := cfg.Global
	if g.BarmanHome != "/srv/barman" || g.BarmanLockDirectory != "/srv/barman/locks" || g.LogFile != "/var/log/barman/barman.log" {
		t.Errorf("global: %+v", g)
	}

	pg := cfg.Servers["pg"]
	if pg.Conninfo.Raw() != "host=127.0.0.1 port=55432 user=postgres dbname=postgres password=Secr3t" ||
		pg.RetentionPolicy.String() != "REDUNDANCY 2" || !pg.Archiver || pg.StreamingArchiver ||
		pg.LastBackupMaximumAge != 24*time.Hour || pg.PathPrefix != "/usr/lib/postgresql/15/bin" ||
		pg.BackupDirectory != "/srv/barman/pg" || pg.Description != `"PostgreSQL 15 (streaming)"` {
		t.Errorf("pg: %+v", pg)
	}
	// [barman] server options are inherited.
	if pg.Compression != CompressionGzip || pg.MinimumRedundancy != 1 || !pg.ImmediateCheckpoint || pg.BasebackupRetryTimes != 3 {
		t.Errorf("pg did not inherit [barman] options: %+v", pg)
	}

	ssh := cfg.Servers["ssh-pg"]
	if ssh.BackupMethod != BackupMethodPostgres || ssh.Compression != CompressionGzip || ssh.ReuseBackup != ReuseLink ||
		ssh.BackupDirectory != "/srv/barman/servers/ssh-pg" || ssh.LastBackupMinimumSize != 10<<30 || ssh.SlotName != "" ||
		ssh.RetentionPolicy.String() != "RECOVERY WINDOW OF 4 WEEKS" {
		t.Errorf("ssh-pg: %+v", ssh)
	}
	st := cfg.Servers["streaming"]
	if !st.StreamingArchiver || st.Archiver || st.SlotName != "barman" || st.CreateSlot != CreateSlotAuto ||
		st.CheckTimeout != 45*time.Second || st.PostBackupRetryScript != `/usr/local/bin/notify "%d done"` {
		t.Errorf("streaming: %+v", st)
	}

	joined := strings.Join(warns, "\n")
	for _, w := range []string{
		"[barman] option barman_user ignored",
		"configuration_files_directory \"/etc/barman.d\"",
		"[barman] option network_compression ignored",
		"barman.conf:58: [ssh-pg] option ssh_command ignored",
		"[ssh-pg] option backup_options ignored",
		"[ssh-pg] option wals_directory ignored: Cellar derives it from backup_directory",
		"[ssh-pg] backup_method not set: Barman's default is rsync",
		"[ssh-pg] compression bzip2 changed to gzip",
		"[template] configuration model skipped",
	} {
		if !strings.Contains(joined, w) {
			t.Errorf("missing warning %q in:\n%s", w, joined)
		}
	}
	if strings.Contains(joined, "[pg] ") || strings.Contains(joined, "[streaming] ") {
		t.Errorf("unexpected warnings for clean servers:\n%s", joined)
	}
}

func TestImportBarmanINIErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"outside section", "conninfo = x\n", "x.conf:1: option outside a [section]"},
		{"no equals", "[pg]\nconninfo\n", `x.conf:2: expected key = value, got "conninfo"`},
		{"dup section", "[pg]\nconninfo=a\n[pg]\n", "x.conf:3: section [pg] is defined twice (first at line 1)"},
		{"dup key", "[pg]\nconninfo=a\nCONNINFO=b\n", `x.conf:3: option "conninfo" in [pg] is defined twice`},
		{"bad header", "[pg\n", "x.conf:1: unterminated section header"},
		{"bad interpolation", "[pg]\nconninfo=host=%(nohost)s\n", `x.conf:2: server "pg": key "conninfo": %(nohost)s in "host=%(nohost)s" refers to an unknown option`},
		{"bad percent", "[pg]\nconninfo=100%\n", `key "conninfo": bad % in "100%"`},
		{"reserved name", "[all]\nconninfo=x\n", `x.conf:1: server "all": "all" is reserved`},
		{"invalid result", "[pg]\nstreaming_archiver = on\nconninfo = h\n", `the converted configuration does not validate: x.conf (converted):6: server "pg": key "slot_name": slot_name is required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ImportBarmanINI(strings.NewReader(tc.in), "x.conf")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("not an *Error: %v", err)
			}
		})
	}
}

func TestImportBarmanINIConversions(t *testing.T) {
	t.Parallel()
	in := `[barman]
barman_home = /b
log_format = %%(asctime)s %%(message)s
log_level = debug
compression = pigz
[pg]
conninfo = host=h
backup_method = rsync
compression = custom
recovery_options = get-wal
continued = a
  b
`
	out, warns, err := ImportBarmanINI(strings.NewReader(in), "c.conf")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	s := string(out)
	for _, w := range []string{"log_level: DEBUG", "backup_method: postgres", "recovery_options: get-wal", "barman_home: /b"} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q:\n%s", w, s)
		}
	}
	for _, w := range []string{"compression:", "log_format"} {
		if strings.Contains(s, w) {
			t.Errorf("output must not contain %q:\n%s", w, s)
		}
	}
	joined := strings.Join(warns, "\n")
	for _, w := range []string{"log_format", "backup_method rsync is not supported", "compression custom dropped", "c.conf:5: [barman] compression pigz changed to gzip", "unknown option continued ignored"} {
		if !strings.Contains(joined, w) {
			t.Errorf("missing warning %q in:\n%s", w, joined)
		}
	}
	// Without barman_home, Barman's own default is written so the existing catalog is found.
	out, _, err = ImportBarmanINI(strings.NewReader("[pg]\nconninfo=h\nbackup_method=postgres\n"), "d.conf")
	if err != nil || !strings.Contains(string(out), "barman_home: /var/lib/barman") {
		t.Errorf("%v\n%s", err, out)
	}
}

// An invalid value must stop the import with an error naming the file,
// line, section and option, as Load does for config.yaml: dropping it with
// a warning would silently change what the server is configured to do
// (a retention policy or minimum_redundancy lost means backups deleted).
func TestImportBarmanINIInvalidValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"server minimum_redundancy", "[pg]\nconninfo = h\nbackup_method = postgres\nminimum_redundancy = two\n",
			[]string{`x.conf:4: server "pg": key "minimum_redundancy": [pg] minimum_redundancy = "two": invalid integer "two"`}},
		{"server retention_policy", "[pg]\nconninfo = h\nbackup_method = postgres\nretention_policy = REDUNDANCY two\n",
			[]string{`x.conf:4: server "pg": key "retention_policy": [pg] retention_policy = "REDUNDANCY two": invalid retention policy`}},
		{"barman minimum_redundancy", "[barman]\nminimum_redundancy = lots\n[pg]\nconninfo = h\nbackup_method = postgres\n",
			[]string{`x.conf:2: key "minimum_redundancy": [barman] minimum_redundancy = "lots": invalid integer "lots"`}},
		{"barman retention_policy", "[barman]\nretention_policy = KEEP ALL\n[pg]\nconninfo = h\nbackup_method = postgres\n",
			[]string{`x.conf:2: key "retention_policy": [barman] retention_policy = "KEEP ALL": invalid retention policy`}},
		{"barman retention_policy, no servers", "[barman]\nretention_policy = KEEP ALL\n",
			[]string{`x.conf:2: key "retention_policy": [barman] retention_policy = "KEEP ALL"`}},
		{"boolean", "[pg]\nconninfo = h\nbackup_method = postgres\narchiver = sure\n",
			[]string{`x.conf:4: server "pg": key "archiver": [pg] archiver = "sure": invalid boolean`}},
		{"duration", "[pg]\nconninfo = h\nbackup_method = postgres\ncheck_timeout = soon\n",
			[]string{`x.conf:4: server "pg": key "check_timeout": [pg] check_timeout = "soon": invalid duration`}},
		{"global log_level", "[barman]\nlog_level = chatty\n",
			[]string{`x.conf:2: key "log_level": [barman] log_level = "chatty"`}},
		{"backup_method", "[pg]\nconninfo = h\nbackup_method = ftp\n",
			[]string{`x.conf:3: server "pg": key "backup_method": [pg] backup_method = "ftp": invalid backup_method`}},
		{"compression", "[pg]\nconninfo = h\nbackup_method = postgres\ncompression = zip\n",
			[]string{`x.conf:4: server "pg": key "compression": [pg] compression = "zip": invalid value`}},
		{"backup_compression", "[pg]\nconninfo = h\nbackup_method = postgres\nbackup_compression = bzip2\n",
			[]string{`x.conf:4: server "pg": key "backup_compression": [pg] backup_compression = "bzip2": invalid value`}},
		{"every problem at once", "[barman]\nminimum_redundancy = x\n[a]\nconninfo = h\nbackup_method = postgres\narchiver = maybe\n[b]\nconninfo = h\nbackup_method = postgres\nretention_policy = forever\n",
			[]string{`x.conf:2: key "minimum_redundancy"`, `x.conf:6: server "a": key "archiver"`, `x.conf:10: server "b": key "retention_policy"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, warns, err := ImportBarmanINI(strings.NewReader(tc.in), "x.conf")
			if err == nil {
				t.Fatalf("no error; warnings %q, output:\n%s", warns, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var ce *Error
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalidValue) {
				t.Errorf("not an *Error wrapping ErrInvalidValue: %v", err)
			}
			if out != nil {
				t.Errorf("YAML returned for an unconvertible input:\n%s", out)
			}
		})
	}
}
