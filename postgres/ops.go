package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cellar-backup/cellar/wal"
)

// Slot is a row of pg_replication_slots.
type Slot struct {
	Name       string
	SlotType   string // "physical" or "logical"
	Active     bool
	ActivePID  *int     // nil when no process uses the slot
	RestartLSN *wal.LSN // nil until a client has streamed from the slot
	// WALStatus is "reserved", "extended", "unreserved" or "lost" (PG13+;
	// "" before).
	WALStatus string
}

// ReplicationSlot returns the named slot, or (nil, nil) when it does not
// exist.
func (c *Conn) ReplicationSlot(ctx context.Context, name string) (*Slot, error) {
	walStatus := "NULL::text"
	if c.version == 0 || c.version >= 130000 {
		walStatus = "wal_status"
	}
	var s Slot
	var pid *int32
	var restart, status *string
	err := c.conn.QueryRow(ctx, fmt.Sprintf(`SELECT slot_name::text, slot_type, active, active_pid,
		restart_lsn::text, %s FROM pg_replication_slots WHERE slot_name = $1`, walStatus), name).
		Scan(&s.Name, &s.SlotType, &s.Active, &pid, &restart, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, c.wrap(fmt.Sprintf("read replication slot %q", name), err)
	}
	if pid != nil {
		p := int(*pid)
		s.ActivePID = &p
	}
	if restart != nil {
		lsn, err := wal.ParseLSN(*restart)
		if err != nil {
			return nil, c.wrap(fmt.Sprintf("replication slot %q restart_lsn", name), err)
		}
		s.RestartLSN = &lsn
	}
	if status != nil {
		s.WALStatus = *status
	}
	return &s, nil
}

// SwitchWAL asks the server to close the current WAL segment, with Barman's
// semantics (switch-wal): on a standby it is a no-op ("", false, nil);
// otherwise it compares the WAL file of the insert position before and after
// pg_switch_wal() and reports switched=true with the closed segment's name
// only when the position moved to a new file. Without WAL activity since the
// last switch nothing is closed ("", false, nil).
func (c *Conn) SwitchWAL(ctx context.Context) (closed string, switched bool, err error) {
	if c.version != 0 && c.version < 100000 {
		return "", false, c.wrap("switch WAL", fmt.Errorf("%w: need PostgreSQL 10+", ErrUnsupportedVersion))
	}
	var inRecovery bool
	if err := c.conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return "", false, c.wrap("switch WAL", err)
	}
	if inRecovery {
		return "", false, nil
	}
	var before string
	if err := c.conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())").Scan(&before); err != nil {
		return "", false, c.wrap("switch WAL", err)
	}
	var after string
	// Evaluated left to right within one row: the switch happens first.
	if err := c.conn.QueryRow(ctx,
		"SELECT pg_walfile_name(pg_switch_wal()), pg_walfile_name(pg_current_wal_insert_lsn())").
		Scan(&closed, &after); err != nil {
		return "", false, c.wrap("switch WAL", err)
	}
	if before < after {
		return closed, true, nil
	}
	return "", false, nil
}

// Checkpoint runs CHECKPOINT (superuser or pg_checkpoint member).
func (c *Conn) Checkpoint(ctx context.Context) error {
	if _, err := c.conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return c.wrap("checkpoint", err)
	}
	return nil
}

// CreateRestorePoint creates a named restore point and returns its LSN.
func (c *Conn) CreateRestorePoint(ctx context.Context, name string) (wal.LSN, error) {
	var text string
	if err := c.conn.QueryRow(ctx, "SELECT pg_create_restore_point($1)::text", name).Scan(&text); err != nil {
		return 0, c.wrap(fmt.Sprintf("create restore point %q", name), err)
	}
	lsn, err := wal.ParseLSN(text)
	if err != nil {
		return 0, c.wrap(fmt.Sprintf("restore point %q", name), err)
	}
	return lsn, nil
}

// ReplicationStat is a row of pg_stat_replication joined with the slot the
// walsender uses (if any). Nullable columns are pointers or "".
type ReplicationStat struct {
	PID             int
	UserName        string
	ApplicationName string
	ClientAddr      string // "" for Unix-socket clients
	State           string // startup, catchup, streaming, backup, stopping
	SentLSN         *wal.LSN
	WriteLSN        *wal.LSN
	FlushLSN        *wal.LSN
	ReplayLSN       *wal.LSN
	SyncState       string // async, potential, sync, quorum
	SyncPriority    int
	BackendStart    *time.Time
	SlotName        string
}

// IsWALStreamer reports whether the client only receives WAL (like
// pg_receivewal, which never replays), as opposed to a standby. Barman
// tells them apart the same way: a streamer has no replay position.
func (r ReplicationStat) IsWALStreamer() bool { return r.ReplayLSN == nil }

// ReplicationStats returns the rows of pg_stat_replication, ordered by
// backend start. Roles without pg_read_all_stats see only their own
// walsenders in full.
func (c *Conn) ReplicationStats(ctx context.Context) ([]ReplicationStat, error) {
	if c.version != 0 && c.version < 100000 {
		return nil, c.wrap("read pg_stat_replication", fmt.Errorf("%w: need PostgreSQL 10+", ErrUnsupportedVersion))
	}
	rows, err := c.conn.Query(ctx, `SELECT r.pid, r.usename::text, r.application_name, host(r.client_addr),
		r.state, r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text,
		r.sync_state, r.sync_priority, r.backend_start, s.slot_name::text
		FROM pg_stat_replication r
		LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
		ORDER BY r.backend_start, r.pid`)
	if err != nil {
		return nil, c.wrap("read pg_stat_replication", err)
	}
	var out []ReplicationStat
	var (
		pid                             *int32
		user, app, addr, state, sync    *string
		sent, write, flush, replay, slt *string
		prio                            *int32
		start                           *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&pid, &user, &app, &addr, &state, &sent, &write, &flush, &replay,
		&sync, &prio, &start, &slt}, func() error {
		r := ReplicationStat{
			UserName: deref(user), ApplicationName: deref(app), ClientAddr: deref(addr),
			State: deref(state), SyncState: deref(sync), SlotName: deref(slt),
		}
		if pid != nil {
			r.PID = int(*pid)
		}
		if prio != nil {
			r.SyncPriority = int(*prio)
		}
		if start != nil {
			t := *start
			r.BackendStart = &t
		}
		for _, f := range []struct {
			text *string
			dst  **wal.LSN
		}{{sent, &r.SentLSN}, {write, &r.WriteLSN}, {flush, &r.FlushLSN}, {replay, &r.ReplayLSN}} {
			if f.text == nil {
				continue
			}
			lsn, err := wal.ParseLSN(*f.text)
			if err != nil {
				return err
			}
			*f.dst = &lsn
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, c.wrap("read pg_stat_replication", err)
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
