// Package hookstest helps tests that run real hook scripts: a script that
// records the BARMAN_* environment it was given, and a reader for what it
// recorded.
package hookstest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// EnvDump is a hook command appending the script's BARMAN_* variables to
// file, one block per run.
func EnvDump(file string) string {
	return fmt.Sprintf(`{ env | grep '^BARMAN_' | sort; echo --; } >> %s`, file)
}

// ReadDumps parses the blocks EnvDump wrote to file, one map per run.
func ReadDumps(t testing.TB, file string) []map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("hook output %s: %v", file, err)
	}
	var out []map[string]string
	cur := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "--" {
			out = append(out, cur)
			cur = map[string]string{}
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			cur[k] = v
		}
	}
	return out
}
