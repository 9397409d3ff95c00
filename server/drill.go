package server

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/drill"
	"github.com/cellar-backup/cellar/recovery"
)

// DrillOptions are the choices of one drill; empty fields take the
// server's restore_drill_* configuration.
type DrillOptions struct {
	Target      recovery.Target
	ScratchRoot string
	ChecksDir   string
	BinDir      string
	Parallel    int
	Progress    io.Writer
}

// Drill restores b into a scratch directory, replays the archived WAL,
// starts and checks a private PostgreSQL on it, removes it all and
// records the outcome (see drill.Run). It holds only the server's drill
// lock and the backup's shared lock, so archiving, streaming and backups
// go on meanwhile.
func (s *Server) Drill(ctx context.Context, b *catalog.BackupInfo, o DrillOptions) (*drill.Record, error) {
	opts := drill.Options{
		Layout: s.layout, Backup: b, Target: o.Target,
		ScratchRoot: firstNonEmpty(o.ScratchRoot, s.cfg.RestoreDrillDirectory, os.TempDir()),
		ChecksDir:   firstNonEmpty(o.ChecksDir, s.cfg.RestoreDrillChecksDirectory),
		Parallel:    o.Parallel, Keep: s.cfg.RestoreDrillKeep,
		Logger: s.log, Progress: o.Progress, Now: s.now,
	}
	if tpl := firstNonEmpty(o.BinDir, s.cfg.RestoreDrillBinDirectory); tpl != "" {
		major := int(b.Version / 10000)
		opts.BinDirs = map[int]string{major: strings.ReplaceAll(tpl, "{major}", strconv.Itoa(major))}
	}
	return drill.Run(ctx, opts)
}

// Drills returns the server's drill records, oldest first.
func (s *Server) Drills() ([]*drill.Record, error) { return drill.List(s.layout) }

// LoadDrill returns one drill record by id or "latest".
func (s *Server) LoadDrill(id string) (*drill.Record, error) { return drill.Load(s.layout, id) }

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
