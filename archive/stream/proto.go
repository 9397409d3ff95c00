package stream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cellar-backup/cellar/wal"
)

// endOfTimeline is START_REPLICATION's answer when the requested start is
// exactly at the end of a historic timeline (or the stream reached it): the
// next timeline and where it forked.
type endOfTimeline struct {
	NextTLI  uint32
	SwitchAt wal.LSN
}

// startReplication sends START_REPLICATION [SLOT s] PHYSICAL lsn TIMELINE
// tli. pglogrepl.StartReplication always writes "SLOT <name>", which is a
// syntax error without a slot, so the command is built here. It returns
// (nil, nil) once the server switched to CopyBoth, or the end-of-timeline
// result when the server has nothing to stream on tli from lsn.
func startReplication(ctx context.Context, conn *pgconn.PgConn, slot string, lsn wal.LSN, tli uint32) (*endOfTimeline, error) {
	var b strings.Builder
	b.WriteString("START_REPLICATION ")
	if slot != "" {
		// Validated against ^[0-9a-z_]+$ by Options.validate.
		b.WriteString("SLOT " + slot + " ")
	}
	fmt.Fprintf(&b, "PHYSICAL %s TIMELINE %d", lsn, tli)
	conn.Frontend().SendQuery(&pgproto3.Query{String: b.String()})
	if err := conn.Frontend().Flush(); err != nil {
		return nil, fmt.Errorf("send START_REPLICATION: %w", err)
	}
	var eot *endOfTimeline
	var pgErr error
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("START_REPLICATION: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			return nil, nil
		case *pgproto3.ErrorResponse:
			// Keep reading to ReadyForQuery so the connection stays usable.
			pgErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.DataRow:
			r, err := parseEndOfTimeline(m.Values)
			if err != nil {
				return nil, fmt.Errorf("START_REPLICATION: %w", err)
			}
			eot = &r
		case *pgproto3.ReadyForQuery:
			if pgErr != nil {
				return nil, pgErr
			}
			if eot == nil {
				return nil, errors.New("START_REPLICATION: server returned neither a stream nor a next timeline")
			}
			return eot, nil
		}
	}
}

// parseEndOfTimeline parses the (next_tli, next_tli_startpos) row sent at
// the end of a timeline.
func parseEndOfTimeline(values [][]byte) (endOfTimeline, error) {
	if len(values) != 2 {
		return endOfTimeline{}, fmt.Errorf("end-of-timeline row has %d columns, want 2", len(values))
	}
	tli, err := strconv.ParseUint(string(values[0]), 10, 32)
	if err != nil || tli == 0 {
		return endOfTimeline{}, fmt.Errorf("end-of-timeline row: bad timeline %q", values[0])
	}
	lsn, err := wal.ParseLSN(string(values[1]))
	if err != nil {
		return endOfTimeline{}, fmt.Errorf("end-of-timeline row: %w", err)
	}
	return endOfTimeline{NextTLI: uint32(tli), SwitchAt: lsn}, nil
}

// finishCopy answers the server's CopyDone (end of timeline) with ours and
// reads the next-timeline result up to ReadyForQuery.
func finishCopy(ctx context.Context, conn *pgconn.PgConn) (*endOfTimeline, error) {
	conn.Frontend().Send(&pgproto3.CopyDone{})
	if err := conn.Frontend().Flush(); err != nil {
		return nil, fmt.Errorf("send CopyDone: %w", err)
	}
	var eot *endOfTimeline
	var pgErr error
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("end of timeline: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			pgErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.DataRow:
			r, err := parseEndOfTimeline(m.Values)
			if err != nil {
				return nil, err
			}
			eot = &r
		case *pgproto3.ReadyForQuery:
			if pgErr != nil {
				return nil, pgErr
			}
			if eot == nil {
				return nil, errors.New("replication stream ended without a next timeline")
			}
			return eot, nil
		}
	}
}

