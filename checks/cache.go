package checks

import (
	"context"
	"sync"
	"time"
)

// Cache serves probe results younger than a minimum interval, per server
// and probe, so frequent scrapes cannot hammer PostgreSQL. UNKNOWN results
// (timeouts, unreadable state) are not cached: the next call retries them.
// Safe for concurrent use; concurrent calls for one server are serialized.
type Cache struct {
	reg *Registry
	min time.Duration
	now func() time.Time

	mu      sync.Mutex
	servers map[string]*serverCache
}

type serverCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
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

// Run returns Full-mode results for t in registry order, re-running only
// the probes whose cached result is older than the minimum interval.
func (c *Cache) Run(ctx context.Context, t Target) []Result {
	sc := c.server(t.Name())
	sc.mu.Lock()
	defer sc.mu.Unlock()
	now := c.now()
	fresh := func(p Probe) bool {
		e, ok := sc.entries[p.Key]
		return ok && c.min > 0 && now.Sub(e.at) < c.min
	}
	got := c.reg.run(ctx, t, Full, func(p Probe) bool { return !fresh(p) }, true)
	byKey := make(map[string]Result, len(got))
	for _, r := range got {
		byKey[r.Key] = r
		if r.Status != Unknown || r.skip {
			sc.entries[r.Key] = cacheEntry{res: r, at: now}
		} else {
			delete(sc.entries, r.Key)
		}
	}
	out := make([]Result, 0, len(got))
	for _, p := range c.reg.probes {
		r, ok := byKey[p.Key]
		if !ok {
			if !fresh(p) || !applies(p, t) {
				continue
			}
			r = sc.entries[p.Key].res
		}
		if !r.skip {
			out = append(out, r)
		}
	}
	return out
}
