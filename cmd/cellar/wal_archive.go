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

// errReaderGone is how the tar writer learns that its reader (ssh or
// put-wal) stopped; the reader's own error is then the one to report.
var errReaderGone = errors.New("receiver stopped reading")

type walArchiveOptions struct {
	remote                 remoteFlags
	test, md5              bool
	gzip, bzip2, zstd, lz4 bool
}

// newWALArchiveCommand is PostgreSQL's archive_command client:
//
//	archive_command = 'cellar -c /etc/cellar/config.yaml wal-archive pg %p'
//	archive_command = 'cellar wal-archive --host backup -U cellar pg %p'
//
// Locally it stores the file into the server's incoming/ exactly as
// put-wal does (checksummed, durable, duplicates kept aside); with --host
// it streams the same tar to `cellar put-wal` over ssh. Any failure exits
// non-zero with one line on stderr, so PostgreSQL keeps the segment and
// retries. Exit codes as barman-wal-archive: 2 bad WAL_PATH or ssh cannot
// start, 3 ssh failed, else put-wal's status (1).
func newWALArchiveCommand(g *globalOptions) *cobra.Command {
	var o walArchiveOptions
	c := &cobra.Command{
		Use:   "wal-archive [--host HOST [-U USER] [--port PORT]] SERVER WAL_PATH",
		Short: "Archive one WAL file into the catalog, locally or over ssh (PostgreSQL archive_command)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && !o.test {
				return usageError("wal-archive: missing WAL_PATH")
			}
			path := ""
			if len(args) == 2 {
				path = args[1]
			}
			return runWALArchive(cmd.Context(), g, o, args[0], path)
		},
	}
	f := c.Flags()
	o.remote.register(f)
	f.BoolVarP(&o.test, "test", "t", false, "only check that the catalog (or the remote put-wal) accepts WAL files")
	f.BoolVar(&o.md5, "md5", false, "send an MD5SUMS member instead of SHA256SUMS (for old receivers)")
	f.BoolVarP(&o.gzip, "gzip", "z", false, "compress with gzip before storing or sending")
	f.BoolVarP(&o.bzip2, "bzip2", "j", false, "bzip2 (refused: Cellar cannot write bzip2)")
	f.BoolVar(&o.zstd, "zstd", false, "compress with zstd before storing or sending")
	f.BoolVar(&o.lz4, "lz4", false, "compress with lz4 before storing or sending")
	return c
}

func runWALArchive(ctx context.Context, g *globalOptions, o walArchiveOptions, srv, path string) error {
	comp, err := wireCompression(o.gzip, o.bzip2, o.zstd, o.lz4)
	if err != nil {
		return err
	}
	if comp == archive.CompressionBzip2 {
		return usageError("wal-archive: bzip2 is read-only in Cellar: use -z/--gzip, --zstd or --lz4")
	}
	if o.test {
		if o.remote.host != "" {
			code, err := sshRun(ctx, o.remote.remote(g), nil, g.out, "put-wal", "--test", srv)
			return archiveSSHError(code, err)
		}
		s, err := g.server(srv)
		if err != nil {
			return err
		}
		if err := ensureIncoming(s); err != nil {
			return err
		}
		fmt.Fprintf(g.out, "Ready to accept WAL files for the server %s\n", srv)
		return nil
	}

	name := filepath.Base(path)
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return withCode(walclient.ArchiveBadInput, fmt.Errorf("wal-archive: %w", err))
	case fi.IsDir():
		return withCode(walclient.ArchiveBadInput, fmt.Errorf("wal-archive: %s is a directory", path))
	case !wal.IsAnyWALName(name):
		return withCode(walclient.ArchiveBadInput, fmt.Errorf("wal-archive: %s is not named like a WAL file", path))
	}
	// Refuse a bad segment here, before anything is sent: PostgreSQL then
	// keeps it and reports the failure, instead of recycling the only
	// copy of a file the archiver would move to errors/.
	if err := checkArchived(path, name); err != nil {
		return err
	}
	topts := archive.TarOptions{MD5: o.md5, Compression: comp}

	if o.remote.host != "" {
		// The tar is produced while ssh reads it; the writer's error (a
		// local read failure) is more useful than the remote's complaint
		// about a truncated stream, so it wins.
		pr, pw := io.Pipe()
		werr := make(chan error, 1)
		go func() {
			err := archive.WritePutWALTarWith(pw, name, path, topts)
			pw.CloseWithError(err)
			werr <- err
		}()
		code, err := sshRun(ctx, o.remote.remote(g), pr, g.out, "put-wal", srv)
		pr.CloseWithError(errReaderGone)
		if wErr := <-werr; wErr != nil && !errors.Is(wErr, errReaderGone) && err != nil {
			return withCode(exitFailure, fmt.Errorf("wal-archive %s: %w", name, wErr))
		}
		return archiveSSHError(code, err)
	}

	s, err := g.server(srv)
	if err != nil {
		return err
	}
	if err := ensureIncoming(s); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := archive.WritePutWALTarWith(pw, name, path, topts)
		pw.CloseWithError(err)
		werr <- err
	}()
	res, err := archive.PutWAL(ctx, s.ArchiveOptions(nil), pr)
	pr.CloseWithError(errReaderGone)
	wErr := <-werr
	if wErr != nil && !errors.Is(wErr, errReaderGone) && err != nil {
		return fmt.Errorf("wal-archive %s: %w", name, wErr)
	}
	if err != nil {
		return fmt.Errorf("wal-archive %s: server %s: %w", name, srv, err)
	}
	logPutResult(g, s, res)
	return nil
}

// checkArchived runs the strict archive_command checks on the file at
// path (archive.CheckWALFile; the server's identity is checked by put-wal,
// which knows it).
func checkArchived(path, name string) error {
	n, err := wal.ParseName(name)
	if err != nil {
		return withCode(walclient.ArchiveBadInput, fmt.Errorf("wal-archive: %w", err))
	}
	if err := archive.CheckWALFile(path, n, 0); err != nil {
		return withCode(exitFailure, fmt.Errorf("wal-archive: refusing %s: %w", path, err))
	}
	return nil
}

// archiveSSHError maps sshRun's outcome to barman-wal-archive's exit codes.
func archiveSSHError(code int, err error) error {
	switch {
	case err == nil:
		return nil
	case code < 0:
		return withCode(walclient.ArchiveBadInput, fmt.Errorf("wal-archive: %w", err))
	}
	return withCode(walclient.ArchiveExitCode(code), fmt.Errorf("wal-archive: %w", err))
}
