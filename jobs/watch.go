package jobs

import (
	"os"
	"sync"
	"time"
)

// watcher remembers the modification times of archive-wal's input
// directories at the start of the last pass. A directory's mtime changes
// when an entry is added, removed or renamed, which is exactly how WAL
// files arrive: archive_command renames into incoming/, receive-wal renames
// a completed .partial in streaming/. Writes into an open .partial do not
// change it, so a streaming segment triggers one pass when it completes.
//
// A pass that moves files out changes the mtime too, so every batch costs
// one extra, empty pass: cheap, and simpler than telling our own changes
// from PostgreSQL's. On file systems with coarse timestamps a file that
// arrives in the same tick as the snapshot waits for the fallback interval.
type watcher struct {
	dirs [2]string
	mu   sync.Mutex
	seen [2]time.Time
}

func newWatcher(dirs [2]string) *watcher { return &watcher{dirs: dirs} }

func (w *watcher) current() [2]time.Time {
	var out [2]time.Time
	for i, d := range w.dirs {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(d); err == nil {
			out[i] = fi.ModTime()
		}
	}
	return out
}

// snapshot records the current mtimes; archive-wal calls it as a pass starts.
func (w *watcher) snapshot() {
	cur := w.current()
	w.mu.Lock()
	w.seen = cur
	w.mu.Unlock()
}

// changed reports whether a directory changed since the last snapshot.
func (w *watcher) changed() bool {
	cur := w.current()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range cur {
		if !cur[i].Equal(w.seen[i]) {
			return true
		}
	}
	return false
}
