package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An invalid value in barman.conf fails the import with the configuration
// exit code, names file, line, section, option and value, and writes no
// output file.
func TestConfigImportBarmanInvalidValue(t *testing.T) {
	dir := t.TempDir()
	ini := filepath.Join(dir, "barman.conf")
	conf := "[barman]\nminimum_redundancy = two\n\n[pg]\nconninfo = host=pg\nbackup_method = postgres\nretention_policy = REDUNDANCY many\n"
	if err := os.WriteFile(ini, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := filepath.Join(dir, "out.yaml")
	_, errOut, code := runCLI(t, "config", "import-barman", ini, "-o", yaml)
	if code != exitUsage {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitUsage, errOut)
	}
	for _, want := range []string{
		ini + `:2: key "minimum_redundancy": [barman] minimum_redundancy = "two"`,
		ini + `:7: server "pg": key "retention_policy": [pg] retention_policy = "REDUNDANCY many"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, err := os.Stat(yaml); !os.IsNotExist(err) {
		t.Errorf("output file written despite the error (stat: %v)", err)
	}
}
