package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cellar-backup/cellar/wal"
)

// ReplConn is a physical replication connection (walsender,
// replication=true): IDENTIFY_SYSTEM here; START_REPLICATION, BASE_BACKUP,
// TIMELINE_HISTORY and slot commands through PgConn with pglogrepl. Not safe
// for concurrent use.
type ReplConn struct {
	conn    *pgconn.PgConn
	target  string
	version int
}

// SystemInfo is the IDENTIFY_SYSTEM result.
type SystemInfo struct {
	SystemID string // decimal
	Timeline uint32
	XLogPos  wal.LSN // current flush position
	DBName   string  // "" for a physical connection
}

// ConnectReplication opens a physical replication connection. Any
// `replication` keyword in conninfo is overridden: Cellar only uses the
// physical walsender. Errors never contain the password.
func ConnectReplication(ctx context.Context, conninfo string, opts ...Option) (*ReplConn, error) {
	o := buildOptions(opts)
	cfg, err := pgconn.ParseConfig(conninfo)
	if err != nil {
		return nil, redactErr(fmt.Errorf("parse conninfo %q: %w", RedactConninfo(conninfo), err), "")
	}
	// pgconn passes unknown keywords (replication included) as startup
	// parameters; "true" selects the physical walsender.
	cfg.RuntimeParams["replication"] = "true"
	if cfg.RuntimeParams["application_name"] == "" && o.applicationName != "" {
		cfg.RuntimeParams["application_name"] = o.applicationName
	}
	target := describe(cfg)
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, redactErr(fmt.Errorf("replication connect to %s: %w", target, err), cfg.Password)
	}
	r := &ReplConn{conn: conn, target: target}
	r.version, _ = parseServerVersion(conn.ParameterStatus("server_version"))
	return r, nil
}

// IdentifySystem runs IDENTIFY_SYSTEM.
func (r *ReplConn) IdentifySystem(ctx context.Context) (SystemInfo, error) {
	res, err := pglogrepl.IdentifySystem(ctx, r.conn)
	if err != nil {
		return SystemInfo{}, redactErr(fmt.Errorf("%s: IDENTIFY_SYSTEM: %w", r.target, err), "")
	}
	if res.Timeline < 0 {
		return SystemInfo{}, fmt.Errorf("%s: IDENTIFY_SYSTEM: negative timeline %d", r.target, res.Timeline)
	}
	if _, err := strconv.ParseUint(res.SystemID, 10, 64); err != nil {
		return SystemInfo{}, fmt.Errorf("%s: IDENTIFY_SYSTEM: system id %q: %w", r.target, res.SystemID, err)
	}
	return SystemInfo{
		SystemID: res.SystemID,
		Timeline: uint32(res.Timeline),
		XLogPos:  wal.LSN(res.XLogPos),
		DBName:   res.DBName,
	}, nil
}

// PgConn is the underlying connection, for pglogrepl calls (streaming,
// base backups). The ReplConn still owns it: close through Close.
func (r *ReplConn) PgConn() *pgconn.PgConn { return r.conn }

// ServerVersion is server_version_num (e.g. 150018) from the startup
// parameters, or 0 when unparsable.
func (r *ReplConn) ServerVersion() int { return r.version }

// MajorVersion is the server's major version as text ("15").
func (r *ReplConn) MajorVersion() string { return majorVersion(r.version) }

// Target is "host=... port=... user=... dbname=..." (no password).
func (r *ReplConn) Target() string { return r.target }

// Close closes the connection; safe on nil.
func (r *ReplConn) Close(ctx context.Context) error {
	if r == nil || r.conn == nil {
		return nil
	}
	return r.conn.Close(ctx)
}

// Slot errors, matched with errors.Is.
var (
	// ErrInvalidSlotName: Barman's rule ^[0-9a-z_]+$ (and at most 63
	// bytes). pglogrepl interpolates slot names into replication commands
	// unquoted, so nothing else may reach the server.
	ErrInvalidSlotName = errors.New("invalid replication slot name")
	// ErrSlotExists is returned by CreatePhysicalSlot (SQLSTATE 42710).
	ErrSlotExists = errors.New("replication slot already exists")
	// ErrSlotNotFound is returned by DropSlot (SQLSTATE 42704).
	ErrSlotNotFound = errors.New("replication slot does not exist")
)

// ValidateSlotName checks a slot name against ^[0-9a-z_]{1,63}$.
func ValidateSlotName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("%w %q: want 1 to 63 characters of [0-9a-z_]", ErrInvalidSlotName, name)
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if (b < '0' || b > '9') && (b < 'a' || b > 'z') && b != '_' {
			return fmt.Errorf("%w %q: want 1 to 63 characters of [0-9a-z_]", ErrInvalidSlotName, name)
		}
	}
	return nil
}

// CreatePhysicalSlot creates a permanent physical slot (CREATE_REPLICATION_SLOT
// ... PHYSICAL). Its restart_lsn stays unset until a client streams from
// it, as with `pg_receivewal --create-slot`. An existing slot gives an error
// matching ErrSlotExists.
func (r *ReplConn) CreatePhysicalSlot(ctx context.Context, name string) error {
	if err := ValidateSlotName(name); err != nil {
		return err
	}
	_, err := pglogrepl.CreateReplicationSlot(ctx, r.conn, name, "",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.PhysicalReplication})
	if err != nil {
		if sqlState(err) == "42710" {
			err = fmt.Errorf("%w: %w", ErrSlotExists, err)
		}
		return redactErr(fmt.Errorf("%s: create replication slot %q: %w", r.target, name, err), "")
	}
	return nil
}

// DropSlot drops a replication slot (DROP_REPLICATION_SLOT, without
// WAIT: an active slot is an error). A missing slot gives an error matching
// ErrSlotNotFound.
func (r *ReplConn) DropSlot(ctx context.Context, name string) error {
	if err := ValidateSlotName(name); err != nil {
		return err
	}
	err := pglogrepl.DropReplicationSlot(ctx, r.conn, name, pglogrepl.DropReplicationSlotOptions{})
	if err != nil {
		if sqlState(err) == "42704" {
			err = fmt.Errorf("%w: %w", ErrSlotNotFound, err)
		}
		return redactErr(fmt.Errorf("%s: drop replication slot %q: %w", r.target, name, err), "")
	}
	return nil
}

// TimelineHistory fetches the history file of timeline tli
// (TIMELINE_HISTORY): its file name ("00000002.history") and content.
// Timeline 1 has no history file; asking for it is an error (SQLSTATE
// 58P01 from the server), so callers should not.
func (r *ReplConn) TimelineHistory(ctx context.Context, tli uint32) (string, []byte, error) {
	if tli == 0 || tli > math.MaxInt32 {
		return "", nil, fmt.Errorf("%s: timeline history: invalid timeline %d", r.target, tli)
	}
	res, err := pglogrepl.TimelineHistory(ctx, r.conn, int32(tli))
	if err != nil {
		return "", nil, redactErr(fmt.Errorf("%s: TIMELINE_HISTORY %d: %w", r.target, tli, err), "")
	}
	return res.FileName, res.Content, nil
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
