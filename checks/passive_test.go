package checks

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// pgSpy records every Target method that would reach PostgreSQL.
type pgSpy struct {
	Target
	mu    sync.Mutex
	calls []string
}

func (s *pgSpy) record(m string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, m)
}

func (s *pgSpy) PostgresStatus(ctx context.Context) (*PGStatus, error) {
	s.record("PostgresStatus")
	return s.Target.PostgresStatus(ctx)
}

func (s *pgSpy) StreamingStatus(ctx context.Context) (*StreamingStatus, error) {
	s.record("StreamingStatus")
	return s.Target.StreamingStatus(ctx)
}

func (s *pgSpy) WALPostgresStatus(ctx context.Context) (*PGStatus, error) {
	s.record("WALPostgresStatus")
	return s.Target.WALPostgresStatus(ctx)
}

func (s *pgSpy) WALStreamingStatus(ctx context.Context) (*StreamingStatus, error) {
	s.record("WALStreamingStatus")
	return s.Target.WALStreamingStatus(ctx)
}

func (s *pgSpy) PrimaryStatus(ctx context.Context) (*PGStatus, error) {
	s.record("PrimaryStatus")
	return s.Target.PrimaryStatus(ctx)
}

// fakeSSH writes a script that behaves like a working ssh client: it drops
// the host argument and runs the rest through a shell.
func fakeSSH(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-ssh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nshift\nexec sh -c \"$*\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbeSSH(t *testing.T) {
	t.Parallel()
	ssh := fakeSSH(t)
	tests := []struct {
		name    string
		command string // primary_ssh_command; "" = not passive
		lag     *PassiveStatus
		want    Status
		hint    string
		skip    bool
	}{
		{name: "not passive", skip: true},
		{name: "reachable, never synced", command: ssh + " primary", want: OK, hint: "Barman primary node"},
		{name: "reachable with lag", command: ssh + " primary", lag: &PassiveStatus{LagSeconds: 42.5, LagSegments: 3}, want: OK, hint: "Barman primary node"},
		{name: "unreachable keeps the lag", command: "false", lag: &PassiveStatus{LagSeconds: 7, LagSegments: 1}, want: Critical, hint: "exit status 1"},
		{name: "missing ssh binary", command: filepath.Join(t.TempDir(), "no-such-ssh") + " primary", want: Critical, hint: "no-such-ssh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tgt := newRealTarget(t, "pg")
			tgt.cfg.PrimarySSHCommand = tc.command
			tgt.lag = tc.lag
			if tc.skip {
				mustSkip(t, tgt, "ssh")
				return
			}
			r := mustProbe(t, tgt, "ssh", tc.want, tc.hint)
			if tc.lag == nil {
				if len(r.Values) != 0 || len(r.Perf) != 0 {
					t.Errorf("lag unknown but values %v perf %v", r.Values, r.Perf)
				}
				return
			}
			want := map[string]float64{
				"passive_sync_lag_seconds":  tc.lag.LagSeconds,
				"passive_sync_lag_segments": float64(tc.lag.LagSegments),
			}
			for k, v := range want {
				if got, ok := r.Values[k]; !ok || got != v {
					t.Errorf("Values[%s] = %v (%v), want %v", k, got, ok, v)
				}
			}
			if len(r.Perf) != 2 || r.Perf[0].Label != "sync_lag" || r.Perf[0].Value != tc.lag.LagSeconds || r.Perf[1].Value != float64(tc.lag.LagSegments) {
				t.Errorf("perf = %+v", r.Perf)
			}
		})
	}
}

// TestPassiveServerNeverTouchesPostgreSQL: every conninfo is set, yet a
// passive server's full check run asks PostgreSQL nothing and reports no
// PostgreSQL probe, while the catalog probes and ssh still run.
func TestPassiveServerNeverTouchesPostgreSQL(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	c := tgt.cfg
	c.PrimarySSHCommand = fakeSSH(t) + " primary"
	c.StreamingArchiver = true
	c.SlotName = "cellar"
	c.StreamingConninfo = c.Conninfo
	c.WALConninfo = "host=/nonexistent-wal dbname=postgres connect_timeout=2"
	c.WALStreamingConninfo = "host=/nonexistent-walstream dbname=postgres connect_timeout=2"
	c.PrimaryConninfo = "host=/nonexistent-primary dbname=postgres connect_timeout=2"
	c.CheckTimeout = 30 * time.Second
	spy := &pgSpy{Target: tgt}
	results := Default().Run(t.Context(), spy, Full)
	if len(spy.calls) != 0 {
		t.Errorf("passive server queried PostgreSQL: %v", spy.calls)
	}
	got := map[string]Result{}
	for _, r := range results {
		got[r.Key] = r
		if p, _ := Default().Probe(r.Key); p.Group == "postgres" || p.Group == "wal_streaming" {
			t.Errorf("PostgreSQL probe %q ran on a passive server: %s (%s)", r.Key, r.Status, r.Hint)
		}
	}
	for _, k := range []string{"ssh", "directories", "failed_backups", "archiver_errors", "wal_size"} {
		if _, ok := got[k]; !ok {
			t.Errorf("probe %q missing on a passive server; got %v", k, keys(got))
		}
	}
	if r := got["ssh"]; r.Status != OK || r.Hint != "Barman primary node" {
		t.Errorf("ssh = %s (%q)", r.Status, r.Hint)
	}
	for _, k := range []string{"receive_wal_running", "replication_slot", "configuration"} {
		if r, ok := got[k]; ok && r.Status != OK {
			t.Errorf("%s = %s (%q) on a passive server", k, r.Status, r.Hint)
		}
	}
}

func keys(m map[string]Result) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
