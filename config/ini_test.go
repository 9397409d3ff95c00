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
[pg]
conninfo = host=h
backup_method = rsync
compression = custom
backup_compression = bzip2
backup_compression_level = 3
archiver = sure
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
	for _, w := range []string{"compression:", "backup_compression", "archiver:", "log_format"} {
		if strings.Contains(s, w) {
			t.Errorf("output must not contain %q:\n%s", w, s)
		}
	}
	joined := strings.Join(warns, "\n")
	for _, w := range []string{"log_format", "backup_method rsync is not supported", "compression custom dropped", "backup_compression bzip2 dropped", `option archiver dropped: invalid value "sure"`, "unknown option continued ignored"} {
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