// sendStatus sends a standby status update. pglogrepl's
// SendStandbyStatusUpdate replaces a zero flush or apply position with the
// write position, which would claim durability we do not have and a replay
// position a WAL streamer never has (Cellar, like pg_receivewal, reports
// apply as InvalidXLogRecPtr), so the message is encoded here.
func sendStatus(conn *pgconn.PgConn, write, flush wal.LSN, replyRequested bool) error {
	var b [34]byte
	b[0] = pglogrepl.StandbyStatusUpdateByteID
	binary.BigEndian.PutUint64(b[1:], uint64(write))
	binary.BigEndian.PutUint64(b[9:], uint64(flush))
	binary.BigEndian.PutUint64(b[17:], 0) // apply: never replayed
	binary.BigEndian.PutUint64(b[25:], uint64(pgTime(time.Now())))
	if replyRequested {
		b[33] = 1
	}
	buf, err := (&pgproto3.CopyData{Data: b[:]}).Encode(nil)
	if err != nil {
		return err
	}
	if err := conn.Frontend().SendUnbufferedEncodedCopyData(buf); err != nil {
		return fmt.Errorf("send standby status update: %w", err)
	}
	return nil
}

// pgTime is microseconds since 2000-01-01 UTC.
func pgTime(t time.Time) int64 {
	const unixToY2K = 946684800 * 1000000
	return t.UnixMicro() - unixToY2K
}

// slotInfo is READ_REPLICATION_SLOT's answer.
type slotInfo struct {
	Exists     bool
	RestartLSN wal.LSN // 0 when unset
	RestartTLI uint32  // 0 when unset
}

// readSlot runs READ_REPLICATION_SLOT (PostgreSQL 15+; callers check the
// version). A missing slot is a row of NULLs.
func readSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (slotInfo, error) {
	res, err := conn.Exec(ctx, "READ_REPLICATION_SLOT "+slot).ReadAll()
	if err != nil {
		return slotInfo{}, fmt.Errorf("READ_REPLICATION_SLOT %s: %w", slot, err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) < 3 {
		return slotInfo{}, fmt.Errorf("READ_REPLICATION_SLOT %s: unexpected result", slot)
	}
	row := res[0].Rows[0]
	if row[0] == nil {
		return slotInfo{}, nil
	}
	si := slotInfo{Exists: true}
	if row[1] != nil {
		if si.RestartLSN, err = wal.ParseLSN(string(row[1])); err != nil {
			return slotInfo{}, fmt.Errorf("READ_REPLICATION_SLOT %s: restart_lsn: %w", slot, err)
		}
	}
	if row[2] != nil {
		t, err := strconv.ParseUint(string(row[2]), 10, 32)
		if err != nil {
			return slotInfo{}, fmt.Errorf("READ_REPLICATION_SLOT %s: restart_tli %q: %w", slot, row[2], err)
		}
		si.RestartTLI = uint32(t)
	}
	return si, nil
}

// showSegmentSize reads wal_segment_size over the replication connection
// (SHOW works in a walsender since PostgreSQL 10), e.g. "16MB".
func showSegmentSize(ctx context.Context, conn *pgconn.PgConn) (uint64, error) {
	res, err := conn.Exec(ctx, "SHOW wal_segment_size").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("SHOW wal_segment_size: %w", err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) == 0 {
		return 0, errors.New("SHOW wal_segment_size: no row")
	}
	return parseSize(string(res[0].Rows[0][0]))
}

// parseSize parses a PostgreSQL memory setting as SHOW prints it ("16MB",
// "1GB", "512kB", "8192" bytes) and validates it as a segment size.
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || n > (1<<30) {
		return 0, fmt.Errorf("bad wal_segment_size %q", s)
	}
	size := n * mult
	if err := wal.ValidateSegmentSize(size); err != nil {
		return 0, err
	}
	return size, nil
}

// activePIDRe finds the PID in PostgreSQL's "replication slot "x" is active
// for PID 123" error.
// Regexps here are compiled on first use, not at package init: every
// cellar process (restore_command starts one per WAL segment) would
// pay for them.
var activePIDRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)active for PID (\d+)`) })

// slotInUse turns the server's object_in_use error for our slot into a
// *SlotInUseError, or returns nil.
func slotInUse(err error, slot string) error {
	var pgErr *pgconn.PgError
	if slot == "" || !errors.As(err, &pgErr) || pgErr.Code != "55006" {
		return nil
	}
	e := &SlotInUseError{Slot: slot}
	if m := activePIDRe().FindStringSubmatch(pgErr.Message); m != nil {
		e.PID, _ = strconv.Atoi(m[1])
	}
	return e
}
