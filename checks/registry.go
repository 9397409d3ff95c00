package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Mode selects how Registry.Run treats failures, mirroring Barman's two
// check strategies.
type Mode int

const (
	// Full runs every probe and reports every failure (`cellar check`,
	// the exporter): Barman's CheckOutputStrategy.
	Full Mode = iota
	// Preflight is the silent check before backup and receive-wal
	// (Barman's CheckStrategy): failures of non-critical probes are only
	// logged, and the run stops at the first failure of a critical probe.
	Preflight
)

// String names the mode for logs.
func (m Mode) String() string {
	if m == Preflight {
		return "preflight"
	}
	return "full"
}

// Probe is one registered check. A probe has no side effects: it reads the
// Target and returns one Result (or Skip()).
type Probe struct {
	// Name is Barman's label, printed by `check`.
	Name string
	// Key is the snake_case label of cellar_check_status{check=...}.
	Key string
	// Group is the Barman method the check belongs to (archive, postgres,
	// wal_streaming, directories, retention, backups, wals, executor,
	// configuration, identity, archiver, errors), for documentation and
	// filtering.
	Group string
	// Critical is false for Barman's NON_CRITICAL_CHECKS.
	Critical bool
	// FailureOnly probes print nothing when they pass (Barman's "(F)").
	FailureOnly bool
	// Timeout bounds one run of this probe; 0 leaves only the server's
	// check_timeout budget.
	Timeout time.Duration
	// Gauges are the values Run may put in Result.Values.
	Gauges []Gauge
	// Applies reports whether the probe exists for this server's
	// configuration; nil means always. It must not block.
	Applies func(Target) bool
	// Run performs the check. ctx carries the probe's deadline.
	Run func(ctx context.Context, t Target) Result
	// Prefetch, when set, is started in the background as a run begins
	// (if the probe is due and applies), to fetch what Run will ask the
	// run's memoizing target for: a server's PostgreSQL connections are
	// then opened concurrently rather than one after the other.
	Prefetch func(ctx context.Context, t Target)
}

// Registry is an ordered list of probes. It is immutable after
// construction and safe for concurrent use.
type Registry struct {
	probes []Probe
	logger *slog.Logger
}

