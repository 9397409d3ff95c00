package checks

import (
	"context"
	"fmt"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
)

// catalogLayout rebuilds the catalog layout of a target from its
// directories, to ask the catalog which format it is in.
func catalogLayout(t Target) catalog.Layout {
	d := t.Directories()
	l := catalog.NewLayout(t.Name(), d.Backup, "")
	l.BaseDir, l.WalsDir, l.MetaDir = d.Base, d.Wals, d.Meta
	l.IncomingDir, l.StreamingDir, l.ErrorsDir = d.Incoming, d.Streaming, d.Errors
	l.DefaultFormat = d.DefaultFormat
	return l
}

// probeCatalogFormat reports which Barman's catalog format the server's
// catalog is in, and so which Barman can still read it: Cellar keeps
// writing the format it finds. A new catalog gets barman_compatibility's.
// It fails when the WAL compression makes files that Barman cannot read;
// not critical, so that it never stops a backup.
func probeCatalogFormat() Probe {
	return Probe{
		Name: "catalog format", Key: "catalog_format", Group: "directories", Critical: false,
		Run: func(_ context.Context, t Target) Result {
			l := catalogLayout(t)
			f, found, err := catalog.DetectFormat(l)
			if err != nil {
				return Fail(oneLine(err.Error()))
			}
			if f == catalog.FormatBarman34 || (!found && l.DefaultFormat == catalog.FormatBarman34) {
				if c := t.Config().Compression; c == config.CompressionLZ4 || c == config.CompressionZstd {
					return Fail(fmt.Sprintf("compression %s: Barman 3.4 cannot read such WAL files; use gzip or bzip2 with this catalog", c))
				}
			}
			if !found {
				return Pass(fmt.Sprintf("new catalog, will be written for Barman %s (barman_compatibility)", l.DefaultFormat))
			}
			return Pass(fmt.Sprintf("Barman %s (%s)", f, formatShape(f)))
		},
	}
}

func formatShape(f catalog.Format) string {
	if f == catalog.FormatBarman34 {
		return "base/<id>/backup.info, wals/xlog.db"
	}
	return "meta/<id>-backup.info, wals/<server>-xlog.db"
}

// neededDirs lists the directories the catalog's format uses: a Barman
// 3.4 catalog has no meta/, so it is not even reported as missing.
func neededDirs(t Target) []string {
	all := t.Directories().All()
	f, err := catalogLayout(t).Format()
	if err != nil || f != catalog.FormatBarman34 {
		return all
	}
	out := all[:0:0]
	for _, d := range all {
		if d != t.Directories().Meta {
			out = append(out, d)
		}
	}
	return out
}
