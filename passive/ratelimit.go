package passive

import (
	"context"
	"io"
	"time"
)

// rateLimitedReader is a token bucket on a reader: tokens (bytes) refill at
// rate per second up to burst; a read that overdraws the bucket sleeps until
// it is even again. Barman passes bandwidth_limit to rsync --bwlimit (KiB/s).
type rateLimitedReader struct {
	ctx    context.Context
	r      io.Reader
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

func newRateLimitedReader(ctx context.Context, r io.Reader, kbps int) io.Reader {
	if kbps <= 0 {
		return r
	}
	rate := float64(kbps) * 1024
	burst := max(rate/8, 4096)
	return &rateLimitedReader{ctx: ctx, r: r, rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

func (l *rateLimitedReader) Read(p []byte) (int, error) {
	if err := l.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) > int(l.burst) {
		p = p[:int(l.burst)]
	}
	n, err := l.r.Read(p)
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate) - float64(n)
	l.last = now
	if l.tokens < 0 {
		wait := time.Duration(-l.tokens / l.rate * float64(time.Second))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.ctx.Done():
			t.Stop()
			return n, l.ctx.Err()
		}
		l.tokens = 0
		l.last = time.Now()
	}
	return n, err
}
