package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/wal"
)

func connect(ctx context.Context, o Options) (*postgres.ReplConn, error) {
	c, err := postgres.ConnectReplication(ctx, o.ReplConninfo, postgres.ApplicationName(o.ApplicationName))
	if err != nil {
		return nil, fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}
	return c, nil
}

// CreateSlot creates the physical slot opts.SlotName
// (receive-wal --create-slot). An existing slot is an error matching
// postgres.ErrSlotExists unless ifNotExists.
func CreateSlot(ctx context.Context, opts Options, ifNotExists bool) error {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	if o.SlotName == "" {
		return fmt.Errorf("create slot for server %s: %w", o.Server, ErrNoSlot)
	}
	c, err := connect(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	err = c.CreatePhysicalSlot(ctx, o.SlotName)
	switch {
	case err == nil:
		o.Logger.Info("created replication slot", "server", o.Server, "slot", o.SlotName)
		return nil
	case errors.Is(err, postgres.ErrSlotExists) && ifNotExists:
		o.Logger.Info("replication slot already exists", "server", o.Server, "slot", o.SlotName)
		return nil
	default:
		return fmt.Errorf("create slot for server %s: %w", o.Server, err)
	}
}

// DropSlot drops the slot opts.SlotName (receive-wal --drop-slot). A slot
// in use is a *SlotInUseError; a missing one matches
// postgres.ErrSlotNotFound.
func DropSlot(ctx context.Context, opts Options) error {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	if o.SlotName == "" {
		return fmt.Errorf("drop slot for server %s: %w", o.Server, ErrNoSlot)
	}
	c, err := connect(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	if err := c.DropSlot(ctx, o.SlotName); err != nil {
		if e := slotInUse(err, o.SlotName); e != nil {
			return fmt.Errorf("drop slot for server %s: %w", o.Server, e)
		}
		return fmt.Errorf("drop slot for server %s: %w", o.Server, err)
	}
	o.Logger.Info("dropped replication slot", "server", o.Server, "slot", o.SlotName)
	return nil
}

// ResetResult says what Reset did.
type ResetResult struct {
	// Changed is false when streaming/ was already consistent (no-op).
	Changed bool
	// Partial is the empty .partial created for the restart position.
	Partial string
}

// Reset implements receive-wal --reset: it points streaming/ at the
// position the server can resume from (the slot's restart_lsn, else the
// server's current position). With no segment in streaming/ or the newest
// one already there, nothing changes; streamed WAL ahead of the server is
// an error (ErrAheadOfServer); otherwise the newest .partial is deleted and
// an empty <restart segment>.partial is created. It takes the receive-wal
// lock, so it fails while a receiver runs.
func Reset(ctx context.Context, opts Options) (ResetResult, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return ResetResult{}, err
	}
	lk, err := lock.TryLock(o.Layout.LockPath(lockTask))
	if err != nil {
		if errors.Is(err, lock.ErrBusy) {
			return ResetResult{}, fmt.Errorf("reset server %s: %w: %w", o.Server, ErrAlreadyRunning, err)
		}
		return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
	}
	defer lk.Release()

	c, err := connect(ctx, o)
	if err != nil {
		return ResetResult{}, err
	}
	defer c.Close(context.Background())
	sys, err := c.IdentifySystem(ctx)
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
	}
	segSize := o.SegmentSize
	if segSize == 0 {
		if segSize, err = showSegmentSize(ctx, c.PgConn()); err != nil {
			return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
		}
	}
	current := wal.NameForLSN(sys.Timeline, sys.XLogPos, segSize)
	restart := current
	if o.SlotName != "" && c.ServerVersion() >= 150000 {
		si, err := readSlot(ctx, c.PgConn(), o.SlotName)
		if err != nil {
			return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
		}
		if si.RestartLSN != 0 {
			restart = wal.NameForLSN(sys.Timeline, si.RestartLSN, segSize)
		}
	}
	return resetDir(o, current, restart, segSize)
}

// resetDir is Reset's decision on streaming/, given the server's current
// and restart segments.
func resetDir(o Options, current, restart wal.Name, segSize uint64) (ResetResult, error) {
	dir := o.Layout.StreamingDir
	nf, ok, err := findNewest(dir, segSize)
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
	}
	if !ok || nf.Name.Segment() == restart {
		return ResetResult{}, nil
	}
	if wal.Compare(nf.Name.Segment(), current) > 0 {
		return ResetResult{}, fmt.Errorf("reset server %s: %w: newest streamed file %s, server at %s",
			o.Server, ErrAheadOfServer, nf.Name, current)
	}
	if nf.Name.Kind == wal.KindPartial {
		p := filepath.Join(dir, nf.Name.String())
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return ResetResult{}, fmt.Errorf("reset server %s: remove %s: %w", o.Server, p, err)
		}
	}
	p := filepath.Join(dir, restart.Partial().String())
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
	}
	if err := f.Close(); err != nil {
		return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return ResetResult{}, fmt.Errorf("reset server %s: %w", o.Server, err)
	}
	o.Logger.Info("reset streaming position", "server", o.Server, "partial", restart.Partial().String())
	return ResetResult{Changed: true, Partial: restart.Partial().String()}, nil
}

// probeInterval is Barman's pause between liveness probes after SIGINT.
const probeInterval = time.Second

// Stop implements receive-wal --stop: it sends SIGINT to the process
// holding the receive-wal lock, then probes it once a second, up to ten
// times, like Barman. No holder is ErrNotRunning.
func Stop(ctx context.Context, layout catalog.Layout) error {
	path := layout.LockPath(lockTask)
	pid, held, err := lock.Holder(path)
	if err != nil {
		return fmt.Errorf("stop receive-wal for server %s: %w", layout.Server, err)
	}
	if !held || pid <= 0 {
		return fmt.Errorf("stop receive-wal for server %s: %w", layout.Server, ErrNotRunning)
	}
	if pid == os.Getpid() {
		// The receiver runs inside this process (a Supervisor): stop it
		// through the Supervisor, not with a signal to ourselves.
		return fmt.Errorf("stop receive-wal for server %s: the receiver runs in this process (%d)", layout.Server, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stop receive-wal for server %s: signal process %d: %w", layout.Server, pid, err)
	}
	// Gone when the process no longer exists or no longer holds the lock
	// (a zombie child of the caller still "exists" but has let go).
	gone := func() bool {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		p, held, err := lock.Holder(path)
		return err == nil && (!held || p != pid)
	}
	for range 10 {
		if gone() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop receive-wal for server %s: %w", layout.Server, ctx.Err())
		case <-time.After(probeInterval):
		}
	}
	if gone() {
		return nil
	}
	return fmt.Errorf("stop receive-wal for server %s: process %d is still running after SIGINT", layout.Server, pid)
}
