package main

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/passive"
)

// newSyncInfoCommand is `cellar sync-info SERVER [LAST_WAL [LAST_POSITION]]`:
// the primary's answer to a passive node (Barman's sync-info), as JSON.
func newSyncInfoCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "sync-info SERVER [LAST_WAL [LAST_POSITION]]",
		Short: "Print the synchronisation state a passive node pulls (JSON)",
		Args:  cobra.RangeArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSyncInfo(cmd.Context(), g, args)
		},
	}
}

func runSyncInfo(ctx context.Context, g *globalOptions, args []string) error {
	s, err := g.server(args[0])
	if err != nil {
		return err
	}
	lastWAL, pos := "", int64(0)
	if len(args) > 1 {
		lastWAL = args[1]
	}
	if len(args) > 2 {
		if pos, err = strconv.ParseInt(args[2], 10, 64); err != nil || pos < 0 {
			return usageError("invalid LAST_POSITION %q: want a byte offset", args[2])
		}
	}
	info, err := passive.SyncInfo(ctx, s.Layout(), lastWAL, pos)
	if err != nil {
		return err
	}
	cfg := s.Config()
	info.Version = version
	info.Config["compression"] = string(cfg.Compression)
	info.Config["backup_method"] = string(cfg.BackupMethod)
	info.Config["backup_compression"] = string(cfg.BackupCompression)
	info.Config["description"] = cfg.Description
	data, err := info.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = g.out.Write(append(data, '\n'))
	return err
}
