package stream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/wal"
)

// Progress is a snapshot of a receiver's position.
type Progress struct {
	// Streaming is true while a replication stream is open.
	Streaming bool
	// Timeline is the timeline being streamed.
	Timeline uint32
	// LastReceivedLSN is the end of the WAL written to streaming/.
	LastReceivedLSN wal.LSN
	// LastFlushLSN is the end of the WAL known to be fsynced (and reported
	// to the server as flushed).
	LastFlushLSN wal.LSN
	// LastFlushTime is when LastFlushLSN last advanced.
	LastFlushTime time.Time
	// ServerLSN is the server's WAL end as of the latest message.
	ServerLSN wal.LSN
}

// tracker holds the Progress shared with readers on other goroutines.
type tracker struct {
	mu sync.Mutex
	p  Progress
}

func (t *tracker) get() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}

func (t *tracker) update(f func(*Progress)) {
	t.mu.Lock()
	f(&t.p)
	t.mu.Unlock()
}

// Receiver streams one server's WAL into its streaming/ directory. Create it
// with NewReceiver; Run it once at a time (the receive-wal lock enforces it
// across processes too).
type Receiver struct {
	opts Options
	tr   *tracker
}

// NewReceiver checks opts and returns a Receiver.
func NewReceiver(opts Options) (*Receiver, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Receiver{opts: opts, tr: &tracker{}}, nil
}

// Progress returns the current position; safe for concurrent use.
func (r *Receiver) Progress() Progress { return r.tr.get() }

// Run streams until ctx is cancelled (a clean stop: it returns nil after
// fsyncing and reporting what it has) or an error occurs. It holds the
// receive-wal lock for the whole run.
func (r *Receiver) Run(ctx context.Context) error {
	o := r.opts
	lk, err := lock.TryLock(o.Layout.LockPath(lockTask))
	if err != nil {
		if errors.Is(err, lock.ErrBusy) {
			return fmt.Errorf("receive-wal server %s: %w: %w", o.Server, ErrAlreadyRunning, err)
		}
		return fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}
	defer lk.Release()
	defer r.tr.update(func(p *Progress) { p.Streaming = false })

	if err := durable.MkdirAll(o.Layout.StreamingDir, 0o700); err != nil {
		return fmt.Errorf("receive-wal server %s: create %s: %w", o.Server, o.Layout.StreamingDir, err)
	}
	conn, err := postgres.ConnectReplication(ctx, o.ReplConninfo, postgres.ApplicationName(o.ApplicationName))
	if err != nil {
		return r.finish(ctx, fmt.Errorf("receive-wal server %s: %w", o.Server, err))
	}
	defer conn.Close(context.Background())

	s := &session{r: r, conn: conn, pg: conn.PgConn()}
	return r.finish(ctx, s.run(ctx))
}

// finish maps a cancellation into a clean stop.
func (r *Receiver) finish(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		r.opts.Logger.Info("receive-wal stopped", "server", r.opts.Server)
		return nil
	}
	return err
}

// session is one connection's worth of streaming.
type session struct {
	r       *Receiver
	conn    *postgres.ReplConn
	pg      *pgconn.PgConn
	segSize uint64

	seg      *segmentFile // open .partial, nil between segments
	received wal.LSN      // end of the WAL written so far
	flushed  wal.LSN      // end of the WAL fsynced
	lastSent time.Time
}

