package jobs

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Backoff is the restart delay of a receive-wal that failed to start or
// ended by itself: Min after the first failure, doubling up to Max. A run
// that lasted at least Max resets it, so a receiver that streamed for a
// long time and then lost its connection restarts quickly.
type Backoff struct {
	Min, Max time.Duration
}

// next returns the delay to use after cur (0 = first failure).
func (b Backoff) next(cur time.Duration) time.Duration {
	if cur <= 0 {
		return b.Min
	}
	n := cur * 2
	if n > b.Max || n <= 0 { // n <= 0: overflow
		n = b.Max
	}
	return n
}

// receiver supervises one server's receive-wal: start it, restart it with
// backoff when it ends unexpectedly, stop it on request.
type receiver struct {
	srv  string
	key  receiverKey
	stop chan struct{}
	done chan struct{}

	stopOnce sync.Once
	mu       sync.Mutex
	h        ReceiverHandle
}

func newReceiver(srv string, key receiverKey) *receiver {
	return &receiver{srv: srv, key: key, stop: make(chan struct{}), done: make(chan struct{})}
}

// requestStop asks the supervisor to stop the receiver and end. It does not
// wait; <-done does.
func (r *receiver) requestStop() { r.stopOnce.Do(func() { close(r.stop) }) }

func (r *receiver) handle() ReceiverHandle {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h
}

func (r *receiver) setHandle(h ReceiverHandle) {
	r.mu.Lock()
	r.h = h
	r.mu.Unlock()
}

// supervise runs until ctx ends or requestStop is called. after, when not
// nil, is waited for before the first start: it is the done channel of the
// receiver this one replaces (a reload changed its settings), whose
// receive-wal lock must be released first.
func (r *receiver) supervise(ctx context.Context, run *runner, b Backoff, stopTimeout time.Duration, after <-chan struct{}) {
	defer close(r.done)
	log := run.log.With("server", r.srv, "job", string(JobReceiveWAL))
	if after != nil {
		select {
		case <-after:
		case <-ctx.Done():
			return
		case <-r.stop:
			return
		}
	}
	var delay time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.stop:
			return
		default:
		}
		run.obs.JobStarted(r.srv, string(JobReceiveWAL))
		start := time.Now()
		h, err := run.startReceiver(ctx, r.srv)
		if err == nil {
			log.Info("receive-wal started")
			r.setHandle(h)
			select {
			case <-h.Done():
				err = fmt.Errorf("server %q: %w", r.srv, ErrReceiverEnded)
			case <-ctx.Done():
			case <-r.stop:
			}
			if err == nil || ctx.Err() != nil || isClosed(r.stop) {
				// Asked to stop (the handle may also have noticed ctx
				// first): a clean end, not a failure.
				h.Stop()
				if !waitDone(h.Done(), stopTimeout) {
					log.Error("receive-wal did not stop in time", "timeout", stopTimeout)
				}
				r.setHandle(nil)
				run.obs.JobFinished(r.srv, string(JobReceiveWAL), time.Since(start), nil)
				log.Info("receive-wal stopped")
				return
			}
			r.setHandle(nil)
		}
		ran := time.Since(start)
		if isSkip(err) {
			if so, ok := run.obs.(SkipObserver); ok {
				so.JobSkipped(r.srv, string(JobReceiveWAL), err)
			}
		} else {
			run.obs.JobFinished(r.srv, string(JobReceiveWAL), ran, err)
		}
		if ran >= b.Max {
			delay = 0
		}
		delay = b.next(delay)
		log.Error("receive-wal is not running; restarting after a delay", "error", err.Error(), "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.stop:
			t.Stop()
			return
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitDone waits for c at most d (d <= 0: forever).
func waitDone(c <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		<-c
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}
