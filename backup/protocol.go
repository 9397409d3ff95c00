package backup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cellar-backup/cellar/wal"
)

// ErrProtocol reports a BASE_BACKUP response Cellar does not understand.
var ErrProtocol = errors.New("unexpected BASE_BACKUP response")

// Frame types of PG15's single CopyOut stream (basebackup_copy.c).
const (
	FrameArchive  = 'n' // new archive: name\0location\0
	FrameData     = 'd' // archive or manifest bytes
	FrameProgress = 'p' // int64 bytes done so far
	FrameManifest = 'm' // the manifest follows as d frames
)

// Frame is one decoded CopyData payload of a PG15 BASE_BACKUP stream. Data
// aliases the input buffer.
type Frame struct {
	Type     byte
	Name     string // FrameArchive: "base.tar" or "<oid>.tar"
	Location string // FrameArchive: tablespace location, "" for base
	Data     []byte // FrameData
	Progress int64  // FrameProgress
}

// ParseFrame decodes one CopyData payload.
func ParseFrame(b []byte) (Frame, error) {
	if len(b) == 0 {
		return Frame{}, fmt.Errorf("%w: empty CopyData", ErrProtocol)
	}
	f := Frame{Type: b[0]}
	rest := b[1:]
	switch f.Type {
	case FrameArchive:
		name, after, ok := cutNUL(rest)
		if !ok {
			return Frame{}, fmt.Errorf("%w: archive frame without NUL-terminated name", ErrProtocol)
		}
		loc, after, ok := cutNUL(after)
		if !ok {
			return Frame{}, fmt.Errorf("%w: archive frame without NUL-terminated location", ErrProtocol)
		}
		if len(after) != 0 {
			return Frame{}, fmt.Errorf("%w: %d trailing bytes in archive frame", ErrProtocol, len(after))
		}
		if !validArchiveName(name) {
			return Frame{}, fmt.Errorf("%w: bad archive name %q", ErrProtocol, name)
		}
		f.Name, f.Location = name, loc
	case FrameData:
		f.Data = rest
	case FrameProgress:
		if len(rest) != 8 {
			return Frame{}, fmt.Errorf("%w: progress frame of %d bytes", ErrProtocol, len(rest))
		}
		f.Progress = int64(binary.BigEndian.Uint64(rest))
		if f.Progress < 0 {
			return Frame{}, fmt.Errorf("%w: negative progress %d", ErrProtocol, f.Progress)
		}
	case FrameManifest:
		if len(rest) != 0 {
			return Frame{}, fmt.Errorf("%w: %d bytes in manifest frame", ErrProtocol, len(rest))
		}
	default:
		return Frame{}, fmt.Errorf("%w: unknown CopyData type %q", ErrProtocol, f.Type)
	}
	return f, nil
}

