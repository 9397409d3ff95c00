package checks

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// atomicClock is a settable clock safe to read from background refreshes.
type atomicClock struct{ ns atomic.Int64 }

func (c *atomicClock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *atomicClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(at time.Time) *atomicClock   { c := &atomicClock{}; c.ns.Store(at.UnixNano()); return c }
func statusOf(res []Result, key string) (Status, bool) {
	for _, r := range res {
		if r.Key == key {
			return r.Status, true
		}
	}
	return 0, false
}

func TestServeRefreshesInBackground(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	var runs atomic.Int32
	var status atomic.Int32
	gate := make(chan struct{}, 10)
	block := atomic.Bool{}
	reg, err := NewRegistry(probe("slow", true, func(ctx context.Context, _ Target) Result {
		runs.Add(1)
		if block.Load() {
			select {
			case <-gate:
			case <-ctx.Done():
			}
		}
		return Result{Status: Status(status.Load())}
	}))
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock(t0)
	c := NewCache(reg, time.Minute, clk.now)

	// First call: nothing evaluated yet, so it evaluates synchronously.
	res := c.Serve(t.Context(), tgt, time.Minute)
	if st, ok := statusOf(res, "slow"); !ok || st != OK || runs.Load() != 1 {
		t.Fatalf("first Serve = %+v (runs %d), want OK after one run", res, runs.Load())
	}
	// Fresh: served from the cache, no run.
	c.Serve(t.Context(), tgt, time.Minute)
	if runs.Load() != 1 {
		t.Fatalf("fresh result re-ran the probe (runs %d)", runs.Load())
	}

	// Stale: the old result comes back at once while a single background
	// refresh runs (the probe blocks until the gate opens).
	staleAt := time.Now()
	clk.add(2 * time.Minute)
	status.Store(int32(Critical))
	block.Store(true)
	for range 3 {
		res = c.Serve(t.Context(), tgt, time.Minute)
		if st, _ := statusOf(res, "slow"); st != OK {
			t.Fatalf("stale Serve = %+v, want the previous OK while refreshing", res)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("background refresh did not start (runs %d)", runs.Load())
		}
		time.Sleep(time.Millisecond)
	}
	gate <- struct{}{}
	for {
		res = c.Serve(t.Context(), tgt, time.Minute)
		if st, _ := statusOf(res, "slow"); st == Critical {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refreshed result never served: %+v", res)
		}
		time.Sleep(time.Millisecond)
	}
	if runs.Load() != 2 {
		t.Errorf("runs = %d, want exactly one background refresh", runs.Load())
	}
	if at := res[0].At; !at.After(staleAt) {
		t.Errorf("At = %v, want the background refresh's start (after %v)", at, staleAt)
	}
}

func TestServeRetriesUnknown(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	var runs atomic.Int32
	reg, err := NewRegistry(probe("flaky", true, func(context.Context, Target) Result {
		if runs.Add(1) == 1 {
			return Result{Status: Unknown, Hint: "timed out"}
		}
		return Result{Status: OK}
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(reg, time.Hour, newClock(t0).now)
	res := c.Serve(t.Context(), tgt, time.Minute)
	if st, _ := statusOf(res, "flaky"); st != Unknown {
		t.Fatalf("first Serve = %+v, want UNKNOWN", res)
	}
	// UNKNOWN is served until a retry replaces it, and retried although
	// the minimum interval has not passed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res = c.Serve(t.Context(), tgt, time.Minute)
		if st, _ := statusOf(res, "flaky"); st == OK {
			break
		} else if st != Unknown {
			t.Fatalf("Serve = %+v", res)
		}
		if time.Now().After(deadline) {
			t.Fatal("UNKNOWN result was never retried")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestServeWaitsForFirstEvaluation(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	release := make(chan struct{})
	reg, err := NewRegistry(probe("p", true, func(context.Context, Target) Result {
		<-release
		return Result{Status: Warning}
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(reg, time.Minute, newClock(t0).now)
	// A warm-up Run in flight: Serve must wait for it, not return nothing.
	go c.Run(context.Background(), tgt)
	done := make(chan []Result)
	go func() { done <- c.Serve(context.Background(), tgt, time.Minute) }()
	close(release)
	if st, ok := statusOf(<-done, "p"); !ok || st != Warning {
		t.Fatalf("Serve during warm-up returned %v %v, want WARNING", st, ok)
	}
}
