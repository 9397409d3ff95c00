package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/internal/walclient"
	"github.com/cellar-backup/cellar/wal"
)

type walRestoreOptions struct {
	remote                 remoteFlags
	test, partial, keep    bool
	gzip, bzip2, zstd, lz4 bool
	parallel               int
	sleep                  int
	spoolDir               string
}

// newWALRestoreCommand is PostgreSQL's restore_command client:
//
//	restore_command = 'cellar -c /etc/cellar/config.yaml wal-restore pg %f %p'
//	restore_command = 'cellar wal-restore --host backup -U cellar -p 4 pg %f %p'
//
// It writes DEST_PATH through a temp file and a rename, so PostgreSQL
// never reads half a segment, and prints nothing on stdout. Exit codes as
// barman-wal-restore: 1 not found (PostgreSQL's end of archive), 2 the
// archive or the backup host could not be reached, 3 bad WAL name or
// DEST_PATH is a directory.
func newWALRestoreCommand(g *globalOptions) *cobra.Command {
	var o walRestoreOptions
	c := &cobra.Command{
		Use:   "wal-restore [--host HOST [-U USER] [--port PORT]] [-p N] SERVER WAL_NAME DEST_PATH",
		Short: "Fetch one WAL file from the catalog, locally or over ssh (PostgreSQL restore_command)",
		Args:  cobra.RangeArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 3 && !o.test {
				return usageError("wal-restore: need SERVER WAL_NAME DEST_PATH")
			}
			if o.parallel < 0 || o.sleep < 0 {
				return usageError("wal-restore: --parallel and --sleep must not be negative")
			}
			args = append(args, "", "")
			return runWALRestore(cmd.Context(), g, o, args[0], args[1], args[2])
		},
	}
	f := c.Flags()
	o.remote.register(f)
	f.BoolVarP(&o.test, "test", "t", false, "only check that the catalog (or the remote get-wal) answers")
	f.BoolVarP(&o.partial, "partial", "P", false, "also accept <WAL>.partial (the last segment of a timeline)")
	f.BoolVarP(&o.gzip, "gzip", "z", false, "remote mode: transfer gzip-compressed")
	f.BoolVarP(&o.bzip2, "bzip2", "j", false, "remote mode: transfer bzip2-compressed (only a Barman server can send it)")
	f.BoolVar(&o.zstd, "zstd", false, "remote mode: transfer zstd-compressed")
	f.BoolVar(&o.lz4, "lz4", false, "remote mode: transfer lz4-compressed")
	f.BoolVar(&o.keep, "keep-compression", false, "remote mode: transfer the stored bytes as they are")
	f.IntVarP(&o.parallel, "parallel", "p", 0, "prefetch the next N-1 segments in parallel into the spool directory")
	f.IntVarP(&o.sleep, "sleep", "s", 0, "seconds to sleep after a failure, before exiting")
	f.StringVar(&o.spoolDir, "spool-dir", walclient.DefaultSpoolDir, "prefetch spool directory")
	return c
}

// walSource is where wal-restore fetches from: the local catalog or a
// remote get-wal. Errors carry the exit code (withCode).
type walSource interface {
	fetch(ctx context.Context, name string, w io.Writer) error
	peek(ctx context.Context, name string, n int) ([]string, error)
}

func runWALRestore(ctx context.Context, g *globalOptions, o walRestoreOptions, srv, walName, dest string) (err error) {
	comp, err := wireCompression(o.gzip, o.bzip2, o.zstd, o.lz4)
	if err != nil {
		return err
	}
	if o.test {
		if o.remote.host != "" {
			code, err := sshRun(ctx, o.remote.remote(g), nil, g.out, "get-wal", "--test", srv, "000000010000000000000001")
			return restoreSSHError(code, err)
		}
		s, err := g.server(srv)
		if err != nil {
			return err
		}
		if _, err := os.ReadDir(s.Layout().WalsDir); err != nil {
			return withCode(walclient.RestoreSSHFailed, fmt.Errorf("server %s: %w", srv, err))
		}
		fmt.Fprintf(g.out, "Ready to retrieve WAL files from the server %s\n", srv)
		return nil
	}

	defer func() {
		// barman-wal-restore's -s: slow down a standby's retry loop.
		if err != nil && o.sleep > 0 && exitCode(err) != exitUsage {
			t := time.NewTimer(time.Duration(o.sleep) * time.Second)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}()
	if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
		return withCode(walclient.RestoreBadInput, fmt.Errorf("wal-restore: destination %s is a directory", dest))
	}
	if _, err := wal.ParseName(walName); err != nil {
		return withCode(walclient.RestoreBadInput, fmt.Errorf("wal-restore: %w", err))
	}
	spool := walclient.Spool{Dir: o.spoolDir}
	if taken, err := spool.Take(walName, dest); err != nil {
		// A broken spool must not stop recovery: fetch it again.
		g.logger.Warn("wal-restore: spool unusable, fetching directly", "wal", walName, "err", err)
	} else if taken {
		return nil
	}

	var src walSource
	if o.remote.host != "" {
		if comp == archive.CompressionBzip2 && o.remote.program == "cellar" {
			return usageError("wal-restore: a Cellar server cannot send bzip2: use -z/--gzip, --zstd or --lz4")
		}
		src = &remoteWALSource{rem: o.remote.remote(g), srv: srv, partial: o.partial, keep: o.keep, comp: comp}
	} else {
		s, err := g.server(srv)
		if err != nil {
			return err
		}
		src = &localWALSource{opts: s.ArchiveOptions(nil), partial: o.partial}
	}

	var prefetched chan error
	if o.parallel > 1 {
		names, perr := src.peek(ctx, walName, o.parallel)
		switch {
		case perr != nil:
			g.logger.Debug("wal-restore: peek failed, no prefetch", "wal", walName, "err", perr)
		case len(names) > 1 && names[0] == walName:
			prefetched = make(chan error, 1)
			go func() {
				prefetched <- spool.Fill(ctx, names[1:], len(names)-1, src.fetch)
			}()
		}
	}
	// Temp file and rename but no fsync: PostgreSQL fsyncs the segments
	// it keeps and fetches again after a crash (WriteRestored).
	_, err = walclient.WriteRestored(ctx, dest, func(w io.Writer) error { return src.fetch(ctx, walName, w) })
	if prefetched != nil {
		if perr := <-prefetched; perr != nil {
			g.logger.Warn("wal-restore: prefetch incomplete (segments will be fetched on request)", "err", oneLine(perr))
		}
	}
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) {
			// A local failure (temp file, rename) is "could not restore",
			// not "not found".
			return withCode(walclient.RestoreSSHFailed, fmt.Errorf("wal-restore %s: %w", walName, err))
		}
		return err
	}
	return nil
}