func cutNUL(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// validArchiveName accepts the names PG15 sends: base.tar and <oid>.tar,
// plus the compressor's suffix (.gz, .lz4, .zst) when the server compresses.
// Anything else could escape the backup directory when used as a file name.
func validArchiveName(name string) bool {
	_, _, ok := splitArchiveName(name)
	return ok
}

// splitArchiveName splits "<oid>.tar.zst" into oid (0 for base.tar) and the
// compression suffix ("" for an uncompressed archive).
func splitArchiveName(name string) (oid uint32, suffix string, ok bool) {
	stem, rest, found := strings.Cut(name, ".tar")
	if !found {
		return 0, "", false
	}
	switch rest {
	case "", ".gz", ".lz4", ".zst":
	default:
		return 0, "", false
	}
	if stem == "base" {
		return 0, rest, true
	}
	v, err := parseOID(stem)
	if err != nil {
		return 0, "", false
	}
	return v, rest, true
}

func parseOID(s string) (uint32, error) {
	if s == "" || len(s) > 10 || s[0] == '0' {
		return 0, fmt.Errorf("bad oid %q", s)
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("bad oid %q", s)
	}
	return uint32(v), nil
}

// Command holds the BASE_BACKUP options Cellar uses.
type Command struct {
	Label         string
	Fast          bool  // CHECKPOINT 'fast' (else 'spread')
	MaxRateKBps   int64 // 0 = unlimited; else 32..1048576
	TablespaceMap bool
	// ManifestChecksums: CRC32C (default, cheap) or SHA256 etc.
	ManifestChecksums string
	// Compression makes the server compress each archive (PG15
	// COMPRESSION): "" or none, gzip, lz4, zstd. CompressionDetail is
	// COMPRESSION_DETAIL, e.g. "level=3,workers=2".
	Compression       string
	CompressionDetail string
	// ServerVersion is the server's server_version_num. Before 150000 the
	// command takes the old option syntax and the server cannot compress;
	// 0 means a current server.
	ServerVersion int
	// Incremental asks for an incremental backup (PostgreSQL 17+) against
	// the manifest uploaded just before on the same connection.
	Incremental bool
}

// legacyProtocol reports a server before PostgreSQL 15: old BASE_BACKUP
// option syntax, and one CopyOut per tablespace plus one for the manifest
// instead of the single framed stream.
func legacyProtocol(serverVersion int) bool {
	return serverVersion != 0 && serverVersion < 150000
}

// SQL renders the BASE_BACKUP command for the server's version. WAL is
// never included (Cellar archives WAL separately) and the server does not
// wait for WAL archiving: check-backup does that.
func (c Command) SQL() (string, error) {
	if strings.IndexByte(c.Label, 0) >= 0 {
		return "", fmt.Errorf("backup label contains NUL")
	}
	if len(c.Label) > 1023 { // MAXPGPATH-1: the server rejects longer labels
		return "", fmt.Errorf("backup label longer than 1023 bytes")
	}
	sum := c.ManifestChecksums
	if sum == "" {
		sum = "CRC32C"
	}
	switch sum {
	case "CRC32C", "SHA224", "SHA256", "SHA384", "SHA512", "NONE":
	default:
		return "", fmt.Errorf("unknown manifest checksum algorithm %q", sum)
	}
	if c.MaxRateKBps != 0 && (c.MaxRateKBps < 32 || c.MaxRateKBps > 1048576) {
		return "", fmt.Errorf("max rate %d kB/s out of range 32..1048576", c.MaxRateKBps)
	}
	if c.Incremental && c.ServerVersion != 0 && c.ServerVersion < MinIncrementalVersion {
		return "", fmt.Errorf("PostgreSQL %d cannot take incremental backups (BASE_BACKUP INCREMENTAL needs PostgreSQL 17)", c.ServerVersion/10000)
	}
	if legacyProtocol(c.ServerVersion) {
		return c.legacySQL(sum)
	}
	return c.currentSQL(sum)
}

// legacySQL is the PostgreSQL 13/14 form: bare keywords, FAST for an
// immediate checkpoint, NOWAIT; no server compression.
func (c Command) legacySQL(sum string) (string, error) {
	if (c.Compression != "" && c.Compression != CompressionNone) || c.CompressionDetail != "" {
		return "", fmt.Errorf("PostgreSQL %d cannot compress a backup on the server (BASE_BACKUP COMPRESSION needs PostgreSQL 15); compress in Cellar instead",
			c.ServerVersion/10000)
	}
	opts := []string{"LABEL " + quoteLiteral(c.Label), "PROGRESS", "NOWAIT", "MANIFEST 'yes'", "MANIFEST_CHECKSUMS " + quoteLiteral(sum)}
	if c.Fast {
		opts = append(opts, "FAST")
	}
	if c.MaxRateKBps != 0 {
		opts = append(opts, "MAX_RATE "+strconv.FormatInt(c.MaxRateKBps, 10))
	}
	if c.TablespaceMap {
		opts = append(opts, "TABLESPACE_MAP")
	}
	return "BASE_BACKUP " + strings.Join(opts, " "), nil
}

// currentSQL is the PostgreSQL 15+ form: BASE_BACKUP (option 'value', ...).
func (c Command) currentSQL(sum string) (string, error) {
	opts := []string{
		"LABEL " + quoteLiteral(c.Label),
		"PROGRESS",
		"WAIT false",
		"MANIFEST 'yes'",
	}
	if c.Fast {
		opts = append(opts, "CHECKPOINT 'fast'")
	} else {
		opts = append(opts, "CHECKPOINT 'spread'")
	}
	opts = append(opts, "MANIFEST_CHECKSUMS "+quoteLiteral(sum))
	if c.MaxRateKBps != 0 {
		opts = append(opts, "MAX_RATE "+strconv.FormatInt(c.MaxRateKBps, 10))
	}
	if c.TablespaceMap {
		opts = append(opts, "TABLESPACE_MAP")
	}
	if c.Incremental {
		opts = append(opts, "INCREMENTAL")
	}
	switch c.Compression {
	case "", CompressionNone:
		if c.CompressionDetail != "" {
			return "", fmt.Errorf("compression detail %q without server compression", c.CompressionDetail)
		}
	case CompressionGzip, CompressionLZ4, CompressionZstd:
		opts = append(opts, "COMPRESSION "+quoteLiteral(c.Compression))
		if c.CompressionDetail != "" {
			if err := validCompressionDetail(c.CompressionDetail); err != nil {
				return "", err
			}
			opts = append(opts, "COMPRESSION_DETAIL "+quoteLiteral(c.CompressionDetail))
		}
	default:
		return "", fmt.Errorf("unknown server compression %q (want gzip, lz4 or zstd)", c.Compression)
	}
	return "BASE_BACKUP (" + strings.Join(opts, ", ") + ")", nil
}

// validCompressionDetail checks the shape the server parses
// (keyword[=value] separated by commas or spaces: level=N, workers=N,
// long) so a typo fails here with a clear message rather than as a server
// syntax error after the checkpoint.
func validCompressionDetail(d string) error {
	for _, item := range strings.FieldsFunc(d, func(r rune) bool { return r == ',' || r == ' ' }) {
		key, val, hasVal := strings.Cut(item, "=")
		switch key {
		case "level", "workers":
			if !hasVal {
				return fmt.Errorf("compression detail %q: %s needs a value", d, key)
			}
			if _, err := strconv.Atoi(val); err != nil {
				return fmt.Errorf("compression detail %q: %s=%q is not an integer", d, key, val)
			}
		case "long":
			if hasVal && val != "on" && val != "off" && val != "true" && val != "false" && val != "1" && val != "0" {
				return fmt.Errorf("compression detail %q: long=%q is not a boolean", d, val)
			}
		default:
			return fmt.Errorf("compression detail %q: unknown option %q (want level, workers or long)", d, key)
		}
	}
	return nil
}

// quoteLiteral quotes s for the replication command lexer, which knows only
// a doubled quote as an escape (backslashes are literal).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Tablespace is one row of BASE_BACKUP's tablespace result set.
type Tablespace struct {
	OID      uint32 // 0 for the main data directory
	Location string
	Size     int64 // estimated bytes (sent in kB with PROGRESS), -1 when NULL
}

// Position is a (LSN, timeline) result set.
type Position struct {
	LSN      wal.LSN
	Timeline uint32
}

// stream reads one BASE_BACKUP exchange on a replication connection. It is
// pull-based: archive data is read through Read, so the tar parser drives
// the network without an extra goroutine or copy.
type stream struct {
	ctx  context.Context // the exchange's context; stream lives within one call
	conn *pgconn.PgConn

	Start       Position
	Tablespaces []Tablespace
	End         Position

	// onProgress is called for each p frame and for every data chunk.
	onProgress func(done int64)
	received   int64 // data bytes (archives + manifest)

	pending *Frame // the n/m frame that ended the current reader
	buf     []byte // unread part of the current d frame
	done    bool   // CopyDone seen

	// legacy: a pre-15 server sends one CopyOut per tablespace (in the
	// order of the tablespace result, the main directory last) and then
	// one for the manifest, with raw bytes as CopyData; the stream turns
	// each CopyOut into the n or m frame the PG15 framing would have sent.
	legacy   bool
	sections int // CopyOuts begun (legacy)
}

func startStream(ctx context.Context, conn *pgconn.PgConn, sql string, legacy bool) (*stream, error) {
	conn.Frontend().SendQuery(&pgproto3.Query{String: sql})
	if err := conn.Frontend().Flush(); err != nil {
		return nil, fmt.Errorf("send BASE_BACKUP: %w", err)
	}
	s := &stream{ctx: ctx, conn: conn, legacy: legacy}
	start, err := s.readPosition()
	if err != nil {
		return nil, fmt.Errorf("BASE_BACKUP start position: %w", err)
	}
	s.Start = start
	if s.Tablespaces, err = s.readTablespaces(); err != nil {
		return nil, fmt.Errorf("BASE_BACKUP tablespaces: %w", err)
	}
	return s, nil
}

func (s *stream) receive() (pgproto3.BackendMessage, error) {
	for {
		msg, err := s.conn.ReceiveMessage(s.ctx)
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
			continue
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(m)
			s.drainToReady()
			return nil, pgErr
		}
		return msg, nil
	}
}

