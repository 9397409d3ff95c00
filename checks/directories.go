package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// queueCount counts the files of an incoming/streaming directory the way
// Barman does: .tmp files ignored; in streaming/ one file (the .partial
// being written) does not count.
func queueCount(dir string, streaming bool) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		n++
	}
	if streaming && n > 0 {
		n--
	}
	return n, nil
}

func emptyDirProbe(name, key, option string, streaming bool) Probe {
	enabled := func(t Target) bool {
		if streaming {
			return t.Config().StreamingArchiver
		}
		return t.Config().Archiver
	}
	dirOf := func(t Target) string {
		if streaming {
			return t.Directories().Streaming
		}
		return t.Directories().Incoming
	}
	return Probe{
		Name: name, Key: key, Group: "archive", Critical: false, FailureOnly: true,
		Applies: func(t Target) bool { return !enabled(t) },
		Run: func(_ context.Context, t Target) Result {
			dir := dirOf(t)
			n, err := queueCount(dir, streaming)
			if err != nil {
				return Unknownf("%v", err)
			}
			if n > 0 {
				return Fail(fmt.Sprintf("'%s' must be empty when %s=off", dir, option))
			}
			return Pass("")
		},
	}
}

// queueProbe counts the WAL files waiting in incoming/ or streaming/. It
// applies whenever that archiver is on, so the queue gauge is always
// exported (a growing queue is worth an alert with or without a limit);
// it can fail, and so be printed (failure only), only when
// max_incoming_wals_queue is set.
func queueProbe(name, key, gauge string, streaming bool) Probe {
	return Probe{
		Name: name, Key: key, Group: "archive", Critical: false, FailureOnly: true,
		Applies: func(t Target) bool {
			c := t.Config()
			if streaming {
				return c.StreamingArchiver
			}
			return c.Archiver
		},
		Gauges: []Gauge{{Name: gauge, Help: "WAL files waiting in the " + strings.SplitN(name, " ", 2)[0] + " directory to be archived (exported whenever that archiver is on)."}},
		Run: func(_ context.Context, t Target) Result {
			dir := t.Directories().Incoming
			if streaming {
				dir = t.Directories().Streaming
			}
			n, err := queueCount(dir, streaming)
			if err != nil {
				return Unknownf("%v", err)
			}
			return queueResult(gauge, n, t.Config().MaxIncomingWALsQueue)
		},
	}
}

// queueResult judges a queue of n files against max (0: no limit).
func queueResult(gauge string, n, max int) Result {
	r := Pass("")
	crit := ""
	if max > 0 {
		crit = fmt.Sprintf("%d", max)
		if n > max {
			r = Fail(fmt.Sprintf("there are too many WALs in queue: %d, max %d", n, max))
		}
	}
	r.Values = map[string]float64{gauge: float64(n)}
	label := strings.TrimSuffix(gauge, "_files")
	r.Perf = []Perf{{Label: label, Value: float64(n), Crit: crit, Min: Float(0)}}
	return r
}

// probeDirectories verifies the *_directory paths are directories. Barman
// creates missing ones here; Cellar's check only reports (check --fix and
// the operations create what they need). A missing one passes: a freshly
// imported catalog lacks the directories Cellar creates on first write,
// and that must not page anyone.
func probeDirectories() Probe {
	return Probe{
		Name: "directories", Key: "directories", Group: "directories", Critical: true,
		Run: func(_ context.Context, t Target) Result {
			var missing []string
			for _, d := range neededDirs(t) {
				if d == "" {
					continue
				}
				fi, err := os.Stat(d)
				if errors.Is(err, fs.ErrNotExist) {
					missing = append(missing, d)
					continue
				}
				if err != nil {
					return Fail(fmt.Sprintf("%s: %s", d, strerror(err)))
				}
				if !fi.IsDir() {
					return Fail(fmt.Sprintf("%s: not a directory", d))
				}
			}
			if len(missing) > 0 {
				return Pass("created when first needed: " + strings.Join(missing, ", "))
			}
			return Pass("")
		},
	}
}

// strerror gives the bare system message of a path error, as Python's
// strerror.
func strerror(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
