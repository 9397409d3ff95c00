package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/internal/walclient"
	"github.com/cellar-backup/cellar/wal"
)

type getWALOptions struct {
	partial, keep, test    bool
	gzip, bzip2, zstd, lz4 bool
	outDir                 string
	peek                   int
}

// newGetWALCommand sends one WAL file from the archive (seed get_wal):
// the sending end of `cellar wal-restore --host` and barman-wal-restore.
// Exit codes: 0 sent, 1 not found, 3 bad name or unusable -o directory.
func newGetWALCommand(g *globalOptions) *cobra.Command {
	var o getWALOptions
	c := &cobra.Command{
		Use:   "get-wal SERVER WAL",
		Short: "Send a WAL file from the archive to stdout (or -o DIR)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && !o.test {
				return usageError("get-wal: missing WAL name")
			}
			walName := ""
			if len(args) == 2 {
				walName = args[1]
			}
			return runGetWAL(cmd.Context(), g, o, args[0], walName)
		},
	}
	f := c.Flags()
	f.BoolVarP(&o.partial, "partial", "P", false, "also look for <WAL>.partial")
	f.StringVarP(&o.outDir, "output-directory", "o", "", "write the file into this directory instead of stdout")
	f.BoolVarP(&o.gzip, "gzip", "z", false, "send gzip-compressed")
	f.BoolVarP(&o.bzip2, "bzip2", "j", false, "send bzip2-compressed (refused: Cellar cannot write bzip2)")
	f.BoolVar(&o.zstd, "zstd", false, "send zstd-compressed")
	f.BoolVar(&o.lz4, "lz4", false, "send lz4-compressed")
	f.BoolVar(&o.keep, "keep-compression", false, "send the stored bytes as they are")
	f.IntVarP(&o.peek, "peek", "p", 0, "list up to N consecutive archived WAL names from WAL instead of sending it")
	f.BoolVarP(&o.test, "test", "t", false, "only check that the server exists")
	return c
}

// wireCompression picks the one compression flag given.
func wireCompression(gzip, bzip2, zstd, lz4 bool) (string, error) {
	var picked []string
	for _, c := range []struct {
		on   bool
		name string
	}{{gzip, archive.CompressionGzip}, {bzip2, archive.CompressionBzip2}, {zstd, archive.CompressionZstd}, {lz4, archive.CompressionLZ4}} {
		if c.on {
			picked = append(picked, c.name)
		}
	}
	switch len(picked) {
	case 0:
		return archive.CompressionNone, nil
	case 1:
		return picked[0], nil
	}
	return "", usageError("choose one compression, not %v", picked)
}

func runGetWAL(ctx context.Context, g *globalOptions, o getWALOptions, srv, walName string) error {
	comp, err := wireCompression(o.gzip, o.bzip2, o.zstd, o.lz4)
	if err != nil {
		return err
	}
	if comp == archive.CompressionBzip2 {
		return usageError("get-wal: bzip2 is read-only in Cellar: use -z/--gzip, --zstd or --lz4")
	}
	s, err := g.server(srv)
	if err != nil {
		return err
	}
	if o.test {
		fmt.Fprintf(g.out, "Ready to retrieve WAL files from the server %s\n", srv)
		return nil
	}
	opts := s.ArchiveOptions(nil)
	if o.peek > 0 {
		names, err := archive.Peek(opts, walName, o.peek)
		if err != nil {
			return getWALError(err)
		}
		if len(names) == 0 {
			return getWALError(&archive.NotFoundError{WAL: walName, Server: srv})
		}
		for _, n := range names {
			fmt.Fprintln(g.out, n)
		}
		return nil
	}
	gopts := archive.GetOptions{Partial: o.partial, KeepCompression: o.keep, Compression: comp}
	if o.outDir == "" {
		return getWALError(archive.GetWAL(ctx, opts, walName, g.out, gopts))
	}
	if fi, err := os.Stat(o.outDir); err != nil || !fi.IsDir() {
		return withCode(exitBadInput, fmt.Errorf("get-wal: output directory %s is not a usable directory", o.outDir))
	}
	if _, err := wal.ParseName(walName); err != nil {
		return getWALError(err)
	}
	// No fsync: -o is barman-wal-restore's destination, a restore_command
	// %p that PostgreSQL fsyncs itself if it keeps it (WriteRestored).
	_, err = walclient.WriteRestored(ctx, filepath.Join(o.outDir, walName), func(w io.Writer) error {
		return archive.GetWAL(ctx, opts, walName, w, gopts)
	})
	return getWALError(err)
}

// getWALError maps get-wal failures to Barman's exit codes: 3 for a bad
// name, 1 for not found (and any other failure).
func getWALError(err error) error {
	var ne *wal.NameError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne):
		return withCode(exitBadInput, err)
	case errors.Is(err, archive.ErrWALNotFound):
		return withCode(exitFailure, err)
	}
	return err
}
