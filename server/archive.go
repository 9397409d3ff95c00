package server

import (
	"context"
	"io"
	"strconv"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// SegmentSize is the server's wal_segment_size as the catalog knows it:
// the newest backup's xlog_segment_size, else 16 MiB. Cellar never needs a
// connection to know it, so archiving works while PostgreSQL is down.
func (s *Server) SegmentSize() uint64 {
	if s.cfgSegSize != 0 {
		return s.cfgSegSize
	}
	if b, err := s.cat.Last(catalog.AllStatuses()...); err == nil && b.XLogSegmentSize > 0 {
		return uint64(b.XLogSegmentSize)
	}
	return wal.DefaultSegmentSize
}

// SetSegmentSize overrides the segment size (tests and clusters initialised
// with --wal-segsize before their first backup).
func (s *Server) SetSegmentSize(n uint64) { s.cfgSegSize = n }

// systemIDNumber is identity.json's systemid as a number (0 = unknown).
func (s *Server) systemIDNumber() uint64 {
	id, err := s.ReadIdentity()
	if err != nil || id == nil {
		return 0
	}
	n, _ := strconv.ParseUint(id.SystemID, 10, 64)
	return n
}

// ArchiveOptions builds the archive package's options from the
// configuration. out receives Barman-style progress lines.
func (s *Server) ArchiveOptions(out io.Writer) archive.Options {
	c := s.cfg
	level := 0
	if n, ok := c.CompressionLevel.Number(); ok {
		level = n
	}
	comp := string(c.Compression)
	if comp == "none" {
		comp = ""
	}
	return archive.Options{
		Server:              s.name,
		Layout:              s.layout,
		Compression:         comp,
		CompressionLevel:    level,
		SegmentSize:         s.SegmentSize(),
		SystemID:            s.systemIDNumber(),
		ArchiverBatchSize:   c.ArchiverBatchSize,
		StreamingBatchSize:  c.StreamingArchiverBatchSize,
		NoFileArchiver:      !c.Archiver,
		NoStreamingArchiver: !c.StreamingArchiver,
		Out:                 out,
		Logger:              s.log,
		Now:                 s.Now,
		Hooks:               s.ArchiveHooks(),
	}
}

// ArchiveWAL moves WAL from incoming/ and streaming/ into the archive
// (seed archive_wal).
func (s *Server) ArchiveWAL(ctx context.Context, out io.Writer) (archive.Report, error) {
	if err := s.layout.MakeDirs(); err != nil {
		return archive.Report{}, err
	}
	a, err := archive.NewArchiver(s.ArchiveOptions(out))
	if err != nil {
		return archive.Report{}, err
	}
	return a.ArchiveWAL(ctx)
}
