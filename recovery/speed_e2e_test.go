//go:build e2e

package recovery

import (
	"os"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
)

// TestRestoreSpeedE2E restores a pgbench backup (scale CELLAR_E2E_SCALE,
// default 60, about 1 GB) three times, plain and zstd tar, and logs the
// median wall and CPU time of Recover (make e2e). It asserts only that
// each restore starts and holds the source's data; the figures are for
// the reader.
func TestRestoreSpeedE2E(t *testing.T) {
	scale := 60
	if s := os.Getenv("CELLAR_E2E_SCALE"); s != "" {
		scale, _ = strconv.Atoi(s)
	}
	f := newFixture(t, 0)
	f.src.Pgbench(t, "-i", "-s", strconv.Itoa(scale), "-q")
	f.src.Exec(t, "CHECKPOINT")
	want := f.state(t)
	now := time.Now()
	backups := map[string]*catalog.BackupInfo{
		"plain":    f.takeBackup(t, catalog.NewBackupID(now)),
		"tar-zstd": f.takeBackup(t, catalog.NewBackupID(now.Add(time.Second)), "-Ft", "--compress=client-zstd"),
	}
	f.switchAndSync(t)
	for _, kind := range []string{"plain", "tar-zstd"} {
		var walls, cpus []time.Duration
		for i := range 3 {
			opts := Options{Layout: f.layout, Backup: backups[kind], Dest: destDir(t), Target: Target{Immediate: true, Action: "promote"}}
			cpu0 := cpuTime(t)
			start := time.Now()
			res, err := Recover(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			walls = append(walls, time.Since(start))
			cpus = append(cpus, cpuTime(t)-cpu0)
			if i == 0 {
				chownPostgres(t, opts.Dest)
				r := f.startRestored(t, opts.Dest)
				r.waitPromoted(t)
				compareStates(t, kind, r.state(t), want)
				r.stop(t)
			}
			if err := os.RemoveAll(opts.Dest); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s run %d: %d files, %d bytes, wall %s, cpu %s", kind, i, res.Files, res.Bytes, walls[i].Round(time.Millisecond), cpus[i].Round(time.Millisecond))
		}
		t.Logf("%s median: wall %s, cpu %s", kind, median(walls).Round(time.Millisecond), median(cpus).Round(time.Millisecond))
	}
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
