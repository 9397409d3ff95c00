package backup

import (
	"fmt"
	"io"
	"time"
)

// progress reports copy progress from the server's PROGRESS frames: a
// single \r-updated line on a terminal, a plain line every 10 s otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	total int64 // server estimate in bytes (sum of tablespace sizes); 0 = unknown
	now   func() time.Time

	start, last time.Time
	done        int64
	shown       bool
}

func newProgress(w io.Writer, tty bool, total int64, now func() time.Time) *progress {
	t := now()
	return &progress{w: w, tty: tty, total: total, now: now, start: t, last: t}
}

func (p *progress) update(done int64) {
	if p == nil || p.w == nil {
		return
	}
	p.done = done
	t := p.now()
	every := 10 * time.Second
	if p.tty {
		every = 250 * time.Millisecond
	}
	if t.Sub(p.last) < every {
		return
	}
	p.last = t
	p.print(t, false)
}

func (p *progress) print(t time.Time, final bool) {
	line := progressLine(p.done, p.total, t.Sub(p.start))
	if p.tty {
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(p.w, "\r%-72s%s", line, end)
		p.shown = !final
		return
	}
	fmt.Fprintln(p.w, line)
}

// finish prints the final line (the real byte count may exceed the
// estimate).
func (p *progress) finish(done int64) {
	if p == nil || p.w == nil {
		return
	}
	if done > p.done {
		p.done = done
	}
	if p.total > 0 && p.done > p.total {
		p.total = p.done
	}
	p.print(p.now(), true)
}

// progressLine formats "copied X of ~Y (P%), R MB/s, ETA D".
func progressLine(done, total int64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	line := fmt.Sprintf("copied %s", humanBytes(done))
	if total > 0 {
		pct := 100 * float64(done) / float64(total)
		if pct > 100 {
			pct = 100
		}
		line += fmt.Sprintf(" of ~%s (%.1f%%)", humanBytes(total), pct)
	}
	line += fmt.Sprintf(", %.1f MB/s", rate/1e6)
	if total > 0 && rate > 0 && done < total {
		eta := time.Duration(float64(total-done) / rate * float64(time.Second))
		line += ", ETA " + eta.Round(time.Second).String()
	}
	return line
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PiB", f/unit)
}
