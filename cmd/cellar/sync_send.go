package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/passive"
)

// newSyncBackupSendCommand is the hidden primary-side half of sync-backup:
// `cellar sync-backup-send SERVER ID [--resume]` writes the backup as a tar
// stream on stdout; with --resume it first reads the passive's list of
// files it already has (JSON) from stdin.
func newSyncBackupSendCommand(g *globalOptions) *cobra.Command {
	var resume bool
	cmd := &cobra.Command{
		Use:    "sync-backup-send SERVER BACKUP_ID",
		Short:  "Stream a backup to a passive node (internal)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSyncBackupSend(cmd.Context(), g, resume, args)
		},
	}
	cmd.Flags().BoolVar(&resume, "resume", false, "read the passive's existing files from stdin")
	return cmd
}

func runSyncBackupSend(ctx context.Context, g *globalOptions, resume bool, args []string) error {
	s, err := g.server(args[0])
	if err != nil {
		return err
	}
	var have []passive.FileState
	if resume {
		if have, err = passive.ReadHaveList(os.Stdin); err != nil {
			return err
		}
	}
	return passive.SendBackup(ctx, s.Layout(), args[1], have, g.out)
}

// newSyncWALsSendCommand is the hidden primary-side half of sync-wals:
// `cellar sync-wals-send SERVER` reads WAL names (one per line) on stdin and
// writes them as a tar stream on stdout.
func newSyncWALsSendCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:    "sync-wals-send SERVER",
		Short:  "Stream WAL files to a passive node (internal)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSyncWALsSend(cmd.Context(), g, args)
		},
	}
}

func runSyncWALsSend(ctx context.Context, g *globalOptions, args []string) error {
	s, err := g.server(args[0])
	if err != nil {
		return err
	}
	names, err := passive.ReadWALNames(os.Stdin)
	if err != nil {
		return err
	}
	return passive.SendWALs(ctx, s.Layout(), names, g.out)
}