func (s *session) run(ctx context.Context) error {
	o := s.r.opts
	sys, err := s.conn.IdentifySystem(ctx)
	if err != nil {
		return fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}
	s.segSize = o.SegmentSize
	if s.segSize == 0 {
		if s.segSize, err = showSegmentSize(ctx, s.pg); err != nil {
			return fmt.Errorf("receive-wal server %s: %w", o.Server, err)
		}
	} else if err := wal.ValidateSegmentSize(s.segSize); err != nil {
		return fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}

	var slot slotInfo
	if o.SlotName != "" {
		if slot, err = s.prepareSlot(ctx); err != nil {
			return err
		}
	}

	if fixed, err := fixBadPartial(o.Layout.StreamingDir, s.segSize); err != nil {
		return fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	} else if fixed {
		o.Logger.Warn("truncated a .partial file of bad size", "server", o.Server)
	}

	start, tli, err := s.startPosition(sys, slot)
	if err != nil {
		return err
	}
	o.Logger.Info("starting WAL streaming", "server", o.Server, "timeline", tli, "start", start.String(),
		"slot", o.SlotName, "synchronous", o.Synchronous)

	for {
		eot, err := s.streamTimeline(ctx, tli, start)
		if err != nil {
			return err
		}
		o.Logger.Info("end of timeline, following the switch", "server", o.Server,
			"timeline", tli, "next_timeline", eot.NextTLI, "switch_lsn", eot.SwitchAt.String())
		if eot.NextTLI <= tli {
			return fmt.Errorf("receive-wal server %s: server switched from timeline %d to older timeline %d", o.Server, tli, eot.NextTLI)
		}
		// pg_receivewal restarts at the segment start on the new timeline:
		// the server sends the whole segment, whose first part it copied
		// from the old timeline at promotion.
		tli = eot.NextTLI
		start = wal.LSN(uint64(eot.SwitchAt) - uint64(eot.SwitchAt)%s.segSize)
	}
}

// prepareSlot checks the slot (PostgreSQL 15+: READ_REPLICATION_SLOT),
// creating it when missing and create_slot is auto.
func (s *session) prepareSlot(ctx context.Context) (slotInfo, error) {
	o := s.r.opts
	if v := s.conn.ServerVersion(); v != 0 && v < 150000 {
		return slotInfo{}, s.preparePre15Slot(ctx)
	}
	si, err := readSlot(ctx, s.pg, o.SlotName)
	if err != nil {
		return slotInfo{}, fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}
	if si.Exists {
		return si, nil
	}
	return s.createSlot(ctx)
}

// preparePre15Slot: before PostgreSQL 15 a replication connection cannot
// read a slot (no READ_REPLICATION_SLOT), so with create_slot auto the slot
// is created unless it exists (pg_receivewal --create-slot
// --if-not-exists); otherwise START_REPLICATION reports a missing or busy
// slot. The start position then comes from streaming/ or the server's
// current position, never from the slot.
func (s *session) preparePre15Slot(ctx context.Context) error {
	if !s.r.opts.CreateSlot {
		return nil
	}
	_, err := s.createSlot(ctx)
	return err
}

// createSlot creates the missing slot when create_slot is auto.
func (s *session) createSlot(ctx context.Context) (slotInfo, error) {
	o := s.r.opts
	if !o.CreateSlot {
		return slotInfo{}, fmt.Errorf("receive-wal server %s: %w: %q (create it with receive-wal --create-slot or set create_slot = auto)",
			o.Server, ErrSlotMissing, o.SlotName)
	}
	o.Logger.Info("creating physical replication slot", "server", o.Server, "slot", o.SlotName)
	if err := s.conn.CreatePhysicalSlot(ctx, o.SlotName); err != nil && !errors.Is(err, postgres.ErrSlotExists) {
		return slotInfo{}, fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}
	return slotInfo{Exists: true}, nil
}

// startPosition picks where to start, like pg_receivewal: after the newest
// complete segment in streaming/, or at the start of the newest .partial;
// else the slot's restart_lsn; else the server's current position, always
// rounded down to a segment start.
func (s *session) startPosition(sys postgres.SystemInfo, slot slotInfo) (wal.LSN, uint32, error) {
	o := s.r.opts
	nf, ok, err := findNewest(o.Layout.StreamingDir, s.segSize)
	if err != nil {
		return 0, 0, fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}
	if ok {
		n := nf.Name.Segment()
		if nf.Name.Kind == wal.KindSegment {
			n = n.Next(s.segSize)
		}
		return n.StartLSN(s.segSize), n.TLI, nil
	}
	down := func(l wal.LSN) wal.LSN { return wal.LSN(uint64(l) - uint64(l)%s.segSize) }
	if slot.RestartLSN != 0 {
		tli := slot.RestartTLI
		if tli == 0 {
			tli = sys.Timeline
		}
		return down(slot.RestartLSN), tli, nil
	}
	return down(sys.XLogPos), sys.Timeline, nil
}

