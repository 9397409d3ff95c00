// Package archive moves WAL files into a server's archive and back out:
// archive-wal (incoming/ and streaming/ to wals/<hash>/ plus xlog.db),
// put-wal (the receiving end of `cellar wal-archive` / barman-wal-archive),
// get-wal (the sending end of restore_command), wait-for-wal, and the
// compression codecs used for stored WAL.
//
// Losing a WAL segment silently is the one failure a backup tool may never
// have, so every step is ordered for crash safety: a file is stored and
// fsynced in wals/ (and its directory fsynced), then catalogued in
// xlog.db, and only then removed from its source. A crash anywhere leaves
// the segment in its source directory, possibly also in wals/; the next
// run finds the identical stored copy, makes sure xlog.db lists it and
// drops the source.
//
// The package takes its own Options (never config.*), built by server.
package archive

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/wal"
)

// Options describes one server's archive, as the archive operations need it.
type Options struct {
	// Server is the server name, used in messages, lock and xlog.db names.
	Server string
	// Layout locates the server's directories and lock files.
	Layout catalog.Layout
	// Compression is the `compression` option for newly stored WAL: "",
	// gzip, zstd or lz4. Files that arrive already compressed are stored as
	// they are.
	Compression string
	// CompressionLevel tunes the encoder (0 = Cellar's default, fast).
	CompressionLevel int
	// Parallel is how many files archive-wal compresses at once when
	// Compression is set (0 = runtime.GOMAXPROCS(0), 1 = one at a time).
	// Files are still stored and catalogued one by one in name order.
	Parallel int
	// SegmentSize is the server's wal_segment_size (0 = 16 MiB).
	SegmentSize uint64
	// SystemID is the server's system identifier; 0 means unknown and
	// skips that header check.
	SystemID uint64
	// ArchiverBatchSize and StreamingBatchSize cap how many files one
	// run takes from incoming/ and streaming/ (0 = all).
	ArchiverBatchSize  int
	StreamingBatchSize int
	// NoFileArchiver / NoStreamingArchiver skip incoming/ or streaming/
	// (Barman's `archiver = off` / `streaming_archiver = off`).
	NoFileArchiver      bool
	NoStreamingArchiver bool
	// SettleTime protects files that archive_command may still be writing
	// (a plain `cp` into incoming/ is not atomic): a file in incoming/
	// that fails size or header validation and was modified less than
	// SettleTime ago is left in place for the next run instead of being
	// moved to errors/. 0 selects DefaultSettleTime; negative disables.
	SettleTime time.Duration
	// Verbose prints each archiver's header even when it has nothing to do.
	Verbose bool
	// Out receives Barman-style progress lines (nil = discarded).
	Out io.Writer
	// Logger receives structured logs (nil = discarded).
	Logger *slog.Logger
	// Now is the clock (nil = time.Now), used for errors/ stamps.
	Now func() time.Time
	// Hooks are the pre/post archive scripts, run around each WAL file
	// archive-wal takes from incoming/ or streaming/ (not put-wal).
	Hooks hooks.Set
	// Ops makes archive-wal's mutations of the catalog (creating wals/
	// directories, linking or renaming a stored file into place, the
	// directory fsyncs, removing the source); nil means durable.OS().
	// Tests pass a faultfs to fail each one in turn.
	Ops durable.Ops
}

func (o *Options) ops() durable.Ops {
	if o.Ops != nil {
		return o.Ops
	}
	return durable.OS()
}

// DefaultSettleTime is the SettleTime used when Options.SettleTime is 0.
const DefaultSettleTime = 30 * time.Second

func (o *Options) check() error {
	if o.Server == "" {
		return errors.New("archive: server name is empty")
	}
	l := o.Layout
	for what, dir := range map[string]string{"wals": l.WalsDir, "incoming": l.IncomingDir, "streaming": l.StreamingDir, "errors": l.ErrorsDir, "lock": l.LockDir} {
		if dir == "" {
			// A zero Layout would make every path relative to the
			// working directory.
			return fmt.Errorf("server %s: archive: %s directory is not set", o.Server, what)
		}
	}
	if o.Parallel < 0 {
		return fmt.Errorf("server %s: archive: parallel %d is negative", o.Server, o.Parallel)
	}
	if err := ValidateCompression(o.Compression); err != nil {
		return fmt.Errorf("server %s: %w", o.Server, err)
	}
	if err := wal.ValidateSegmentSize(o.segSize()); err != nil {
		return fmt.Errorf("server %s: %w", o.Server, err)
	}
	return nil
}

func (o *Options) segSize() uint64 {
	if o.SegmentSize == 0 {
		return wal.DefaultSegmentSize
	}
	return o.SegmentSize
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger.With("server", o.Server)
	}
	return slog.New(slog.DiscardHandler)
}

func (o *Options) out() io.Writer {
	if o.Out != nil {
		return o.Out
	}
	return io.Discard
}

func (o *Options) settle() time.Duration {
	switch {
	case o.SettleTime == 0:
		return DefaultSettleTime
	case o.SettleTime < 0:
		return 0
	}
	return o.SettleTime
}
