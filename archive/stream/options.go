// Package stream is Cellar's native WAL streamer: the receive-wal Receiver
// (physical replication into the server's streaming/ directory, the job
// pg_receivewal does for Barman), the replication slot commands, --reset and
// --stop, and a Supervisor that keeps a Receiver running in-process.
//
// On-disk behaviour follows pg_receivewal, so that Barman's archive-wal (and
// Cellar's) can treat streaming/ the same way: the segment being written is
// <segment>.partial, sized to the full segment from the start; it is renamed
// to <segment> once complete; a segment left incomplete by a timeline switch
// keeps its .partial name; <tli>.history files are fetched with
// TIMELINE_HISTORY and stored next to the segments.
package stream

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/postgres"
)

// DefaultApplicationName is Barman's default streaming_archiver_name.
const DefaultApplicationName = "barman_receive_wal"

// DefaultStatusInterval is how often the open .partial is fsynced and a
// standby status update sent when the server asks for none. PostgreSQL's
// wal_receiver_status_interval is 10 s, but flush is reported only after an
// fsync, so at 10 s the reported flush position trails by up to a whole
// segment under load (measured: 0.93 segment at 12 MiB/s); 1 s keeps the
// flush lag, which the exporter reports, well under a segment for the cost
// of one fsync per second.
const DefaultStatusInterval = 1 * time.Second

// lockTask is the lock-file task name: .<server>-receive-wal.lock.
const lockTask = "receive-wal"

// Options configures the receiver and the slot/reset/stop commands. It is
// filled by the server layer from the configuration; this package never
// reads config itself.
type Options struct {
	// Server is the server name (messages, lock file name).
	Server string
	// Layout locates streaming/ (where WAL is written) and the lock dir.
	Layout catalog.Layout
	// ReplConninfo is the conninfo of the WAL streaming connection
	// (streaming_conninfo); the replication keyword is forced.
	ReplConninfo string
	// SlotName is the physical replication slot to stream from ("" = none).
	SlotName string
	// CreateSlot creates a missing slot at start (create_slot = auto).
	CreateSlot bool
	// ApplicationName is sent as application_name (streaming_archiver_name).
	// Default DefaultApplicationName.
	ApplicationName string
	// Synchronous fsyncs and reports every received chunk at once, so the
	// server may use the receiver as a synchronous standby.
	Synchronous bool
	// SegmentSize is the WAL segment size; 0 asks the server.
	SegmentSize uint64
	// StatusInterval overrides DefaultStatusInterval (tests).
	StatusInterval time.Duration
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.ApplicationName == "" {
		o.ApplicationName = DefaultApplicationName
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = DefaultStatusInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	if o.Server == "" {
		return errors.New("receive-wal: no server name")
	}
	if o.Layout.StreamingDir == "" {
		return fmt.Errorf("receive-wal server %s: no streaming directory", o.Server)
	}
	if o.ReplConninfo == "" {
		return fmt.Errorf("receive-wal server %s: %w", o.Server, ErrNoConninfo)
	}
	if o.SlotName != "" {
		if err := postgres.ValidateSlotName(o.SlotName); err != nil {
			return fmt.Errorf("receive-wal server %s: %w", o.Server, err)
		}
	}
	return nil
}

// Errors matched with errors.Is.
var (
	// ErrNoConninfo: the server has no streaming conninfo.
	ErrNoConninfo = errors.New("no streaming connection string configured")
	// ErrNoSlot: a slot command was asked for but no slot_name is set.
	ErrNoSlot = errors.New("no replication slot name configured (slot_name)")
	// ErrAlreadyRunning: another receive-wal holds the lock (a
	// *lock.BusyError with the holder PID is wrapped too).
	ErrAlreadyRunning = errors.New("another receive-wal process is already running")
	// ErrNotRunning: --stop found no receive-wal process.
	ErrNotRunning = errors.New("no receive-wal process is running")
	// ErrSlotInUse is matched by *SlotInUseError.
	ErrSlotInUse = errors.New("replication slot is already in use")
	// ErrSlotMissing: the slot does not exist and create_slot is not auto.
	ErrSlotMissing = errors.New("replication slot does not exist")
	// ErrAheadOfServer: --reset found streamed WAL beyond the server's
	// current position (the server was probably restored or replaced).
	ErrAheadOfServer = errors.New("streamed WAL is ahead of the server")
	// ErrStreamGap: the server sent WAL that does not continue where the
	// receiver is (protocol violation or a bug); the receiver stops rather
	// than write a hole.
	ErrStreamGap = errors.New("unexpected WAL position in replication stream")
)

// SlotInUseError reports a slot held by another walsender.
type SlotInUseError struct {
	Slot string
	PID  int // 0 when the server did not say
}

func (e *SlotInUseError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("replication slot %q is already in use by process %d", e.Slot, e.PID)
	}
	return fmt.Sprintf("replication slot %q is already in use", e.Slot)
}

// Is makes errors.Is(err, ErrSlotInUse) true.
func (e *SlotInUseError) Is(target error) bool { return target == ErrSlotInUse }
