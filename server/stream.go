package server

import (
	"fmt"

	"github.com/cellar-backup/cellar/archive/stream"
	"github.com/cellar-backup/cellar/config"
)

// StreamOptions maps the configuration to the receive-wal options. The
// WAL streaming conninfo is wal_streaming_conninfo, else
// streaming_conninfo, else conninfo (BARMAN-FACTS §5).
func (s *Server) StreamOptions() (stream.Options, error) {
	cfg := s.cfg
	ci := cfg.WALStreamingConninfo
	for _, alt := range []config.Conninfo{cfg.StreamingConninfo, cfg.Conninfo} {
		if !ci.IsSet() {
			ci = alt
		}
	}
	if !ci.IsSet() {
		return stream.Options{}, fmt.Errorf("server %s: %w", s.name, stream.ErrNoConninfo)
	}
	return stream.Options{
		Server:          s.name,
		Layout:          s.layout,
		ReplConninfo:    ci.Raw(),
		SlotName:        cfg.SlotName,
		CreateSlot:      cfg.CreateSlot == config.CreateSlotAuto,
		ApplicationName: cfg.StreamingArchiverName,
		Logger:          s.log,
	}, nil
}