// drainToReady consumes messages up to ReadyForQuery after a server error,
// so the connection could be reused; errors here do not matter.
func (s *stream) drainToReady() {
	for range 64 {
		msg, err := s.conn.ReceiveMessage(s.ctx)
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return
		}
	}
}

// readPosition reads a (recptr, tli) result set up to CommandComplete.
func (s *stream) readPosition() (Position, error) {
	var pos Position
	var got bool
	for {
		msg, err := s.receive()
		if err != nil {
			return pos, err
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			if len(m.Fields) != 2 {
				return pos, fmt.Errorf("%w: position result with %d columns", ErrProtocol, len(m.Fields))
			}
		case *pgproto3.DataRow:
			p, err := parsePositionRow(m.Values)
			if err != nil {
				return pos, err
			}
			pos, got = p, true
		case *pgproto3.CommandComplete:
			if !got {
				return pos, fmt.Errorf("%w: position result without row", ErrProtocol)
			}
			return pos, nil
		default:
			return pos, fmt.Errorf("%w: %T while reading position", ErrProtocol, msg)
		}
	}
}

func parsePositionRow(values [][]byte) (Position, error) {
	if len(values) != 2 || values[0] == nil || values[1] == nil {
		return Position{}, fmt.Errorf("%w: bad position row", ErrProtocol)
	}
	lsn, err := wal.ParseLSN(string(values[0]))
	if err != nil {
		return Position{}, fmt.Errorf("%w: LSN %q: %v", ErrProtocol, values[0], err)
	}
	tli, err := strconv.ParseUint(string(values[1]), 10, 32)
	if err != nil || tli == 0 {
		return Position{}, fmt.Errorf("%w: timeline %q", ErrProtocol, values[1])
	}
	return Position{LSN: lsn, Timeline: uint32(tli)}, nil
}

