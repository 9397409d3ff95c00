package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/jobs"
)

type cronOptions struct {
	keepDescriptors bool
}

// newCronCommand is Barman's `cron`: one pass of the daemon's work for
// users who keep an every-minute crontab entry.
func newCronCommand(g *globalOptions) *cobra.Command {
	var opts cronOptions
	c := &cobra.Command{
		Use:   "cron",
		Short: "Run one pass of maintenance for every active server (archive-wal, finishing interrupted deletions, check-backup, retention, passive sync)",
		Long: "Per active server, under its .<server>-cron.lock (a server whose previous cron still runs is skipped):\n" +
			"archive-wal, finishing interrupted deletions, check-backup of WAITING_FOR_WALS backups and retention; passive servers are synchronised.\n" +
			"cron does not start receive-wal or scheduled backups: streaming needs `cellar daemon`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCron(cmd.Context(), g, opts, args)
		},
	}
	// Accepted for crontab compatibility with Barman; cron spawns no
	// processes, so there are no descriptors to keep.
	c.Flags().BoolVar(&opts.keepDescriptors, "keep-descriptors", false, "accepted for Barman compatibility (no effect)")
	return c
}

func runCron(ctx context.Context, g *globalOptions, _ cronOptions, _ []string) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		g.logger.Warn(w)
	}
	tasks, err := newTasks(g)
	if err != nil {
		return err
	}
	return jobs.Cron(ctx, cfg, tasks, g.logger)
}
