package main

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/alerts"
	"github.com/cellar-backup/cellar/archive/stream"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/checktarget"
	"github.com/cellar-backup/cellar/server"
)

type checkOptions struct {
	nagios       bool
	warning      []string
	critical     []string
	checkTimeout time.Duration
	fix          bool
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var o checkOptions
	c := &cobra.Command{
		Use:   "check SERVER|all [SERVER...]",
		Short: "Run every check of servers (console, JSON or Nagios plugin output)",
		Long: "Runs the registered probes (the same ones /metrics exports) against each server.\n" +
			"Unlike Barman, check has no side effects (it never archives or switches WAL) unless --fix is given.\n" +
			"Exit codes: 0 all OK, 1 a check failed (console/JSON); with --nagios 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd, g, o, args)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.nagios, "nagios", false, "Nagios/Icinga plugin output and exit codes")
	f.StringArrayVar(&o.warning, "warning", nil, "warning range for a perfdata label, LABEL=RANGE (e.g. backup_age=86400); repeatable")
	f.StringArrayVar(&o.critical, "critical", nil, "critical range for a perfdata label, LABEL=RANGE; repeatable")
	f.DurationVar(&o.checkTimeout, "check-timeout", 0, "override check_timeout for every server")
	f.BoolVar(&o.fix, "fix", false, "repair what can be repaired first: create missing catalog directories and the replication slot, put a Barman 3.4 catalog back in its format, archive pending WAL")
	return c
}

func runCheck(cmd *cobra.Command, g *globalOptions, o checkOptions, args []string) error {
	th, err := alerts.ParseThresholds(o.warning, o.critical)
	if err != nil {
		if o.nagios {
			// Plugin guidelines: bad arguments are UNKNOWN, not CRITICAL.
			g.out.Write([]byte("CELLAR UNKNOWN - " + oneLine(err) + "\n"))
			return withCode(3, err)
		}
		return withCode(exitUsage, err)
	}
	srvs, err := g.servers(args)
	if err != nil {
		if o.nagios {
			// A Nagios plugin that cannot even start reports UNKNOWN.
			g.out.Write([]byte("CELLAR UNKNOWN - " + oneLine(err) + "\n"))
			return withCode(3, nil)
		}
		return err
	}
	if o.fix {
		for _, s := range srvs {
			fixServer(cmd.Context(), g, s)
		}
	}
	reg := checks.Default().WithLogger(g.logger)
	results := make([][]checks.Result, len(srvs))
	var wg sync.WaitGroup
	for i, s := range srvs {
		if o.checkTimeout > 0 {
			s.Config().CheckTimeout = o.checkTimeout
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := checktarget.New(s)
			// The exporter's saved catalog caches, when there are any, spare
			// re-reading every backup.info and the whole xlog.db. check
			// itself saves nothing: it may run as another user.
			if err := t.LoadState(); err != nil {
				g.logger.Debug("probe state not used", "server", s.Name(), "err", err)
			}
			results[i] = reg.Run(cmd.Context(), t, checks.Full)
		}()
	}
	wg.Wait()
	var all []checks.Result
	for _, r := range results {
		all = append(all, r...)
	}
	var code int
	switch {
	case o.nagios:
		code = alerts.Nagios(g.out, all, th)
	case g.json():
		code, err = alerts.JSON(g.out, all)
		if err != nil {
			return err
		}
	default:
		code = alerts.Console(g.out, all)
	}
	if code != 0 {
		return withCode(code, nil)
	}
	return nil
}

// fixServer is check --fix: the repairs Barman's check does implicitly,
// made explicit. Failures are logged; the checks that follow report
// whatever is still wrong.
func fixServer(ctx context.Context, g *globalOptions, s *server.Server) {
	log := g.logger.With("server", s.Name())
	if err := s.MakeDirectories(); err != nil {
		log.Warn("check --fix: create directories", "err", err)
		return
	}
	if changed, err := catalog.RepairFormat(ctx, s.Layout()); err != nil {
		log.Warn("check --fix: repair catalog format", "err", err)
	} else if len(changed) > 0 {
		log.Info("check --fix: put back in the catalog's Barman format", "files", changed)
	}
	if s.Config().IsPassive() {
		return
	}
	if s.Config().StreamingArchiver && s.Config().SlotName != "" {
		if so, err := s.StreamOptions(); err == nil {
			if err := stream.CreateSlot(ctx, so, true); err != nil {
				log.Warn("check --fix: create replication slot", "slot", s.Config().SlotName, "err", err)
			}
		}
	}
	if _, err := s.ArchiveWAL(ctx, io.Discard); err != nil && !isBusy(err) {
		log.Warn("check --fix: archive-wal", "err", err)
	}
}