func (s *stream) readTablespaces() ([]Tablespace, error) {
	var out []Tablespace
	for {
		msg, err := s.receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			if len(m.Fields) != 3 {
				return nil, fmt.Errorf("%w: tablespace result with %d columns", ErrProtocol, len(m.Fields))
			}
		case *pgproto3.DataRow:
			ts, err := parseTablespaceRow(m.Values)
			if err != nil {
				return nil, err
			}
			out = append(out, ts)
		case *pgproto3.CommandComplete:
			return out, nil
		default:
			return nil, fmt.Errorf("%w: %T while reading tablespaces", ErrProtocol, msg)
		}
	}
}

func parseTablespaceRow(values [][]byte) (Tablespace, error) {
	if len(values) != 3 {
		return Tablespace{}, fmt.Errorf("%w: tablespace row with %d columns", ErrProtocol, len(values))
	}
	ts := Tablespace{Size: -1}
	if values[0] != nil {
		oid, err := parseOID(string(values[0]))
		if err != nil {
			return Tablespace{}, fmt.Errorf("%w: tablespace %v", ErrProtocol, err)
		}
		ts.OID = oid
		ts.Location = string(values[1])
	}
	if values[2] != nil {
		// An int8 estimate in kB (with PROGRESS); pglogrepl's int8 Go
		// field overflows on it, hence this parser.
		n, err := strconv.ParseInt(string(values[2]), 10, 64)
		if err != nil || n < 0 || n > 1<<53 {
			return Tablespace{}, fmt.Errorf("%w: tablespace size %q", ErrProtocol, values[2])
		}
		ts.Size = n * 1024
	}
	return ts, nil
}

