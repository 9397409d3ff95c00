package stream

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

// Backoff tunes the Supervisor's restart delays. Zero fields take the
// defaults: Min 1 s, Max 1 min, ResetAfter 1 min.
type Backoff struct {
	// Min is the first delay after a failure; it doubles per failure.
	Min time.Duration
	// Max caps the delay.
	Max time.Duration
	// ResetAfter: a run that lasted this long was healthy, so the next
	// failure starts again from Min.
	ResetAfter time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = time.Second
	}
	if b.Max <= 0 {
		b.Max = time.Minute
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = time.Minute
	}
	return b
}

// State is a Supervisor snapshot for status pages and metrics.
type State struct {
	// Running is true while a replication stream is open.
	Running         bool
	Timeline        uint32
	LastReceivedLSN wal.LSN
	LastFlushLSN    wal.LSN
	LastFlushTime   time.Time
	// ServerLSN is the server's WAL end from the latest keepalive or data.
	ServerLSN wal.LSN
	// LagBytes is ServerLSN - LastReceivedLSN (0 when unknown or caught up).
	LagBytes int64
	// LastError is the error that ended the latest failed run ("" if none).
	LastError string
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time
	// Restarts counts runs started after a failure.
	Restarts int
}

// Supervisor keeps a Receiver running in a goroutine, restarting it with
// exponential backoff after errors (the in-process form of Barman's cron
// spawning receive-wal every minute).
type Supervisor struct {
	opts    Options
	backoff Backoff

	mu        sync.Mutex
	rec       *Receiver // current run's receiver
	last      Progress  // kept across restarts
	lastErr   string
	lastErrAt time.Time
	restarts  int
	started   bool
	cancel    context.CancelFunc
	done      chan struct{}
}

// NewSupervisor checks opts and returns a stopped Supervisor.
func NewSupervisor(opts Options, b Backoff) (*Supervisor, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Supervisor{opts: opts, backoff: b.withDefaults(), done: make(chan struct{})}, nil
}

// Start launches the supervising goroutine; it runs until ctx is done or
// Stop. Starting twice is a no-op.
func (s *Supervisor) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	ctx, s.cancel = context.WithCancel(ctx)
	go s.loop(ctx)
}

// Stop asks the receiver to stop cleanly (fsync, final status update) and
// waits for it. Stop before Start is a no-op.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	cancel, started := s.cancel, s.started
	s.mu.Unlock()
	if !started {
		return
	}
	cancel()
	s.Wait()
}

// Wait blocks until the supervising goroutine has ended (after Stop or the
// end of Start's context). Call it only after Start.
func (s *Supervisor) Wait() {
	<-s.done
}

// State returns a snapshot; safe for concurrent use.
func (s *Supervisor) State() State {
	s.mu.Lock()
	rec := s.rec
	st := State{LastError: s.lastErr, LastErrorTime: s.lastErrAt, Restarts: s.restarts}
	p := s.last
	s.mu.Unlock()
	if rec != nil {
		p = rec.Progress()
	}
	st.Running = p.Streaming
	st.Timeline = p.Timeline
	st.LastReceivedLSN, st.LastFlushLSN, st.LastFlushTime = p.LastReceivedLSN, p.LastFlushLSN, p.LastFlushTime
	st.ServerLSN = p.ServerLSN
	if p.ServerLSN > p.LastReceivedLSN && p.LastReceivedLSN != 0 {
		st.LagBytes = int64(p.ServerLSN - p.LastReceivedLSN)
	}
	return st
}

func (s *Supervisor) loop(ctx context.Context) {
	defer close(s.done)
	delay := s.backoff.Min
	for {
		rec := &Receiver{opts: s.opts, tr: &tracker{}}
		// Carry the last known positions over, so State does not drop to
		// zero between runs.
		s.mu.Lock()
		rec.tr.p = s.last
		rec.tr.p.Streaming = false
		s.rec = rec
		s.mu.Unlock()

		began := time.Now()
		err := rec.Run(ctx)

		s.mu.Lock()
		s.last = rec.Progress()
		s.rec = nil
		if err != nil {
			s.lastErr, s.lastErrAt = err.Error(), time.Now()
		}
		s.mu.Unlock()

		if ctx.Err() != nil {
			return
		}
		if err == nil {
			// Run only returns nil on cancellation; treat anything else
			// as a failure to restart from.
			err = errors.New("receiver stopped unexpectedly")
		}
		if time.Since(began) >= s.backoff.ResetAfter {
			delay = s.backoff.Min
		}
		s.opts.Logger.Warn("receive-wal failed, restarting", "server", s.opts.Server, "error", err, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, s.backoff.Max)
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
	}
}
