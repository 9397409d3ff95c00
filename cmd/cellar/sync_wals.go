package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/passive"
)

// newSyncWALsCommand is `cellar sync-wals SERVER` (passive node): copy the
// WAL files listed in primary.info that are not here yet.
func newSyncWALsCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "sync-wals SERVER",
		Short: "Copy new WAL files from the primary node (passive servers)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSyncWALs(cmd.Context(), g, args)
		},
	}
}

func runSyncWALs(ctx context.Context, g *globalOptions, args []string) error {
	s, err := g.server(args[0])
	if err != nil {
		return err
	}
	opts, err := passiveOptions(g, s)
	if err != nil {
		return err
	}
	res, err := passive.SyncWALs(ctx, opts)
	if err != nil {
		return err
	}
	if !g.quiet {
		if res.Skipped != "" {
			fmt.Fprintf(g.out, "Synchronisation of WAL files for server %s skipped: %s\n", s.Name(), res.Skipped)
		} else {
			fmt.Fprintf(g.out, "Synchronised %d WAL files for server %s (last: %s)\n", res.Copied, s.Name(), res.LastWAL)
		}
	}
	return nil
}
