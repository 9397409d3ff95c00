// Package alerts renders check results ([]checks.Result) for people and
// monitoring systems: Barman's console layout, Barman's JSON, and a Nagios
// plugin (status line, perfdata, long output, exit code). Renderers never
// run checks; they only format what the registry measured.
package alerts

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/cellar-backup/cellar/checks"
)

// visible reports whether Barman would print the result: failure-only
// checks print nothing when they pass.
func visible(r checks.Result) bool { return !(r.FailureOnly && r.Status == checks.OK) }

// groupByServer keeps the servers in first-seen order.
func groupByServer(results []checks.Result) ([]string, map[string][]checks.Result) {
	var order []string
	by := map[string][]checks.Result{}
	for _, r := range results {
		if _, ok := by[r.Server]; !ok {
			order = append(order, r.Server)
		}
		by[r.Server] = append(by[r.Server], r)
	}
	return order, by
}

func okFailed(s checks.Status) string {
	if s.Failed() {
		return "FAILED"
	}
	return "OK"
}

// Console writes Barman's `check` layout ("Server pg1:" then a tab,
// "<check>: OK|FAILED", and " (<hint>)") and returns the exit code: 1 if a
// result of an active server failed, else 0. WARNING, CRITICAL and UNKNOWN
// all print as FAILED.
func Console(w io.Writer, results []checks.Result) int {
	code := 0
	servers, by := groupByServer(results)
	var b strings.Builder
	for _, srv := range servers {
		rs := by[srv]
		b.WriteString("Server " + srv + ":")
		if len(rs) > 0 && rs[0].Inactive {
			b.WriteString(" (inactive)")
		}
		b.WriteString("\n")
		for _, r := range rs {
			if r.Status.Failed() && !r.Inactive {
				code = 1
			}
			if !visible(r) {
				continue
			}
			fmt.Fprintf(&b, "\t%s: %s", r.Check, okFailed(r.Status))
			if r.Hint != "" {
				fmt.Fprintf(&b, " (%s)", r.Hint)
			}
			b.WriteString("\n")
		}
	}
	_, _ = io.WriteString(w, b.String())
	return code
}

// JSONKey turns a check label into Barman's JSON key: lower case, spaces
// and '-' to '_', '.' removed.
func JSONKey(name string) string {
	return strings.NewReplacer(" ", "_", "-", "_", ".", "").Replace(strings.ToLower(name))
}

type jsonCheck struct {
	Status string `json:"status"`
	Hint   string `json:"hint"`
}

// JSON writes Barman's `check -f json` document,
// {server: {key: {"status": "OK"|"FAILED", "hint": ""}}}, and returns the
// same exit code as Console.
func JSON(w io.Writer, results []checks.Result) (int, error) {
	code := 0
	doc := map[string]map[string]jsonCheck{}
	for _, r := range results {
		if doc[r.Server] == nil {
			doc[r.Server] = map[string]jsonCheck{}
		}
		if r.Status.Failed() && !r.Inactive {
			code = 1
		}
		if !visible(r) {
			continue
		}
		doc[r.Server][JSONKey(r.Check)] = jsonCheck{Status: okFailed(r.Status), Hint: r.Hint}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	if err := enc.Encode(doc); err != nil {
		return 3, fmt.Errorf("write check results as JSON: %w", err)
	}
	return code, nil
}
