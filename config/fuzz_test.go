package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
		red := cfg.Redacted()
		var buf bytes.Buffer
		for _, s := range cfg.Servers {
			buf.WriteString(s.Conninfo.String())
		}
		if bytes.Contains(data, []byte("FUZZSECRET")) && strings.Contains(buf.String(), "FUZZSECRET") {
			t.Fatalf("password visible in %v", red)
		}
	})
}
