package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/server"
)

// newPutWALCommand is the receiving end of `cellar wal-archive --host` and
// of Barman's barman-wal-archive: a tar with the WAL file(s) and a
// SHA256SUMS or MD5SUMS member arrives on stdin (seed put_wal).
func newPutWALCommand(g *globalOptions) *cobra.Command {
	var test bool
	c := &cobra.Command{
		Use:   "put-wal SERVER",
		Short: "Receive WAL files as a tar stream on stdin and store them into incoming/",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPutWAL(cmd.Context(), g, cmd.InOrStdin(), args[0], test)
		},
	}
	c.Flags().BoolVarP(&test, "test", "t", false, "only check that the server exists and incoming/ is writable")
	return c
}

func runPutWAL(ctx context.Context, g *globalOptions, in io.Reader, name string, test bool) error {
	s, err := g.server(name)
	if err != nil {
		return err
	}
	if err := ensureIncoming(s); err != nil {
		return err
	}
	if test {
		fmt.Fprintf(g.out, "Ready to accept WAL files for the server %s\n", name)
		return nil
	}
	res, err := archive.PutWAL(ctx, s.ArchiveOptions(nil), in)
	if err != nil {
		return fmt.Errorf("server %s: %w", name, err)
	}
	logPutResult(g, s, res)
	return nil
}

// ensureIncoming creates the catalog directories when incoming/ is
// missing (first WAL of a new server) and checks that this user may write
// there, so a misconfigured owner fails with one clear line.
func ensureIncoming(s *server.Server) error {
	dir := s.Layout().IncomingDir
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := s.MakeDirectories(); err != nil {
			return fmt.Errorf("server %s: %w", s.Name(), err)
		}
	}
	f, err := os.CreateTemp(dir, ".cellar-write-test-*")
	if err != nil {
		return fmt.Errorf("server %s: incoming directory is not writable by this user: %w", s.Name(), err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("server %s: %w", s.Name(), err)
	}
	return nil
}

// logPutResult reports what put-wal did; a different copy of an existing
// file is not an error (Barman keeps it in errors/ and succeeds), but it
// must be visible in the logs.
func logPutResult(g *globalOptions, s *server.Server, res archive.PutResult) {
	for _, n := range res.Stored {
		g.logger.Debug("WAL file received", "server", s.Name(), "wal", n)
	}
	for _, n := range res.Skipped {
		g.logger.Info("WAL file already in incoming with the same content: kept", "server", s.Name(), "wal", n)
	}
	for _, n := range res.Duplicates {
		g.logger.Warn("WAL file already in incoming with different content: new copy moved to errors directory", "server", s.Name(), "file", n)
	}
}