// NewRegistry builds a registry running probes in the given order. It
// rejects probes without Name, Key or Run and duplicate keys.
func NewRegistry(probes ...Probe) (*Registry, error) {
	seen := make(map[string]bool, len(probes))
	var errs []error
	for i, p := range probes {
		switch {
		case p.Name == "" || p.Key == "":
			errs = append(errs, fmt.Errorf("probe %d: empty name or key", i))
		case p.Run == nil:
			errs = append(errs, fmt.Errorf("probe %q: nil Run", p.Name))
		case seen[p.Key]:
			errs = append(errs, fmt.Errorf("probe %q: duplicate key %q", p.Name, p.Key))
		}
		seen[p.Key] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Registry{probes: append([]Probe(nil), probes...), logger: discardLogger()}, nil
}

// WithLogger returns a copy of the registry logging through l (Preflight
// logs non-critical failures).
func (r *Registry) WithLogger(l *slog.Logger) *Registry {
	c := *r
	if l == nil {
		l = discardLogger()
	}
	c.logger = l
	return &c
}

// Probes returns the probes in run order (a copy).
func (r *Registry) Probes() []Probe { return append([]Probe(nil), r.probes...) }

// Probe returns the probe with the given key.
func (r *Registry) Probe(key string) (Probe, bool) {
	for _, p := range r.probes {
		if p.Key == key {
			return p, true
		}
	}
	return Probe{}, false
}

// Gauges returns every gauge declared by the probes, first declaration
// winning when two probes declare the same name.
func (r *Registry) Gauges() []Gauge {
	seen := map[string]bool{}
	var out []Gauge
	for _, p := range r.probes {
		for _, g := range p.Gauges {
			if !seen[g.Name] {
				seen[g.Name] = true
				out = append(out, g)
			}
		}
	}
	return out
}

// Run evaluates the registry against t in order and returns one result per
// applicable probe (probes that skip themselves produce none).
//
// The server's check_timeout (0 = no limit) bounds the whole run: once it
// has expired, every remaining probe becomes UNKNOWN with the hint "check
// timed out after <d>", so what was measured is still reported. A probe
// that panics becomes UNKNOWN. In Preflight mode the run stops after the
// first failing critical probe.
func (r *Registry) Run(ctx context.Context, t Target, mode Mode) []Result {
	return r.run(ctx, t, mode, nil, false)
}

// run is Run restricted to the probes for which want returns true (nil =
// all); the cache uses it to refresh only stale probes.
//
// With keepSkipped, probes that skipped themselves are returned too (with
// the unexported skip flag and their Key), so the cache remembers them.
func (r *Registry) run(ctx context.Context, t Target, mode Mode, want func(Probe) bool, keepSkipped bool) []Result {
	cfg := t.Config()
	budget := cfg.CheckTimeout
	runCtx := ctx
	if budget > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	mt := memoize(t)
	name := t.Name()
	for _, p := range r.probes {
		if p.Prefetch != nil && (want == nil || want(p)) && applies(p, mt) {
			go func() {
				defer func() { _ = recover() }() // Run reports the failure
				p.Prefetch(runCtx, mt)
			}()
		}
	}
	results := make([]Result, 0, len(r.probes))
	for _, p := range r.probes {
		if want != nil && !want(p) {
			continue
		}
		if !applies(p, mt) {
			continue
		}
		var res Result
		if err := runCtx.Err(); err != nil {
			res = Result{Status: Unknown, Hint: interruptedHint(ctx, budget)}
		} else {
			res = r.runOne(ctx, runCtx, mt, p, budget)
		}
		if res.skip {
			if keepSkipped {
				results = append(results, Result{Server: name, Key: p.Key, skip: true})
			}
			continue
		}
		res.Server = name
		if res.Check == "" {
			res.Check = p.Name
		}
		res.Key = p.Key
		res.Critical = p.Critical
		res.FailureOnly = p.FailureOnly
		res.Inactive = !cfg.Active
		results = append(results, res)
		if mode == Preflight && res.Status.Failed() {
			if p.Critical {
				break
			}
			r.logger.Warn("non-critical check failed", "server", name, "check", res.Check, "hint", res.Hint)
		}
	}
	return results
}

func applies(p Probe, t Target) (ok bool) {
	if p.Applies == nil {
		return true
	}
	defer func() {
		if recover() != nil {
			ok = true // let Run report the problem as UNKNOWN
		}
	}()
	return p.Applies(t)
}

// runOne runs a probe in its own goroutine so a probe stuck outside its
// context cannot hold the run past its deadline.
func (r *Registry) runOne(parent, runCtx context.Context, t Target, p Probe, budget time.Duration) Result {
	pctx := runCtx
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(runCtx, p.Timeout)
		defer cancel()
	}
	done := make(chan Result, 1)
	start := time.Now()
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- Unknownf("check %q panicked: %v", p.Name, v)
			}
		}()
		done <- p.Run(pctx, t)
	}()
	var res Result
	select {
	case res = <-done:
	case <-pctx.Done():
		if runCtx.Err() != nil {
			res = Result{Status: Unknown, Hint: interruptedHint(parent, budget)}
		} else {
			res = Result{Status: Unknown, Hint: fmt.Sprintf("check %q timed out after %s", p.Name, p.Timeout)}
		}
	}
	res.Duration = time.Since(start)
	res.At = start
	return res
}

func interruptedHint(parent context.Context, budget time.Duration) string {
	if err := parent.Err(); err != nil {
		return fmt.Sprintf("check interrupted: %v", err)
	}
	return fmt.Sprintf("check timed out after %s", budget)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// PreflightError is returned by Failure for a failed pre-flight.
type PreflightError struct {
	Server string
	Check  string
	Hint   string
}

func (e *PreflightError) Error() string {
	if e.Hint == "" {
		return fmt.Sprintf("server %s: check %q failed", e.Server, e.Check)
	}
	return fmt.Sprintf("server %s: check %q failed (%s)", e.Server, e.Check, e.Hint)
}

// Failure returns a *PreflightError for the first failed critical result,
// or nil: what backup and receive-wal call after a Preflight run.
func Failure(results []Result) error {
	for _, r := range results {
		if r.Critical && r.Status.Failed() {
			return &PreflightError{Server: r.Server, Check: r.Check, Hint: r.Hint}
		}
	}
	return nil
}
