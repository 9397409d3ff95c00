package main

import (
	"context"

	"github.com/cellar-backup/cellar/passive"
	"github.com/cellar-backup/cellar/server"
)

// syncPassive runs one passive-node sync pass for s (seed sync_cron):
// primary info, new backups, obsolete local backups, new WAL.
func syncPassive(ctx context.Context, g *globalOptions, s *server.Server) error {
	opts, err := passiveOptions(g, s)
	if err != nil {
		return err
	}
	_, err = passive.SyncCron(ctx, opts)
	return err
}