// streamTimeline streams tli from start until the server ends the timeline
// (returned) or an error or cancellation.
func (s *session) streamTimeline(ctx context.Context, tli uint32, start wal.LSN) (*endOfTimeline, error) {
	o := s.r.opts
	if err := s.ensureHistory(ctx, tli); err != nil {
		return nil, err
	}
	eot, err := startReplication(ctx, s.pg, o.SlotName, start, tli)
	if err != nil {
		if e := slotInUse(err, o.SlotName); e != nil {
			return nil, fmt.Errorf("receive-wal server %s: %w", o.Server, e)
		}
		return nil, fmt.Errorf("receive-wal server %s: timeline %d from %s: %w", o.Server, tli, start, err)
	}
	if eot != nil {
		return eot, nil
	}
	s.received, s.flushed = start, start
	s.r.tr.update(func(p *Progress) {
		p.Streaming, p.Timeline = true, tli
		p.LastReceivedLSN, p.LastFlushLSN = start, start
	})
	// Tell the server where we are at once (a slot starts retaining WAL
	// from here).
	if err := s.status(false); err != nil {
		return nil, s.wrap(tli, err)
	}

	defer func() {
		if s.seg != nil {
			if err := s.seg.close(); err != nil {
				o.Logger.Warn("closing partial segment", "server", o.Server, "error", err)
			}
			s.seg = nil
		}
	}()
	// The wait for the next message is bounded by a read deadline on the
	// connection rather than a context per message: a deadline context
	// (timer, cancel registration) for each of thousands of messages a
	// second was a sixth of receive-wal's CPU. Cancelling ctx expires the
	// deadline at once; the loop then sees ctx.Err().
	nc := s.pg.Conn()
	stopWatch := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Now()) })
	defer stopWatch()
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	for {
		if err := ctx.Err(); err != nil {
			s.stop()
			return nil, err
		}
		if err := nc.SetReadDeadline(s.lastSent.Add(o.StatusInterval)); err != nil {
			return nil, s.wrap(tli, err)
		}
		if ctx.Err() != nil {
			continue // cancelled between the check and the deadline
		}
		msg, err := s.pg.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				s.stop()
				return nil, ctx.Err()
			}
			if pgconn.Timeout(err) {
				if err := s.flushAndReport(false); err != nil {
					return nil, s.wrap(tli, err)
				}
				continue
			}
			return nil, s.wrap(tli, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.handleCopyData(tli, m.Data); err != nil {
				return nil, s.wrap(tli, err)
			}
		case *pgproto3.CopyDone:
			// End of timeline: keep an incomplete segment as .partial, as
			// pg_receivewal does.
			if s.seg != nil {
				if err := s.seg.close(); err != nil {
					return nil, s.wrap(tli, err)
				}
				s.seg = nil
				s.markFlushed(s.received)
			}
			_ = nc.SetReadDeadline(time.Time{}) // finishCopy has its own context
			eot, err := finishCopy(ctx, s.pg)
			if err != nil {
				return nil, s.wrap(tli, err)
			}
			return eot, nil
		case *pgproto3.ErrorResponse:
			return nil, s.wrap(tli, pgconn.ErrorResponseToPgError(m))
		}
	}
}

func (s *session) wrap(tli uint32, err error) error {
	return fmt.Errorf("receive-wal server %s: timeline %d at %s: %w", s.r.opts.Server, tli, s.received, err)
}