// nextSection waits for the next n or m frame (after CopyOutResponse) and
// returns it, or nil at CopyDone.
func (s *stream) nextSection() (*Frame, error) {
	if s.pending != nil {
		f := s.pending
		s.pending = nil
		return f, nil
	}
	for !s.done {
		f, err := s.nextFrame()
		if err != nil {
			return nil, err
		}
		if f == nil {
			continue
		}
		switch f.Type {
		case FrameArchive, FrameManifest:
			return f, nil
		case FrameData:
			return nil, fmt.Errorf("%w: data before any archive", ErrProtocol)
		}
	}
	return nil, nil
}

// nextFrame reads one message of the copy stream: nil frame for
// CopyOutResponse and progress (handled here), s.done at CopyDone.
func (s *stream) nextFrame() (*Frame, error) {
	msg, err := s.receive()
	if err != nil {
		return nil, err
	}
	switch m := msg.(type) {
	case *pgproto3.CopyOutResponse:
		if s.legacy {
			return s.legacySection()
		}
		return nil, nil
	case *pgproto3.CopyDone:
		// In the legacy protocol only the manifest's CopyDone ends the
		// stream.
		if !s.legacy || s.sections > len(s.Tablespaces) {
			s.done = true
		}
		return nil, nil
	case *pgproto3.CopyData:
		if s.legacy {
			if s.sections == 0 {
				return nil, fmt.Errorf("%w: CopyData before CopyOutResponse", ErrProtocol)
			}
			s.received += int64(len(m.Data))
			return &Frame{Type: FrameData, Data: m.Data}, nil
		}
		f, err := ParseFrame(m.Data)
		if err != nil {
			return nil, err
		}
		if f.Type == FrameProgress {
			if s.onProgress != nil {
				s.onProgress(f.Progress)
			}
			return nil, nil
		}
		if f.Type == FrameData {
			s.received += int64(len(f.Data))
		}
		return &f, nil
	default:
		return nil, fmt.Errorf("%w: %T in copy stream", ErrProtocol, msg)
	}
}

// legacySection names the archive a pre-15 CopyOut carries: the next
// tablespace of the result set, then the manifest.
func (s *stream) legacySection() (*Frame, error) {
	i := s.sections
	s.sections++
	switch {
	case i < len(s.Tablespaces):
		ts := s.Tablespaces[i]
		name := "base.tar"
		if ts.OID != 0 {
			name = strconv.FormatUint(uint64(ts.OID), 10) + ".tar"
		}
		return &Frame{Type: FrameArchive, Name: name, Location: ts.Location}, nil
	case i == len(s.Tablespaces):
		return &Frame{Type: FrameManifest}, nil
	}
	return nil, fmt.Errorf("%w: CopyOut %d after %d tablespaces and the manifest", ErrProtocol, i+1, len(s.Tablespaces))
}

// Read returns the current section's data (archive or manifest) and io.EOF
// when the next n/m frame or CopyDone arrives. The returned bytes are copied
// out of pgconn's buffer, which the next receive reuses.
func (s *stream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.pending != nil || s.done {
			return 0, io.EOF
		}
		f, err := s.nextFrame()
		if err != nil {
			return 0, err
		}
		if f == nil {
			continue
		}
		if f.Type != FrameData {
			s.pending = f
			return 0, io.EOF
		}
		s.buf = f.Data
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// finish reads the end position and the final CommandComplete/ReadyForQuery.
func (s *stream) finish() error {
	if !s.done {
		return fmt.Errorf("%w: finish before CopyDone", ErrProtocol)
	}
	end, err := s.readPosition()
	if err != nil {
		return fmt.Errorf("BASE_BACKUP end position: %w", err)
	}
	s.End = end
	for {
		msg, err := s.receive()
		if err != nil {
			return fmt.Errorf("BASE_BACKUP end: %w", err)
		}
		switch msg.(type) {
		case *pgproto3.ReadyForQuery:
			return nil
		case *pgproto3.CommandComplete, *pgproto3.RowDescription, *pgproto3.DataRow:
			// PG15 ends with "BASE_BACKUP" CommandComplete.
		default:
			return fmt.Errorf("%w: %T after backup end", ErrProtocol, msg)
		}
	}
}
