package checks

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDefaultRegistry(t *testing.T) {
	t.Parallel()
	reg := Default()
	probes := reg.Probes()
	// Barman's NON_CRITICAL_CHECKS, as far as Cellar implements them.
	nonCritical := map[string]bool{
		"minimum redundancy requirements": true, "backup maximum age": true, "backup minimum size": true,
		"failed backups": true, "archiver errors": true, "empty incoming directory": true,
		"empty streaming directory": true, "incoming WALs directory": true, "streaming WALs directory": true,
		"wal maximum age": true, "PostgreSQL server is standby": true, "backup verification": true, "restore drill maximum age": true,
		// Cellar's own: a format warning must not stop backups.
		"catalog format": true,
		// Cellar's own: full backups do not need WAL summaries.
		"summarize_wal": true,
	}
	var names []string
	for _, p := range probes {
		names = append(names, p.Name)
		if p.Critical == nonCritical[p.Name] {
			t.Errorf("%q: Critical = %v", p.Name, p.Critical)
		}
		want := strings.NewReplacer(" ", "_", "-", "_").Replace(strings.ToLower(p.Key))
		if p.Key != want {
			t.Errorf("%q: key %q is not snake_case", p.Name, p.Key)
		}
	}
	// Order spot checks (Barman's check()).
	order := []string{"WAL archive", "PostgreSQL", "wal_level", "directories", "backup maximum age",
		"wal size", "compression settings", "failed backups", "configuration", "systemid coherence",
		"receive-wal running", "archive_mode", "archiver errors"}
	pos := -1
	for _, n := range order {
		i := indexOf(names, n)
		if i <= pos {
			t.Errorf("%q at %d, must come after position %d", n, i, pos)
		}
		pos = i
	}
	seen := map[string]bool{}
	for _, g := range reg.Gauges() {
		if seen[g.Name] {
			t.Errorf("gauge %q declared twice", g.Name)
		}
		seen[g.Name] = true
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func probe(key string, critical bool, run func(context.Context, Target) Result) Probe {
	return Probe{Name: "probe " + key, Key: key, Critical: critical, Run: run}
}

func TestNewRegistryRejects(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, Target) Result { return Pass("") }
	for name, ps := range map[string][]Probe{
		"no key":    {{Name: "a", Run: ok}},
		"nil run":   {{Name: "a", Key: "a"}},
		"duplicate": {probe("a", true, ok), probe("a", true, ok)},
	} {
		if _, err := NewRegistry(ps...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRunTimeoutMarksRemainingUnknown(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	tgt.cfg.CheckTimeout = 50 * time.Millisecond
	reg, err := NewRegistry(
		probe("first", true, func(context.Context, Target) Result { return Pass("measured") }),
		probe("hang", true, func(ctx context.Context, _ Target) Result { <-ctx.Done(); return Pass("late") }),
		probe("after", true, func(context.Context, Target) Result { return Pass("never") }),
	)
	if err != nil {
		t.Fatal(err)
	}
	res := reg.Run(t.Context(), tgt, Full)
	if len(res) != 3 {
		t.Fatalf("got %d results", len(res))
	}
	if res[0].Status != OK || res[0].Hint != "measured" || res[0].Server != "pg" || res[0].Key != "first" {
		t.Errorf("first = %+v", res[0])
	}
	for _, r := range res[1:] {
		if r.Status != Unknown || r.Hint != "check timed out after 50ms" {
			t.Errorf("%s = %s %q, want UNKNOWN timeout", r.Key, r.Status, r.Hint)
		}
	}
}

func TestRunProbeTimeoutAndPanic(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	hang := probe("hang", true, func(context.Context, Target) Result { select {} })
	hang.Timeout = 10 * time.Millisecond
	reg, err := NewRegistry(
		hang,
		probe("boom", true, func(context.Context, Target) Result { panic("kaboom") }),
		probe("fine", true, func(context.Context, Target) Result { return Pass("") }),
	)
	if err != nil {
		t.Fatal(err)
	}
	res := reg.Run(t.Context(), tgt, Full)
	if len(res) != 3 {
		t.Fatalf("got %d results", len(res))
	}
	if res[0].Status != Unknown || !strings.Contains(res[0].Hint, "timed out after 10ms") {
		t.Errorf("hang = %s %q", res[0].Status, res[0].Hint)
	}
	if res[1].Status != Unknown || !strings.Contains(res[1].Hint, "kaboom") {
		t.Errorf("boom = %s %q", res[1].Status, res[1].Hint)
	}
	if res[2].Status != OK || res[2].Duration < 0 {
		t.Errorf("fine = %+v", res[2])
	}
}

func TestRunPreflight(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	reg, err := NewRegistry(
		probe("soft", false, func(context.Context, Target) Result { return Fail("soft failure") }),
		probe("hard", true, func(context.Context, Target) Result { return Fail("hard failure") }),
		probe("after", true, func(context.Context, Target) Result { return Pass("") }),
	)
	if err != nil {
		t.Fatal(err)
	}
	res := reg.Run(t.Context(), tgt, Preflight)
	if len(res) != 2 || res[1].Key != "hard" {
		t.Fatalf("preflight = %+v", res)
	}
	err = Failure(res)
	pe, ok := err.(*PreflightError)
	if !ok || pe.Check != "probe hard" || pe.Hint != "hard failure" {
		t.Errorf("Failure = %v", err)
	}
	if got := len(reg.Run(t.Context(), tgt, Full)); got != 3 {
		t.Errorf("full mode ran %d probes", got)
	}
}

func TestRunSharesTargetCalls(t *testing.T) {
	t.Parallel()
	tgt := &countingTarget{realTarget: newRealTarget(t, "pg")}
	tgt.writeBackup(t, "20261124T100000", StatusDone, t0, 1, "000000010000000000000002", "000000010000000000000002", "")
	Default().Run(t.Context(), tgt, Full)
	if n := tgt.backups.Load(); n != 1 {
		t.Errorf("Backups called %d times in one run, want 1", n)
	}
}

type countingTarget struct {
	*realTarget
	backups atomic.Int32
}

func (c *countingTarget) Backups(ctx context.Context) ([]Backup, error) {
	c.backups.Add(1)
	return c.realTarget.Backups(ctx)
}

func TestCache(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	var runs atomic.Int32
	var status atomic.Int32
	reg, err := NewRegistry(
		probe("counted", true, func(context.Context, Target) Result {
			runs.Add(1)
			return Result{Status: Status(status.Load())}
		}),
		probe("skipper", true, func(context.Context, Target) Result { runs.Add(100); return Skip() }),
	)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	c := NewCache(reg, time.Minute, func() time.Time { return now })
	for range 3 {
		if res := c.Run(t.Context(), tgt); len(res) != 1 || res[0].Key != "counted" {
			t.Fatalf("cache results %+v", res)
		}
	}
	if runs.Load() != 101 {
		t.Errorf("runs = %d, want one run of each probe", runs.Load())
	}
	now = now.Add(2 * time.Minute)
	status.Store(int32(Unknown))
	c.Run(t.Context(), tgt)
	c.Run(t.Context(), tgt)
	// UNKNOWN is not cached: the second call re-ran "counted".
	if runs.Load() != 203 {
		t.Errorf("runs = %d, want 203", runs.Load())
	}
}

// barrierTarget answers PostgresStatus and StreamingStatus only once both
// have been asked for: a run that opens them one after the other would
// wait until its deadline.
type barrierTarget struct {
	*realTarget
	arrived chan struct{}
	both    chan struct{}
	once    sync.Once
}

func (b *barrierTarget) wait(ctx context.Context) error {
	b.arrived <- struct{}{}
	if len(b.arrived) == 2 {
		b.once.Do(func() { close(b.both) })
	}
	select {
	case <-b.both:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *barrierTarget) PostgresStatus(ctx context.Context) (*PGStatus, error) {
	if err := b.wait(ctx); err != nil {
		return nil, err
	}
	return &PGStatus{ServerVersion: 150000, ServerVersionText: "15.0", IsSuperuser: true, WALLevel: "replica", SystemID: "7"}, nil
}

func (b *barrierTarget) StreamingStatus(ctx context.Context) (*StreamingStatus, error) {
	if err := b.wait(ctx); err != nil {
		return nil, err
	}
	return &StreamingStatus{SystemID: "7", Timeline: 1, ServerVersion: 150000}, nil
}

func TestPrefetchOpensConnectionsConcurrently(t *testing.T) {
	t.Parallel()
	bt := &barrierTarget{realTarget: newRealTarget(t, "pg"), arrived: make(chan struct{}, 2), both: make(chan struct{})}
	bt.cfg.CheckTimeout = 3 * time.Second
	res := Default().Run(t.Context(), bt, Full)
	got := map[string]Status{}
	for _, r := range res {
		got[r.Key] = r.Status
	}
	for _, key := range []string{"postgresql", "postgresql_streaming"} {
		if st, ok := got[key]; !ok || st != OK {
			t.Errorf("%s = %v (present %v), want OK: the two connections were not opened concurrently", key, st, ok)
		}
	}
}