// handleCopyData processes one XLogData or keepalive message.
func (s *session) handleCopyData(tli uint32, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		s.r.tr.update(func(p *Progress) { p.ServerLSN = wal.LSN(ka.ServerWALEnd) })
		if ka.ReplyRequested {
			return s.flushAndReport(false)
		}
		return nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse XLogData: %w", err)
		}
		if err := s.write(tli, wal.LSN(xld.WALStart), xld.WALData); err != nil {
			return err
		}
		s.r.tr.update(func(p *Progress) {
			p.LastReceivedLSN = s.received
			if l := wal.LSN(xld.ServerWALEnd); l > p.ServerLSN {
				p.ServerLSN = l
			}
		})
		if s.r.opts.Synchronous {
			return s.flushAndReport(false)
		}
		return nil
	}
	return nil
}

// write stores WAL starting at lsn, which must continue the stream exactly;
// it crosses segment boundaries as needed, completing full segments.
func (s *session) write(tli uint32, lsn wal.LSN, data []byte) error {
	if lsn != s.received {
		return fmt.Errorf("%w: got data at %s, expected %s", ErrStreamGap, lsn, s.received)
	}
	for len(data) > 0 {
		off := uint64(s.received) % s.segSize
		if s.seg == nil {
			name := wal.NameForLSN(tli, s.received, s.segSize)
			seg, err := openSegment(s.r.opts.Layout.StreamingDir, name, s.segSize)
			if err != nil {
				return err
			}
			s.seg = seg
			s.seg.written, s.seg.synced = off, off
		}
		n := min(uint64(len(data)), s.segSize-off)
		if err := s.seg.writeAt(data[:n], off); err != nil {
			return err
		}
		data = data[n:]
		s.received += wal.LSN(n)
		if off+n == s.segSize {
			if err := s.seg.complete(); err != nil {
				return err
			}
			s.r.opts.Logger.Debug("segment complete", "server", s.r.opts.Server, "segment", s.seg.name.String())
			s.seg = nil
			s.markFlushed(s.received)
			// Report completed segments at once: the slot can release WAL.
			if err := s.status(false); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushAndReport fsyncs the open partial and sends a status update.
func (s *session) flushAndReport(reply bool) error {
	if s.seg != nil {
		if err := s.seg.sync(); err != nil {
			return err
		}
		s.markFlushed(s.received)
	}
	return s.status(reply)
}

func (s *session) markFlushed(l wal.LSN) {
	if l <= s.flushed {
		return
	}
	s.flushed = l
	now := time.Now()
	s.r.tr.update(func(p *Progress) { p.LastFlushLSN, p.LastFlushTime = l, now })
}

func (s *session) status(reply bool) error {
	s.lastSent = time.Now()
	return sendStatus(s.pg, s.received, s.flushed, reply)
}

// stop runs on cancellation: fsync what was received and tell the server,
// best effort (the connection is about to close).
func (s *session) stop() {
	if s.seg != nil {
		if err := s.seg.close(); err != nil {
			s.r.opts.Logger.Warn("closing partial segment", "server", s.r.opts.Server, "error", err)
			return
		}
		s.seg = nil
		s.markFlushed(s.received)
	}
	_ = sendStatus(s.pg, s.received, s.flushed, false)
}

// ensureHistory stores <tli>.history in streaming/ when it is in neither
// streaming/ nor wals/ (archive-wal moves it there), as pg_receivewal does
// at the start of every timeline. Timeline 1 has none.
func (s *session) ensureHistory(ctx context.Context, tli uint32) error {
	if tli <= 1 {
		return nil
	}
	o := s.r.opts
	name := wal.HistoryFileName(tli)
	for _, dir := range []string{o.Layout.StreamingDir, o.Layout.WalsDir} {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil
		}
	}
	fname, content, err := s.conn.TimelineHistory(ctx, tli)
	if err != nil {
		return fmt.Errorf("receive-wal server %s: %w", o.Server, err)
	}
	if fname != name {
		return fmt.Errorf("receive-wal server %s: TIMELINE_HISTORY %d returned file %q, want %q", o.Server, tli, fname, name)
	}
	p := filepath.Join(o.Layout.StreamingDir, name)
	if err := writeTmpRename(p, content); err != nil {
		return fmt.Errorf("receive-wal server %s: write %s: %w", o.Server, p, err)
	}
	o.Logger.Info("stored timeline history", "server", o.Server, "file", name)
	return nil
}
