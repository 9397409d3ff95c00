package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// FuzzLoadConfig feeds arbitrary YAML to Load. Properties: no panic; a
// failure is a *Error naming the file; a success is fully validated (every
// server has a backup directory and an archiver) and its redacted view
// never contains a configured password.
func FuzzLoadConfig(f *testing.F) {
	if b, err := os.ReadFile("../config.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"",
		minimal,
		"servers:\n  pg1:\n    conninfo: host=h password=FUZZSECRET\n    streaming_archiver: on\n    slot_name: s\n",
		"global:\n  web: {listen_address: ':1'}\nservers: {a: {conninfo: h}, b: {conninfo: h, backup_directory: /x}}\n",
		"servers:\n  a: &a {conninfo: h}\n  b: {<<: *a, backup_directory: /b}\n",
		"a: &a [*a]\n",
		"servers:\n  pg1: [1, 2]\n",
		"servers:\n  ? [x]\n  : y\n",
		"- - - - -\n",
		"servers:\n  pg1:\n    retention_policy: RECOVERY WINDOW OF 99999999999999999999 DAYS\n",
		"global: {barman_home: /x, log_level: 3}\n",
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "fuzz.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(LoadOptions{File: p})
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned together with an error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a *config.Error: %v", err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, name := range cfg.ServerNames() {
			s := cfg.Servers[name]
			if s.BackupDirectory == "" || !(s.Archiver || s.StreamingArchiver) || ValidServerName(name) != nil {
				t.Fatalf("unvalidated server %q: %+v", name, s)
			}
		}
		// FUZZSECRET given as a password (keyword or URI userinfo) must
		// not survive redaction; as a host or database name it may.
		for _, s := range cfg.Servers {
			if red := s.Conninfo.String(); passwordShown().MatchString(red) {
				t.Fatalf("password visible in %q", red)
			}
		}
	})
}

var passwordShown = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)(^|\s)password\s*=\s*'?FUZZSECRET|://[^/@]*:FUZZSECRET@`)
})

// FuzzImportBarmanINI feeds arbitrary INI text to ImportBarmanINI.
// Properties: no panic; a failure is an *Error (or joins them) and returns
// YAML only when the conversion itself succeeded but does not validate; a
// success is YAML that Load accepts from a real file; every warning names
// the input.
func FuzzImportBarmanINI(f *testing.F) {
	if b, err := os.ReadFile("testdata/barman.conf"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"[pg]\nconninfo = h\nbackup_method = postgres\n",
		"[barman]\nminimum_redundancy = two\nretention_policy = KEEP\n[pg]\nconninfo=h\n",
		"[barman]\ncompression = pigz\n[pg]\nconninfo = h\ncompression = custom\nbackup_method = rsync\n",
		"[pg]\nconninfo = %(x)s\n",
		"[pg]\nmodel = maybe\n",
		"[all]\n[pg]\nstreaming_archiver = on\n  continued\n",
		"[barman]\nverify_backup_schedule = @daily\n[pg]\nconninfo = h\nverify_backup_max_age = 3 days\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, warns, err := ImportBarmanINI(bytes.NewReader(data), "fuzz.conf")
		for _, w := range warns {
			if !strings.HasPrefix(w, "fuzz.conf") {
				t.Fatalf("warning does not name the input: %q", w)
			}
		}
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a *config.Error: %v", err)
			}
			if out != nil && !strings.Contains(err.Error(), "does not validate") {
				t.Fatalf("YAML returned with a conversion error: %v", err)
			}
			return
		}
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, out, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(LoadOptions{File: p}); err != nil {
			t.Fatalf("converted YAML does not load: %v\n%s", err, out)
		}
	})
}
