package checks

import (
	"context"
	"sync"
	"time"
)

// Cache serves probe results younger than a minimum interval, per server
// and probe, so frequent scrapes cannot hammer PostgreSQL. UNKNOWN results
// (timeouts, unreadable state) are kept only to be served by Serve: every
// evaluation retries them. Safe for concurrent use; evaluations of one
// server are serialized.
type Cache struct {
	reg *Registry
	min time.Duration
	now func() time.Time

	mu      sync.Mutex
	servers map[string]*serverCache
	after   func(Target)
}

type serverCache struct {
	// run is held for a whole evaluation, so concurrent callers of one
	// server share it instead of repeating it.
	run sync.Mutex

	mu         sync.Mutex // guards the fields below
	entries    map[string]cacheEntry
	evaluated  bool // one evaluation completed
	refreshing bool // a background refresh is running
}

type cacheEntry struct {
	res Result
	at  time.Time
}

// NewCache wraps reg. now is the clock (nil = time.Now).
func NewCache(reg *Registry, minInterval time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{reg: reg, min: minInterval, now: now, servers: map[string]*serverCache{}}
}

// AfterRun makes every completed evaluation call fn(t) in a goroutine of
// its own (the exporter persists the targets' catalog caches there). Call
// it before the cache is used.
func (c *Cache) AfterRun(fn func(Target)) { c.after = fn }

// Registry returns the wrapped registry.
func (c *Cache) Registry() *Registry { return c.reg }

func (c *Cache) server(name string) *serverCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.servers[name]
	if !ok {
		s = &serverCache{entries: map[string]cacheEntry{}}
		c.servers[name] = s
	}
	return s
}

// Forget drops the cached results of a server (removed from the config).
func (c *Cache) Forget(server string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.servers, server)
}

// fresh reports whether e may be served without re-running its probe.
func (c *Cache) fresh(e cacheEntry, ok bool, now time.Time) bool {
	return ok && c.min > 0 && (e.res.Status != Unknown || e.res.skip) && now.Sub(e.at) < c.min
}

// Run returns Full-mode results for t in registry order, re-running only
// the probes whose cached result is older than the minimum interval (or
// was UNKNOWN).
func (c *Cache) Run(ctx context.Context, t Target) []Result {
	sc := c.server(t.Name())
	sc.run.Lock()
	defer sc.run.Unlock()
	now := c.now()
	sc.mu.Lock()
	stale := map[string]bool{}
	for _, p := range c.reg.probes {
		e, ok := sc.entries[p.Key]
		stale[p.Key] = !c.fresh(e, ok, now)
	}
	sc.mu.Unlock()

	got := c.reg.run(ctx, t, Full, func(p Probe) bool { return stale[p.Key] }, true)

	sc.mu.Lock()
	defer sc.mu.Unlock()
	ran := make(map[string]bool, len(got))
	for _, r := range got {
		ran[r.Key] = true
		sc.entries[r.Key] = cacheEntry{res: r, at: now}
	}
	// Probes due that did not report (they no longer apply) are dropped.
	for key, due := range stale {
		if due && !ran[key] {
			delete(sc.entries, key)
		}
	}
	sc.evaluated = true
	if c.after != nil {
		go c.after(t)
	}
	return sc.results(c.reg, func(p Probe) bool { return ran[p.Key] || (!stale[p.Key] && applies(p, t)) })
}

// results lists the cached results of the probes include accepts, in
// registry order, leaving out skipped probes. sc.mu must be held.
func (sc *serverCache) results(reg *Registry, include func(Probe) bool) []Result {
	out := make([]Result, 0, len(sc.entries))
	for _, p := range reg.probes {
		e, ok := sc.entries[p.Key]
		if !ok || e.res.skip || !include(p) {
			continue
		}
		out = append(out, e.res)
	}
	return out
}

// Serve is Run for a scrape that must not wait on slow probes: once a
// server has been evaluated, it returns the latest results at once and,
// when some are older than the minimum interval, starts one background
// evaluation of the stale probes (bounded by refreshTimeout) whose
// results later calls serve. The first call for a server, or one made
// while it has never completed an evaluation, runs synchronously like Run,
// and so does every call when the minimum interval is 0.
// Each Result's At tells when it was evaluated.
func (c *Cache) Serve(ctx context.Context, t Target, refreshTimeout time.Duration) []Result {
	if c.min <= 0 {
		return c.Run(ctx, t) // no caching asked for: evaluate every time
	}
	sc := c.server(t.Name())
	sc.mu.Lock()
	if !sc.evaluated {
		sc.mu.Unlock()
		return c.Run(ctx, t)
	}
	now := c.now()
	due := false
	for _, p := range c.reg.probes {
		e, ok := sc.entries[p.Key]
		if ok && !c.fresh(e, ok, now) {
			due = true
			break
		}
		if !ok && applies(p, t) {
			// Applies now, was not evaluated (configuration changed).
			due = true
			break
		}
	}
	out := sc.results(c.reg, func(p Probe) bool { return applies(p, t) })
	if due && !sc.refreshing {
		sc.refreshing = true
		go func() {
			defer func() {
				sc.mu.Lock()
				sc.refreshing = false
				sc.mu.Unlock()
			}()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
			defer cancel()
			c.Run(rctx, t)
		}()
	}
	sc.mu.Unlock()
	return out
}
