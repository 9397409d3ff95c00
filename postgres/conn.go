// Package postgres talks to a PostgreSQL server for Cellar: a normal SQL
// connection (Conn) for status, privileges, WAL switches and restore points,
// and a physical replication connection (ReplConn) for IDENTIFY_SYSTEM and,
// through PgConn, streaming and base backups.
//
// Connections are short-lived: callers open one under a context (a check's
// timeout, a job's lifetime) and close it. No error returned by this package
// contains a password from the conninfo.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultApplicationName is set when the conninfo names none.
const DefaultApplicationName = "cellar"

// ErrUnsupportedVersion is returned (wrapped) by operations that need a
// newer PostgreSQL than the server runs.
var ErrUnsupportedVersion = errors.New("unsupported PostgreSQL version")

// Option changes how a connection is opened.
type Option func(*connectOptions)

type connectOptions struct {
	applicationName string
}

// ApplicationName sets application_name when the conninfo does not set it
// (e.g. "barman_receive_wal" for a WAL streamer), instead of "cellar".
func ApplicationName(name string) Option {
	return func(o *connectOptions) { o.applicationName = name }
}

func buildOptions(opts []Option) connectOptions {
	o := connectOptions{applicationName: DefaultApplicationName}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Conn is a normal (non-replication) connection. It is not safe for
// concurrent use, like the *pgx.Conn it wraps.
type Conn struct {
	conn *pgx.Conn
	// target describes the server for error messages: host, port, user,
	// dbname only (never the password).
	target string
	// version is server_version_num, read from the startup parameters.
	version int
}

// Connect opens a normal connection. conninfo is a libpq keyword/value
// string or URI; passfile and service files work as in libpq. Errors never
// contain the password.
func Connect(ctx context.Context, conninfo string, opts ...Option) (*Conn, error) {
	o := buildOptions(opts)
	cfg, err := pgx.ParseConfig(conninfo)
	if err != nil {
		return nil, redactErr(fmt.Errorf("parse conninfo %q: %w", RedactConninfo(conninfo), err), "")
	}
	if cfg.RuntimeParams["application_name"] == "" && o.applicationName != "" {
		cfg.RuntimeParams["application_name"] = o.applicationName
	}
	// Cellar's connections are short-lived and run each statement once or
	// twice: preparing and caching statements only doubles round trips.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	target := describe(&cfg.Config)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, redactErr(fmt.Errorf("connect to %s: %w", target, err), cfg.Password)
	}
	c := &Conn{conn: conn, target: target}
	c.version, _ = parseServerVersion(conn.PgConn().ParameterStatus("server_version"))
	return c, nil
}

// describe names a server without secrets, for errors and logs.
func describe(cfg *pgconn.Config) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s", cfg.Host, cfg.Port, cfg.User, cfg.Database)
}

// Close closes the connection; it is safe to call on a nil or closed Conn.
func (c *Conn) Close(ctx context.Context) error {
	if c == nil || c.conn == nil {
		return nil
	}
	return c.conn.Close(ctx)
}

// PgxConn exposes the underlying connection for callers that must run their
// own statements in this session (e.g. pg_backup_start/stop, which have to
// share one session).
func (c *Conn) PgxConn() *pgx.Conn { return c.conn }

// Target is "host=... port=... user=... dbname=..." (no password).
func (c *Conn) Target() string { return c.target }

// ServerVersion is server_version_num (e.g. 150018) as reported at startup,
// or 0 if the server did not report a parsable version.
func (c *Conn) ServerVersion() int { return c.version }

// wrap adds the target and hides secrets.
func (c *Conn) wrap(what string, err error) error {
	return redactErr(fmt.Errorf("%s: %s: %w", c.target, what, err), "")
}

// wrapIf is wrap for a possibly nil error.
func (c *Conn) wrapIf(what string, err error) error {
	if err == nil {
		return nil
	}
	return c.wrap(what, err)
}

// parseServerVersion turns server_version text ("15.18 (Debian ...)",
// "16beta1", "9.6.24") into the server_version_num form (150018, 160000,
// 90624).
func parseServerVersion(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty server_version")
	}
	v := f[0]
	// Cut at the first non-digit, non-dot character (beta/rc/devel).
	if i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	nums := make([]int, 0, 3)
	for _, p := range parts {
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("server_version %q: %w", s, err)
		}
		nums = append(nums, n)
	}
	if len(nums) == 0 {
		return 0, fmt.Errorf("server_version %q: no number", s)
	}
	for len(nums) < 3 {
		nums = append(nums, 0)
	}
	if nums[0] >= 10 {
		return nums[0]*10000 + nums[1], nil
	}
	return nums[0]*10000 + nums[1]*100 + nums[2], nil
}
