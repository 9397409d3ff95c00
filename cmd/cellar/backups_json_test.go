package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// jsonKind names a decoded JSON value's type.
func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// missingKeys lists, as paths, every key of want absent from got or of
// another JSON type there; nested objects are compared the same way.
// Keys only got has are allowed (Barman 3.13+ additions).
func missingKeys(path string, want, got map[string]any) []string {
	var out []string
	for k, wv := range want {
		p := path + "." + k
		gv, ok := got[k]
		if !ok {
			out = append(out, p+": missing")
			continue
		}
		// Barman 3.4 writes 0 for "no WAL rate" and a string otherwise.
		if wk, gk := jsonKind(wv), jsonKind(gv); wk != gk && !(wv == float64(0) && gk == "string") {
			out = append(out, fmt.Sprintf("%s: %s, Barman has %s", p, gk, wk))
			continue
		}
		if wm, ok := wv.(map[string]any); ok {
			out = append(out, missingKeys(p, wm, gv.(map[string]any))...)
		}
	}
	sort.Strings(out)
	return out
}

func readJSONFile(t *testing.T, p string, v any) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// TestBackupJSONMatchesBarman: on a catalog written by Debian's Barman 3.4
// and Cellar, `-f json` show-backup and list-backups carry every key of
// `barman -f json` (captured on the same catalog) with the same JSON type,
// and the same values where both count the same thing.
func TestBackupJSONMatchesBarman(t *testing.T) {
	t.Setenv("TZ", "UTC")
	const dir = "testdata/barman34json"
	home := t.TempDir()
	copyTree(t, filepath.Join(dir, "pg"), filepath.Join(home, "pg"))
	cfg := filepath.Join(t.TempDir(), "cellar.yaml")
	text := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: \"host=/nonexistent port=1 user=barman\"\n", home)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	const id = "20261203T202614"

	var barmanShow, cellarShow map[string]map[string]any
	readJSONFile(t, filepath.Join(dir, "barman-show-backup.json"), &barmanShow)
	out, errOut, code := runCLI(t, "-c", cfg, "-f", "json", "show-backup", "pg", id)
	if code != 0 || json.Unmarshal([]byte(out), &cellarShow) != nil {
		t.Fatalf("show-backup: exit %d\n%s%s", code, out, errOut)
	}
	for _, m := range missingKeys("show-backup", barmanShow["pg"], cellarShow["pg"]) {
		t.Error(m)
	}
	bb := func(doc map[string]map[string]any, k string) any {
		m, _ := doc["pg"]["base_backup_information"].(map[string]any)
		return m[k]
	}
	for _, k := range []string{"disk_usage_bytes", "begin_wal", "end_wal", "begin_lsn", "end_lsn", "begin_offset", "end_offset",
		"begin_time", "end_time", "begin_time_timestamp", "end_time_timestamp", "timeline", "copy_time", "copy_time_seconds",
		"incremental_size_bytes", "incremental_size_ratio", "throughput_bytes", "number_of_workers"} {
		if w, g := bb(barmanShow, k), bb(cellarShow, k); w != g {
			t.Errorf("base_backup_information.%s = %v, Barman says %v", k, g, w)
		}
	}
	for _, k := range []string{"backup_id", "status", "postgresql_version", "pgdata_directory"} {
		if w, g := barmanShow["pg"][k], cellarShow["pg"][k]; w != g {
			t.Errorf("%s = %v, Barman says %v", k, g, w)
		}
	}

	var barmanList, cellarList map[string][]map[string]any
	readJSONFile(t, filepath.Join(dir, "barman-list-backups.json"), &barmanList)
	out, errOut, code = runCLI(t, "-c", cfg, "-f", "json", "list-backups", "pg")
	if code != 0 || json.Unmarshal([]byte(out), &cellarList) != nil || len(cellarList["pg"]) != len(barmanList["pg"]) {
		t.Fatalf("list-backups: exit %d\n%s%s", code, out, errOut)
	}
	for i, want := range barmanList["pg"] {
		got := cellarList["pg"][i]
		for _, m := range missingKeys(fmt.Sprintf("list-backups[%d]", i), want, got) {
			t.Error(m)
		}
		for _, k := range []string{"backup_id", "status", "end_time", "end_time_timestamp", "retention_status"} {
			if want[k] != got[k] {
				t.Errorf("list-backups[%d].%s = %v, Barman says %v", i, k, got[k], want[k])
			}
		}
	}
}