// localWALSource reads the catalog directly (same host).
type localWALSource struct {
	opts    archive.Options
	partial bool
}

func (l *localWALSource) fetch(ctx context.Context, name string, w io.Writer) error {
	err := archive.GetWAL(ctx, l.opts, name, w, archive.GetOptions{Partial: l.partial})
	var ne *wal.NameError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ne):
		return withCode(walclient.RestoreBadInput, err)
	case errors.Is(err, archive.ErrWALNotFound):
		return withCode(walclient.RestoreNotFound, err)
	}
	return withCode(walclient.RestoreSSHFailed, err)
}

func (l *localWALSource) peek(_ context.Context, name string, n int) ([]string, error) {
	return archive.Peek(l.opts, name, n)
}

// remoteWALSource runs get-wal on the backup host over ssh.
type remoteWALSource struct {
	rem     walclient.Remote
	srv     string
	partial bool
	keep    bool
	comp    string
}

func (r *remoteWALSource) fetch(ctx context.Context, name string, w io.Writer) error {
	args := []string{"get-wal"}
	switch r.comp {
	case archive.CompressionGzip:
		args = append(args, "--gzip")
	case archive.CompressionBzip2:
		args = append(args, "--bzip2")
	case archive.CompressionZstd:
		args = append(args, "--zstd")
	case archive.CompressionLZ4:
		args = append(args, "--lz4")
	}
	if r.keep {
		args = append(args, "--keep-compression")
	}
	if r.partial {
		args = append(args, "--partial")
	}
	args = append(args, r.srv, name)

	// The payload may be compressed (wire compression, or the stored
	// bytes with --keep-compression): decompress by magic bytes, as the
	// segment must reach PostgreSQL plain.
	pr, pw := io.Pipe()
	derr := make(chan error, 1)
	go func() {
		plain, _, err := archive.SniffDecompressor(pr)
		if err == nil {
			_, err = io.Copy(w, plain)
			plain.Close()
		}
		if err == nil {
			// Drain: the sender's trailing bytes must not block ssh.
			_, err = io.Copy(io.Discard, pr)
		}
		pr.CloseWithError(err)
		derr <- err
	}()
	code, err := sshRun(ctx, r.rem, nil, pw, args...)
	pw.Close()
	dErr := <-derr
	if err != nil {
		return restoreSSHError(code, err)
	}
	if dErr != nil {
		return withCode(walclient.RestoreSSHFailed, fmt.Errorf("wal-restore: %s from %s: %w", name, r.rem.Host, dErr))
	}
	return nil
}

func (r *remoteWALSource) peek(ctx context.Context, name string, n int) ([]string, error) {
	var out bytes.Buffer
	if _, err := sshRun(ctx, r.rem, nil, &limitedBuffer{b: &out, max: 64 << 10}, "get-wal", "--peek", strconv.Itoa(n), r.srv, name); err != nil {
		return nil, err
	}
	var names []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if !wal.IsAnyWALName(line) {
			return nil, fmt.Errorf("get-wal --peek on %s: unexpected line %q", r.rem.Host, line)
		}
		names = append(names, line)
	}
	return names, nil
}

// restoreSSHError maps sshRun's outcome to barman-wal-restore's exit codes.
func restoreSSHError(code int, err error) error {
	switch {
	case err == nil:
		return nil
	case code < 0:
		return withCode(walclient.RestoreSSHFailed, fmt.Errorf("wal-restore: %w", err))
	}
	return withCode(walclient.RestoreExitCode(code), fmt.Errorf("wal-restore: %w", err))
}
