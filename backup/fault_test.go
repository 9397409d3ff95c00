package backup

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable/faultfs"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// maxFaultRuns caps the runs of TestBackupFaultInjection: a plain backup
// fsyncs every directory of the data directory, so a run makes more
// mutations than is worth failing one by one. Beyond the cap the failure
// points are sampled evenly, always including the first and the last.
const maxFaultRuns = 40

// faultPoints returns the mutations to fail among total: all of them, or
// maxFaultRuns evenly spread ones.
func faultPoints(total int) []int {
	if total <= maxFaultRuns {
		points := make([]int, total)
		for i := range points {
			points[i] = i + 1
		}
		return points
	}
	points := make([]int, 0, maxFaultRuns)
	for i := range maxFaultRuns {
		points = append(points, 1+i*(total-1)/(maxFaultRuns-1))
	}
	return points
}

// TestBackupFaultInjection fails every catalog mutation of a backup in turn
// (sampled, see maxFaultRuns): the backup must return the error and never be
// available (WAITING_FOR_WALS or DONE), and the next backup must succeed and
// succeed, the failed one then being FAILED or absent. Waiting for WAL makes
// a backup DONE in seconds, so only the last fault's next backup is waited
// for; the others are checked to end WAITING_FOR_WALS (the state DONE
// follows from once its WAL is archived).
func TestBackupFaultInjection(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	c.Exec(t, "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g")

	counter := faultfs.New(0)
	o := newOptions(t, c)
	o.Ops = counter
	if _, err := Run(t.Context(), o); err != nil {
		t.Fatalf("counting run: %v", err)
	}
	total := len(counter.Calls())
	if total == 0 {
		t.Fatal("a backup made no mutation through Options.Ops")
	}
	points := faultPoints(total)
	t.Logf("a backup makes %d mutations; failing %d of them", total, len(points))
	for i, n := range points {
		t.Run(fmt.Sprintf("fail-%d", n), func(t *testing.T) {
			failedBackupIsNeverAvailable(t, c, n, i == len(points)-1)
		})
	}
}

func failedBackupIsNeverAvailable(t *testing.T, c *pgtest.Cluster, n int, waitDone bool) {
	o := newOptions(t, c)
	fs := faultfs.New(n)
	o.Ops = fs
	_, err := Run(t.Context(), o)
	if !fs.Failed() {
		t.Fatalf("mutation %d never happened (calls %v)", n, fs.Calls())
	}
	failedAt := fs.Calls()[n-1]
	if !errors.Is(err, faultfs.ErrInjected) {
		t.Fatalf("failing %s %s: backup returned %v, want the injected fault", failedAt.Op, failedAt.Path, err)
	}
	cat := catalog.Open(o.Layout)
	failed := notAvailable(t, cat, failedAt)

	o.Ops = nil
	done := nextBackup(t, c, o, waitDone)
	for _, id := range failed {
		b, err := cat.Get(id)
		if err != nil {
			continue // removed: absent is fine
		}
		if b.Status != catalog.StatusFailed {
			t.Errorf("failing %s %s: after the next backup %s, failed backup %s is %s, want FAILED", failedAt.Op, failedAt.Path, done.ID, id, b.Status)
		}
	}
}

// notAvailable checks that no backup of the catalog is WAITING_FOR_WALS or
// DONE, nor listed as available, and returns the ids it holds.
func notAvailable(t *testing.T, cat *catalog.Catalog, failedAt faultfs.Call) []string {
	t.Helper()
	backups, err := cat.Backups()
	if err != nil {
		t.Fatalf("failing %s %s: catalog unreadable: %v", failedAt.Op, failedAt.Path, err)
	}
	var ids []string
	for _, b := range backups {
		ids = append(ids, b.ID)
		if b.Status == catalog.StatusDone || b.Status == catalog.StatusWaitingForWALs {
			t.Errorf("failing %s %s: backup %s is %s after a failed run", failedAt.Op, failedAt.Path, b.ID, b.Status)
		}
	}
	avail, err := cat.Available()
	if err != nil {
		t.Fatal(err)
	}
	if len(avail) > 0 {
		t.Errorf("failing %s %s: %d backups listed as available after a failed run", failedAt.Op, failedAt.Path, len(avail))
	}
	return ids
}

// nextBackup takes a normal backup, which must succeed; with waitDone it
// waits until the backup is DONE.
func nextBackup(t *testing.T, c *pgtest.Cluster, o Options, waitDone bool) *catalog.BackupInfo {
	t.Helper()
	if waitDone {
		return takeDone(t, c, o)
	}
	info, err := Run(t.Context(), o)
	if err != nil {
		t.Fatalf("next backup: %v", err)
	}
	if info.Status != catalog.StatusWaitingForWALs {
		t.Fatalf("next backup %s: %s %q", info.ID, info.Status, info.Error)
	}
	return info
}
