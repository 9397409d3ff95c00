//go:build e2e

package recovery

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// TestRecoverE2E runs randomized point-in-time recovery trials against a
// cluster under pgbench bursts (make e2e; CELLAR_E2E=1).
func TestRecoverE2E(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CELLAR_E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (CELLAR_E2E_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))

	f := newFixture(t, 1)
	f.src.Pgbench(t, "-i", "-s", "2", "-q")
	f.src.Exec(t, "CREATE TABLE ts_t (id serial, v text) TABLESPACE ts1")
	s0 := f.state(t)
	b := f.takeBackup(t, catalog.NewBackupID(time.Now()))

	type point struct {
		xid  string
		name string
		lsn  wal.LSN
		tm   time.Time
		s    state
	}
	var pts []point
	for i := range 10 {
		f.src.Pgbench(t, "-n", "-c", "2", "-j", "2", "-t", strconv.Itoa(50+rng.IntN(300)))
		var p point
		p.xid = strings.TrimSpace(f.src.QueryRow(t, fmt.Sprintf("BEGIN; INSERT INTO ts_t (v) SELECT md5(g::text) FROM generate_series(1,%d) g; SELECT txid_current()::text; COMMIT", 1+rng.IntN(200))))
		p.s = f.state(t)
		p.name = fmt.Sprintf("p%d", i)
		f.src.Exec(t, "SELECT pg_create_restore_point('"+p.name+"')")
		var err error
		if p.lsn, err = wal.ParseLSN(f.q(t, "SELECT pg_current_wal_insert_lsn()")); err != nil {
			t.Fatal(err)
		}
		if p.tm, err = time.Parse("2006-01-02 15:04:05.999999-07", f.q(t, "SELECT clock_timestamp()")); err != nil {
			t.Fatal(err)
		}
		pts = append(pts, p)
		if rng.IntN(3) == 0 {
			f.src.SwitchWAL(t)
		}
	}
	f.src.Pgbench(t, "-n", "-c", "2", "-t", "100")
	f.switchAndSync(t)

	for i := range 20 {
		kind := []string{"time", "xid", "lsn", "name", "immediate"}[rng.IntN(5)]
		pt := pts[rng.IntN(len(pts))]
		parallel := rng.IntN(4) + 1
		t.Run(fmt.Sprintf("trial%02d-%s", i, kind), func(t *testing.T) {
			t.Parallel()
			opts := Options{Layout: f.layout, Backup: b, Dest: destDir(t), Tablespaces: map[string]string{"ts1": tsDir(t)}, Parallel: parallel}
			want := pt.s
			switch kind {
			case "time":
				opts.Target.Time = &pt.tm
			case "xid":
				opts.Target.XID = pt.xid
			case "lsn":
				opts.Target.LSN = &pt.lsn
			case "name":
				opts.Target.Name = pt.name
			case "immediate":
				opts.Target.Immediate = true
				want = s0
			}
			opts.Target.Action = "promote"
			restoreAndCheck(t, f, opts, want, true)
		})
	}
}
