package main

import (
	"context"

	"github.com/cellar-backup/cellar/jobs"
	"github.com/cellar-backup/cellar/server"
)

// syncPassive runs one passive-node sync pass for s.
func syncPassive(ctx context.Context, g *globalOptions, s *server.Server) error {
	_, _, _ = ctx, g, s
	return jobs.ErrNotApplicable
}
