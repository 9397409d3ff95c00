package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	f.StringVar(&o.spoolDir, "spool-dir", "", "prefetch spool directory (default: one per server, system identifier and data directory under "+walclient.DefaultSpoolDir+")")
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
	src, err := restoreSource(g, o, srv, comp)
	if err != nil {
		return err
	}
	id := restoreIdentity(g, o, srv)
	walclient.SweepRestoreTemps(filepath.Dir(dest))
	spool := walclient.Spool{Dir: id.spoolDir}
	check := func(path string) error { return walclient.CheckRestoredFile(path, walName, id.sysID) }
	if taken, err := spool.Take(walName, dest, check); err != nil {
		// A broken or foreign spooled file must not stop recovery: fetch
		// the WAL again, and check that copy.
		g.logger.Warn("wal-restore: spooled file unusable, fetching directly", "server", srv, "wal", walName, "err", oneLine(err))
	} else if taken {
		return nil
	}
	prefetched := startPrefetch(ctx, g, o, src, spool, walName)
	_, err = walclient.WriteRestoredChecked(ctx, dest,
		func(w io.Writer) error { return src.fetch(ctx, walName, w) },
		func(f *os.File, size int64) error { return walclient.CheckRestored(f, size, walName, id.sysID) })
	if prefetched != nil {
		if perr := <-prefetched; perr != nil {
			g.logger.Warn("wal-restore: prefetch incomplete (segments will be fetched on request)", "err", oneLine(perr))
		}
	}
	return restoreResult(srv, walName, err)
}

// restoreSource is where the WAL comes from: the backup host over ssh, or
// the local catalog.
func restoreSource(g *globalOptions, o walRestoreOptions, srv, comp string) (walSource, error) {
	if o.remote.host != "" {
		if comp == archive.CompressionBzip2 && o.remote.program == "cellar" {
			return nil, usageError("wal-restore: a Cellar server cannot send bzip2: use -z/--gzip, --zstd or --lz4")
		}
		return &remoteWALSource{rem: o.remote.remote(g), srv: srv, partial: o.partial, keep: o.keep, comp: comp}, nil
	}
	s, err := g.server(srv)
	if err != nil {
		return nil, err
	}
	return &localWALSource{opts: s.ArchiveOptions(nil), partial: o.partial}, nil
}

// restoreTarget is what wal-restore knows about the cluster it restores.
type restoreTarget struct {
	sysID    uint64 // 0 = unknown: the header check skips the identifier
	spoolDir string
}

// restoreIdentity finds the system identifier being restored and the
// spool for this restore. PostgreSQL runs restore_command in the data
// directory, whose global/pg_control is the base backup's, so its
// identifier is the one every restored segment must carry. Run elsewhere
// (by hand), the local catalog's identity is used when it is known.
func restoreIdentity(g *globalOptions, o walRestoreOptions, srv string) restoreTarget {
	cwd, err := os.Getwd()
	if err != nil {
		cwd = "."
	}
	sysID, err := walclient.ControlSystemID(cwd)
	if err != nil && o.remote.host == "" {
		if s, serr := g.server(srv); serr == nil {
			sysID = s.ArchiveOptions(nil).SystemID
		}
	}
	t := restoreTarget{sysID: sysID, spoolDir: o.spoolDir}
	if t.spoolDir == "" {
		t.spoolDir = walclient.SpoolDirFor(walclient.DefaultSpoolDir, srv, sysID, cwd)
	}
	return t
}

// startPrefetch starts filling the spool with the segments after walName
// (-p N), returning the channel its result arrives on, or nil when there
// is nothing to prefetch.
func startPrefetch(ctx context.Context, g *globalOptions, o walRestoreOptions, src walSource, spool walclient.Spool, walName string) chan error {
	if o.parallel <= 1 {
		return nil
	}
	names, err := src.peek(ctx, walName, o.parallel)
	if err != nil {
		g.logger.Debug("wal-restore: peek failed, no prefetch", "wal", walName, "err", err)
		return nil
	}
	if len(names) <= 1 || names[0] != walName {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- spool.Fill(ctx, names[1:], len(names)-1, src.fetch) }()
	return done
}

// restoreResult maps a failed fetch to wal-restore's exit codes: a WAL
// that is not the restored cluster's must stop recovery (RestoreWrongWAL),
// a local failure (temp file, rename) is "could not restore", not "not
// found".
func restoreResult(srv, walName string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, walclient.ErrWrongWAL) {
		return withCode(walclient.RestoreWrongWAL, fmt.Errorf("wal-restore: server %s: %w", srv, err))
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		return withCode(walclient.RestoreSSHFailed, fmt.Errorf("wal-restore %s: %w", walName, err))
	}
	return err
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
