// Package archtest enforces the import direction of docs/STYLE.md §3.3: lower
// layers never import higher ones and operation packages never import each
// other. It runs with the normal test command so a violation fails CI.
package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/cellar-backup/cellar"

// allowed maps a package (relative to the module) to the in-project packages
// its non-test code may import. The test harnesses (testHarness) are for
// tests only and are checked separately.
var allowed = map[string][]string{
	"wal":                      {},
	"internal/durable":         {},
	"internal/lock":            {},
	"internal/pgtest":          {},
	"internal/hooks/hookstest": {},
	"internal/durable/faultfs": {"internal/durable"},
	"internal/archtest":        {},
	"internal/versionmatrix":   {},
	"catalog":                  {"wal", "internal/durable", "internal/lock"},
	"postgres":                 {"wal"},
	"archive":                  level2,
	"archive/stream":           level2,
	"incremental":              {"wal"},
	"backup":                   append([]string{"incremental"}, level2...),
	"recovery":                 append([]string{"incremental"}, level2...),
	"retention":                level2,
	"drill":                    {"recovery", "catalog", "postgres", "wal", "internal/durable", "internal/lock"},
	"passive":                  level2,
	"internal/hooks":           {},
	"internal/binenc":          {},
	"internal/walclient":       {"wal", "catalog", "archive", "internal/durable", "internal/lock"},
	"config":                   {"wal", "retention"},
	"server":                   append([]string{"config", "archive", "archive/stream", "backup", "recovery", "retention", "passive", "drill"}, level2...),
	"checks":                   {"config", "catalog", "wal", "internal/binenc"},
	"alerts":                   {"checks"},
	"exporter":                 {"checks", "checktarget", "server", "config", "catalog", "wal"},
	"checktarget":              {"checks", "server", "config", "catalog", "postgres", "wal", "internal/binenc", "internal/durable", "internal/lock", "passive"},
	"jobs":                     {"checks", "checktarget", "server", "config", "catalog", "wal", "internal/lock"},
}

// testHarness packages may be imported by any package's tests and by no
// package's code.
var testHarness = map[string]bool{"internal/pgtest": true, "internal/hooks/hookstest": true, "internal/durable/faultfs": true}

// testPeers lets a package's tests use a peer package to produce their
// input: recovery's incremental chain tests take real incremental backups
// with backup (which never imports recovery).
var testPeers = map[string][]string{"recovery": {"backup"}}

var level2 = []string{"catalog", "postgres", "wal", "internal/durable", "internal/lock", "internal/hooks"}

// thirdParty limits where some external modules may be used.
var thirdParty = map[string][]string{
	"github.com/knadh/koanf":                 {"config"},
	"github.com/go-co-op/gocron":             {"jobs"},
	"github.com/prometheus/client_golang":    {"exporter", "cmd/cellar"},
	"github.com/prometheus/exporter-toolkit": {"exporter"},
	"github.com/jackc/pgx":                   {"postgres", "archive/stream", "backup", "internal/pgtest"},
	"github.com/jackc/pglogrepl":             {"postgres", "archive/stream", "backup"},
	"os/exec":                                {"backup", "recovery", "drill", "internal/hooks", "internal/pgtest", "cmd/cellar", "passive", "archive"},
}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = "../.."
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, errb.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r, true
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestLayers(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	var problems []string
	for _, p := range pkgs {
		from, _ := rel(p.ImportPath)
		isCmd := strings.HasPrefix(from, "cmd/")
		rules, known := allowed[from]
		if !known && !isCmd {
			problems = append(problems, from+" is not in the layering table (add it to internal/archtest and docs)")
			continue
		}
		for _, imp := range p.Imports {
			if to, ok := rel(imp); ok {
				if testHarness[to] {
					problems = append(problems, from+" may not import "+to+" outside tests")
					continue
				}
				if !isCmd && !contains(rules, to) {
					problems = append(problems, from+" may not import "+to+" (see docs/STYLE.md §3.3)")
				}
				continue
			}
			for prefix, users := range thirdParty {
				if imp == prefix || strings.HasPrefix(imp, prefix+"/") {
					if !contains(users, from) && !(isCmd && contains(users, "cmd/cellar")) {
						problems = append(problems, from+" may not import "+imp+" (see docs/STYLE.md §3.3)")
					}
				}
			}
		}
		// Tests may use the test harness and the package under test's
		// dependencies, but still never a higher layer's package.
		for _, imp := range append(append([]string{}, p.TestImports...), p.XTestImports...) {
			to, ok := rel(imp)
			if !ok || to == from || testHarness[to] || to == "postgres" || isCmd {
				continue
			}
			if !contains(rules, to) && !contains(testPeers[from], to) {
				problems = append(problems, from+" tests may not import "+to+" (see docs/STYLE.md §3.3)")
			}
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

func TestTableRejectsUpwardImport(t *testing.T) {
	// Guard against a table so permissive that the test above cannot fail.
	for _, bad := range [][2]string{{"wal", "catalog"}, {"catalog", "server"}, {"archive", "backup"}, {"checks", "server"}, {"config", "catalog"}} {
		if contains(allowed[bad[0]], bad[1]) {
			t.Errorf("table allows %s -> %s", bad[0], bad[1])
		}
	}
}
