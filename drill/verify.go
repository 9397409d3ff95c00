package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/wal"
)

// ErrMissingWAL: a segment between the backup and the newest archived one
// is not in the archive, so recovery cannot reach what the archive promised.
var ErrMissingWAL = errors.New("WAL missing from the archive")

// ErrCheckFailed: the restored server did not pass a verification.
var ErrCheckFailed = errors.New("drill check failed")

// planWAL finds the newest archived segment recovery must reach and
// fails, naming the first hole, when a segment on the way is missing
// from the catalog or from disk. It returns how many segments recovery
// will read.
func (d *drillRun) planWAL() (int, error) {
	b := d.opts.Backup
	seg := uint64(b.XLogSegmentSize)
	if seg == 0 {
		seg = catalog.DefaultXLogSegmentSize
	}
	begin, err := wal.ParseName(b.BeginWAL)
	if err != nil {
		return 0, fmt.Errorf("backup %s: begin_wal %q: %w", b.ID, b.BeginWAL, err)
	}
	last := ^uint64(0)
	if lsn := d.opts.Target.LSN; lsn != nil {
		last = lsn.SegmentNo(seg)
	}
	have := d.segments(begin, seg, last)
	newest, ok := maxKey(have)
	if !ok {
		return 0, fmt.Errorf("backup %s: %w: %s", b.ID, ErrMissingWAL, b.BeginWAL)
	}
	for no := begin.SegNo(seg); no <= newest; no++ {
		name, ok := have[no]
		if !ok {
			tli := begin.TLI
			if prev, ok := have[no-1]; ok {
				tli = prev.TLI
			}
			return 0, fmt.Errorf("backup %s: %w: %s (needed to reach %s)", b.ID, ErrMissingWAL,
				wal.NameForSegNo(tli, no, seg), have[newest])
		}
		if _, err := os.Stat(d.opts.Layout.WALPath(name)); err != nil {
			return 0, fmt.Errorf("backup %s: %w: %s (%v)", b.ID, ErrMissingWAL, name, err)
		}
	}
	if !hasStop(d.opts.Target) || d.opts.Target.LSN != nil {
		d.rec.ExpectedWAL = have[newest].String()
		d.rec.ExpectedLSN = wal.LSN(newest * seg).String()
	}
	return int(newest - begin.SegNo(seg) + 1), nil
}

// segments maps segment numbers from begin's up to last to the archived
// segment on the highest timeline not before the backup's.
func (d *drillRun) segments(begin wal.Name, seg, last uint64) map[uint64]wal.Name {
	have := map[uint64]wal.Name{}
	for _, e := range d.entries {
		n, err := wal.ParseName(e.Name)
		if err != nil || n.Kind != wal.KindSegment || n.TLI < begin.TLI {
			continue
		}
		no := n.SegNo(seg)
		if no < begin.SegNo(seg) || no > last {
			continue
		}
		if cur, ok := have[no]; !ok || n.TLI > cur.TLI {
			have[no] = n
		}
	}
	return have
}

func maxKey(m map[uint64]wal.Name) (uint64, bool) {
	var best uint64
	found := false
	for k := range m {
		if !found || k > best {
			best, found = k, true
		}
	}
	return best, found
}

// verify checks the recovered server: identity, timeline, recovered
// point and the user's SQL checks.
func (d *drillRun) verify(ctx context.Context, conn *postgres.Conn) error {
	if err := d.identity(ctx, conn); err != nil {
		return err
	}
	if err := d.recoveredPoint(ctx, conn); err != nil {
		return err
	}
	return d.userChecks(ctx, conn)
}

func (d *drillRun) identity(ctx context.Context, conn *postgres.Conn) error {
	var sysid string
	var tli int64
	err := conn.PgxConn().QueryRow(ctx,
		"SELECT s.system_identifier::text, c.timeline_id::bigint FROM pg_control_system() s, pg_control_checkpoint() c").Scan(&sysid, &tli)
	if err != nil {
		return fmt.Errorf("read system identifier and timeline: %w", err)
	}
	d.rec.SystemID, d.rec.Timeline = sysid, uint32(tli)
	if want := d.opts.Backup.SystemID; want != "" && sysid != want {
		return fmt.Errorf("%w: restored server has system identifier %s, backup %s was taken from %s",
			ErrCheckFailed, sysid, d.rec.BackupID, want)
	}
	if tli <= 0 {
		return fmt.Errorf("%w: restored server reports timeline %d", ErrCheckFailed, tli)
	}
	return nil
}

// recoveredPoint records where replay ended and compares it with the
// newest archived segment (or the LSN target).
func (d *drillRun) recoveredPoint(ctx context.Context, conn *postgres.Conn) error {
	var lsnText *string
	var ts *time.Time
	err := conn.PgxConn().QueryRow(ctx,
		"SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()").Scan(&lsnText, &ts)
	if err != nil {
		return fmt.Errorf("read the recovered point: %w", err)
	}
	if ts != nil {
		utc := ts.UTC()
		d.rec.RecoveredTime = &utc
	}
	if lsnText == nil {
		return fmt.Errorf("%w: the server replayed no WAL (pg_last_wal_replay_lsn is NULL)", ErrCheckFailed)
	}
	d.rec.RecoveredLSN = *lsnText
	got, err := wal.ParseLSN(*lsnText)
	if err != nil {
		return fmt.Errorf("recovered LSN %q: %w", *lsnText, err)
	}
	return d.comparePoint(got)
}

func (d *drillRun) comparePoint(got wal.LSN) error {
	t := d.opts.Target
	if t.LSN != nil && !t.Exclusive && got < *t.LSN {
		return fmt.Errorf("%w: recovery stopped at %s, before the target LSN %s", ErrCheckFailed, got, *t.LSN)
	}
	if d.rec.ExpectedLSN == "" || t.LSN != nil {
		return nil
	}
	want, err := wal.ParseLSN(d.rec.ExpectedLSN)
	if err != nil {
		return err
	}
	if got < want {
		return fmt.Errorf("%w: recovery stopped at %s, before the newest archived segment %s (starts at %s)",
			ErrCheckFailed, got, d.rec.ExpectedWAL, want)
	}
	return nil
}

// userChecks runs every SQL check; all run even after a failure, and the
// error lists the failed ones with the query and both values.
func (d *drillRun) userChecks(ctx context.Context, conn *postgres.Conn) error {
	checks, err := loadChecks(d.opts.ChecksDir)
	if err != nil {
		return err
	}
	var failed []string
	for _, c := range checks {
		r := runCheck(ctx, conn, c, d.opts.CheckTimeout)
		d.rec.Checks = append(d.rec.Checks, r)
		switch {
		case r.Error != "":
			failed = append(failed, fmt.Sprintf("check %s: query %q failed: %s", r.Name, r.Query, r.Error))
		case !r.OK:
			failed = append(failed, fmt.Sprintf("check %s: query %q returned %q, expected %q", r.Name, r.Query, r.Got, r.Expected))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %s", ErrCheckFailed, strings.Join(failed, "; "))
	}
	return nil
}
