package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/passive"
	"github.com/cellar-backup/cellar/server"
)

// passiveOptions maps a passive server's configuration to passive.Options.
// With forward_config_path the primary is asked to read the same
// configuration file path as this process (Barman's -c forwarding).
func passiveOptions(g *globalOptions, s *server.Server) (passive.Options, error) {
	cfg := s.Config()
	if !cfg.IsPassive() {
		return passive.Options{}, usageError("server %s is not passive: set primary_ssh_command", s.Name())
	}
	opts := s.PassiveOptions()
	if cfg.ForwardConfigPath && g.configFile != "" {
		opts.RemoteConfig = g.configFile
	}
	return opts, nil
}

// newSyncBackupCommand is `cellar sync-backup SERVER ID` (passive node).
func newSyncBackupCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "sync-backup SERVER BACKUP_ID",
		Short: "Copy one backup from the primary node (passive servers)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSyncBackup(cmd.Context(), g, args)
		},
	}
}

func runSyncBackup(ctx context.Context, g *globalOptions, args []string) error {
	s, err := g.server(args[0])
	if err != nil {
		return err
	}
	opts, err := passiveOptions(g, s)
	if err != nil {
		return err
	}
	return passive.SyncBackup(ctx, opts, args[1])
}
