package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/backup"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/server"
)

type backupOptions struct {
	wait                bool
	waitTimeout         int // seconds, 0 = forever
	name                string
	immediateCheckpoint bool
	reuseBackup         string
	bwlimit             int
	incremental         bool
	parent              string
}

// newBackupCommand is `cellar backup SERVER|all`.
func newBackupCommand(g *globalOptions) *cobra.Command {
	var opts backupOptions
	c := &cobra.Command{
		Use:   "backup SERVER|all [SERVER...]",
		Short: "Take a base backup over the replication protocol",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), g, opts, args, cmd.Flags().Changed("immediate-checkpoint"), cmd.Flags().Changed("bwlimit"))
		},
	}
	f := c.Flags()
	f.BoolVarP(&opts.wait, "wait", "w", false, "wait for every WAL the backup needs to be archived")
	f.IntVar(&opts.waitTimeout, "wait-timeout", 0, "seconds to wait with --wait (0 = forever)")
	f.StringVar(&opts.name, "name", "", "friendly name for the backup")
	f.BoolVar(&opts.immediateCheckpoint, "immediate-checkpoint", false, "fast checkpoint at backup start (overrides immediate_checkpoint)")
	f.StringVar(&opts.reuseBackup, "reuse-backup", "", "off or link (overrides reuse_backup)")
	f.IntVar(&opts.bwlimit, "bwlimit", 0, "bandwidth limit in KB/s (overrides bandwidth_limit)")
	f.BoolVar(&opts.incremental, "incremental", false, "PostgreSQL 17+: back up only the blocks changed since --parent (needs summarize_wal = on)")
	f.StringVar(&opts.parent, "parent", "", "with --incremental: the parent backup (id, name or shortcut; default latest, the newest DONE backup)")
	return c
}

func runBackup(ctx context.Context, g *globalOptions, opts backupOptions, args []string, ckptSet, bwSet bool) error {
	names := args
	if len(args) == 1 && args[0] == "all" {
		names = nil
	}
	servers, err := g.servers(names)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range servers { // serially, as Barman does
		if err := backupOne(ctx, g, s, opts, ckptSet, bwSet); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func backupOne(ctx context.Context, g *globalOptions, s *server.Server, opts backupOptions, ckptSet, bwSet bool) error {
	bo, err := s.BackupOptions()
	if err != nil {
		return err
	}
	bo.Name = opts.name
	if opts.parent != "" && !opts.incremental {
		return errors.New("--parent needs --incremental")
	}
	bo.Incremental, bo.Parent = opts.incremental, opts.parent
	if ckptSet {
		bo.ImmediateCheckpoint = opts.immediateCheckpoint
	}
	if opts.reuseBackup != "" {
		bo.ReuseBackup = opts.reuseBackup
	}
	if bwSet {
		bo.MaxRateKBps = int64(opts.bwlimit)
	}
	if !g.json() {
		bo.Progress = g.errOut
		bo.ProgressTTY = isTerminal(g.errOut)
	}
	info, err := backup.Run(ctx, bo)
	if err != nil {
		return err
	}
	if !opts.wait {
		// Barman's post-backup step: a check that may already find the WAL.
		if info, err = backup.CheckBackup(ctx, s.Layout(), info.ID); err != nil {
			return err
		}
		if info.Status == catalog.StatusWaitingForWALs && !g.json() {
			fmt.Fprintf(g.out, "WARNING: IMPORTANT: this backup is classified as WAITING_FOR_WALS, meaning that Cellar has not received yet all the required WAL files for the backup consistency.\n"+
				"This is a common behaviour in concurrent backup scenarios, and Cellar automatically set the backup as DONE once all the required WAL files have been archived.\n"+
				"Hint: execute the backup command with '--wait'\n")
		}
	} else {
		poke := func(ctx context.Context) error {
			_, err := s.ArchiveWAL(ctx, io.Discard)
			return err
		}
		if info, err = backup.WaitForWALs(ctx, s.Layout(), info.ID, time.Duration(opts.waitTimeout)*time.Second, poke); err != nil {
			return err
		}
	}
	if g.json() {
		return writeJSON(g.out, map[string]any{"server": s.Name(), "backup_id": info.ID, "status": info.Status, "end_wal": info.EndWAL})
	}
	fmt.Fprintf(g.out, "Backup %s of server %s: %s\n", info.ID, s.Name(), info.Status)
	if info.Status == catalog.StatusFailed {
		return fmt.Errorf("server %s: backup %s FAILED: %s", s.Name(), info.ID, info.Error)
	}
	return nil
}

// isTerminal reports whether w is a character device (a TTY), without a
// terminal library.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
