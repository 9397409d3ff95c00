package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// grafanaDashboard is the part of a Grafana dashboard JSON the test needs.
type grafanaDashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// panelQueries returns every panel query of dashboards/cellar.json, with
// the dashboard variables replaced as Grafana would (all servers, a 1m
// rate interval), keyed "panel title #n".
func panelQueries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "dashboards", "cellar.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboards/cellar.json: %v", err)
	}
	r := strings.NewReplacer("$server", ".*", "$__rate_interval", "1m")
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("%s #%d", p.Title, i+1)] = r.Replace(tg.Expr)
		}
	}
	if len(out) == 0 {
		t.Fatal("dashboards/cellar.json has no panel query")
	}
	return out
}

// startPrometheus runs Debian's prometheus on a free loopback port,
// scraping target every second, and returns its base URL once ready.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found: install the Debian package `prometheus`")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	text := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cellar\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	log := &lockedBuffer{}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(log.String(), 30))
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s not ready: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery runs an instant query; it returns the number of series, or an
// error when Prometheus rejects the query.
func promQuery(base, expr string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("decoding the answer (HTTP %s): %w", resp.Status, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%w: %s", errInvalidQuery, r.Error)
	}
	return len(r.Data.Result), nil
}

var errInvalidQuery = errors.New("invalid query")

// Every panel query of the Grafana dashboard is valid PromQL and returns
// series from a real Prometheus scraping a real daemon (exporter, jobs,
// receive-wal, scheduled verification) over a real PostgreSQL 15 backup.
func TestDashboardQueriesAgainstPrometheus(t *testing.T) {
	t.Parallel()
	queries := panelQueries(t)
	e := newVerifyEnv(t, "    streaming_archiver: true\n    slot_name: cellar_dash\n    create_slot: auto\n    verify_backup_schedule: \"@every 1s\"\n")
	e.startDaemon(t)
	scrape(t, e.metricsURL)
	base := startPrometheus(t, e.metricsAddr)

	deadline := time.Now().Add(60 * time.Second)
	pending := queries
	for len(pending) > 0 {
		next := map[string]string{}
		for name, expr := range pending {
			n, err := promQuery(base, expr)
			if errors.Is(err, errInvalidQuery) {
				t.Errorf("panel %q: query %s: %v", name, expr, err)
				continue
			}
			if n == 0 {
				next[name] = expr
			}
		}
		pending = next
		if len(pending) > 0 && time.Now().After(deadline) {
			for name, expr := range pending {
				t.Errorf("panel %q: query %s returned no series", name, expr)
			}
			return
		}
		if len(pending) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
}
