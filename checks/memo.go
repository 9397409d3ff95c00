package checks

import (
	"context"
	"sync"
)

// memo wraps a Target for the length of one Registry run so that probes
// sharing a fact (PostgreSQL status, the backup list, the WAL summary)
// query it once. Errors caused by a cancelled context are not remembered,
// so a later probe with time left can retry.
type memo struct {
	Target

	mu      sync.Mutex
	entries map[string]*memoEntry
}

type memoEntry struct {
	mu   sync.Mutex
	done bool
	val  any
	err  error
}

func memoize(t Target) *memo {
	if m, ok := t.(*memo); ok {
		return m
	}
	return &memo{Target: t, entries: map[string]*memoEntry{}}
}

func (m *memo) entry(key string) *memoEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok {
		e = &memoEntry{}
		m.entries[key] = e
	}
	return e
}

func remember[T any](ctx context.Context, m *memo, key string, f func() (T, error)) (T, error) {
	e := m.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		v, _ := e.val.(T)
		return v, e.err
	}
	v, err := f()
	if err != nil && ctx.Err() != nil {
		return v, err
	}
	e.done, e.val, e.err = true, v, err
	return v, err
}

func (m *memo) PostgresStatus(ctx context.Context) (*PGStatus, error) {
	return remember(ctx, m, "pg", func() (*PGStatus, error) { return m.Target.PostgresStatus(ctx) })
}

func (m *memo) StreamingStatus(ctx context.Context) (*StreamingStatus, error) {
	return remember(ctx, m, "streaming", func() (*StreamingStatus, error) { return m.Target.StreamingStatus(ctx) })
}

func (m *memo) WALPostgresStatus(ctx context.Context) (*PGStatus, error) {
	return remember(ctx, m, "walpg", func() (*PGStatus, error) { return m.Target.WALPostgresStatus(ctx) })
}

func (m *memo) WALStreamingStatus(ctx context.Context) (*StreamingStatus, error) {
	return remember(ctx, m, "walstreaming", func() (*StreamingStatus, error) { return m.Target.WALStreamingStatus(ctx) })
}

func (m *memo) PrimaryStatus(ctx context.Context) (*PGStatus, error) {
	return remember(ctx, m, "primary", func() (*PGStatus, error) { return m.Target.PrimaryStatus(ctx) })
}

func (m *memo) Backups(ctx context.Context) ([]Backup, error) {
	return remember(ctx, m, "backups", func() ([]Backup, error) { return m.Target.Backups(ctx) })
}

func (m *memo) Passive(ctx context.Context) (*PassiveStatus, error) {
	return remember(ctx, m, "passive", func() (*PassiveStatus, error) { return m.Target.Passive(ctx) })
}

func (m *memo) Identity() (*Identity, error) {
	return remember(context.Background(), m, "identity", m.Target.Identity)
}

// walSummary is shared by the WAL probes.
func (m *memo) walSummary(ctx context.Context) (*WALSummary, error) {
	return remember(ctx, m, "walsummary", func() (*WALSummary, error) { return summarize(ctx, m) })
}

// Summary returns the WAL summary of t, computed once per run when t is
// the run's memoizing wrapper.
func Summary(ctx context.Context, t Target) (*WALSummary, error) {
	if m, ok := t.(*memo); ok {
		return m.walSummary(ctx)
	}
	return summarize(ctx, t)
}
