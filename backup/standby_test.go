package backup

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// A backup taken from a streaming standby of a primary under pgbench load
// restores to exactly the primary's data; a promotion during the backup
// fails it. On 15 and on 17 (manifest version 2).
func TestBackupFromStandby(t *testing.T) {
	t.Parallel()
	for _, v := range []int{15, 17} {
		t.Run(strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			p := pgtest.Start(t, pgtest.Options{Version: v, Archive: true})
			p.Pgbench(t, "-i", "-q", "-s", "1")
			p.Exec(t, "CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
			s := p.NewStandby(t)
			o := newOptions(t, s)
			o.PrimaryConninfo = p.ConnString()

			stop := startLoad(t, p)
			info, err := Run(t.Context(), o)
			if err != nil {
				stop()
				t.Fatalf("backup from the standby: %v", err)
			}
			if info.Status != catalog.StatusWaitingForWALs || !strings.Contains(info.BackupLabel, "FROM: standby") {
				t.Errorf("status %s, label %q", info.Status, info.BackupLabel)
			}
			want := finishSource(t, p, stop)
			restoreAndCompare(t, p, o, info, want)

			promotedDuringBackup(t, p, s, o)
		})
	}
}

// promotedDuringBackup promotes the standby once its backup has started:
// the backup must end FAILED, never DONE.
func promotedDuringBackup(t *testing.T, p, s *pgtest.Cluster, o Options) {
	t.Helper()
	o.afterStart = func() { s.Promote(t) }
	info, err := Run(t.Context(), o)
	if err == nil || info == nil || info.Status != catalog.StatusFailed {
		t.Fatalf("backup during a promotion: %+v, %v; want FAILED", info, err)
	}
	t.Logf("backup during a promotion: %s", info.Error)
	if got, err := catalog.Open(o.Layout).Get(info.ID); err != nil || got.Status != catalog.StatusFailed {
		t.Errorf("catalog has %+v, %v; want FAILED", got, err)
	}
}

// Barman's standby checks refuse a wrong setup before any backup starts.
func TestStandbySetupChecks(t *testing.T) {
	t.Parallel()
	p := pgtest.Start(t, pgtest.Options{})
	s := p.NewStandby(t)
	other := pgtest.Start(t, pgtest.Options{Unique: true})
	tests := []struct {
		name              string
		conninfo, primary string
		want              string
	}{
		{"standby without primary_conninfo", s.ConnString(), "", "set primary_conninfo"},
		{"primary_conninfo on a primary's backup", p.ConnString(), p.ConnString(), "conninfo should point to a standby server"},
		{"primary_conninfo names a standby", s.ConnString(), s.ConnString(), "should point to a primary server, not a standby"},
		{"different clusters", s.ConnString(), other.ConnString(), "share the same system identifier"},
	}
	for _, tc := range tests {
		o := newOptions(t, s)
		o.Conninfo, o.ReplConninfo, o.PrimaryConninfo = tc.conninfo, tc.conninfo+" replication=yes", tc.primary
		info, err := Run(t.Context(), o)
		if !errors.Is(err, ErrStandbySetup) || !strings.Contains(err.Error(), tc.want) || info != nil {
			t.Errorf("%s: Run = %+v, %v; want ErrStandbySetup saying %q", tc.name, info, err, tc.want)
		}
	}
}
