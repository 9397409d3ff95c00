package alerts

import (
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/cellar-backup/cellar/checks"
)

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install the Debian package `prometheus` (apt-get install -y --no-install-recommends prometheus); .ci/run must provide it")
	}
	return p
}

func TestRulesWithPromtool(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "cellar.rules.yml"},
		{"test", "rules", "cellar.rules_test.yml"},
		{"check", "rules", "cellar-self.rules.yml"},
		{"test", "rules", "cellar-self.rules_test.yml"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// TestRulesUseExportedMetrics keeps the rules in step with what the
// exporter emits: every cellar_* name must be a probe gauge or one of the
// collector's, the daemon's job or the build metrics.
func TestRulesUseExportedMetrics(t *testing.T) {
	t.Parallel()
	known := map[string]bool{
		"cellar_check_status": true, "cellar_check_duration_seconds": true, "cellar_up": true,
		"cellar_server_info": true, "cellar_scrape_duration_seconds": true,
		"cellar_check_oldest_result_timestamp_seconds": true,
		"cellar_job_runs_total":                        true, "cellar_job_failures_total": true,
		"cellar_job_last_success_timestamp_seconds": true, "cellar_job_duration_seconds": true,
		"cellar_build_info": true,
	}
	for _, g := range checks.Default().Gauges() {
		known["cellar_"+g.Name] = true
	}
	for _, file := range []string{"cellar.rules.yml", "cellar-self.rules.yml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := regexp.MustCompile(`\bcellar_[a-z0-9_]+`).FindAllString(string(data), -1)
		if len(used) == 0 {
			t.Fatalf("no cellar_ metric in %s", file)
		}
		for _, m := range used {
			if !known[m] {
				t.Errorf("%s uses %s, which the exporter does not emit", file, m)
			}
		}
	}
}
