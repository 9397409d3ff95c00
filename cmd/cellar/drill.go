package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/drill"
	"github.com/cellar-backup/cellar/recovery"
	"github.com/cellar-backup/cellar/server"
)

type drillFlags struct {
	recoverOptions
	list                    bool
	scratch, checks, binDir string
}

// newDrillCommand runs a restore drill, or lists the recorded ones.
func newDrillCommand(g *globalOptions) *cobra.Command {
	var o drillFlags
	c := &cobra.Command{
		Use:   "drill SERVER [BACKUP_ID|latest]",
		Short: "Prove a backup restores: restore it into scratch space, replay WAL, start PostgreSQL, check, clean up",
		Long: "Restores the backup (default latest) into restore_drill_directory, replays the archived WAL up to\n" +
			"the newest archived segment (or the given target), starts a private PostgreSQL of the backup's\n" +
			"major version on it (Unix socket only, archiving off), checks the system identifier, the timeline,\n" +
			"the recovered point and the SQL checks of restore_drill_checks_directory, then stops it and removes\n" +
			"everything. The outcome is recorded in <backup_directory>/drills/.\n\n" +
			"Exit codes: 0 drill OK; 1 drill FAILED or could not run; 2 usage.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.list {
				if len(args) != 1 {
					return usageError("drill --list takes only SERVER")
				}
				return runDrillList(g, args[0])
			}
			return runDrill(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.list, "list", false, "list the recorded drills of SERVER")
	f.StringVar(&o.scratch, "scratch-directory", "", "where the test restore goes (default restore_drill_directory, else the system temp dir)")
	f.StringVar(&o.checks, "checks-directory", "", "directory of NAME.sql + NAME.expected checks (default restore_drill_checks_directory)")
	f.StringVar(&o.binDir, "pg-bin-directory", "", "PostgreSQL server binaries ({major} is replaced; default restore_drill_bin_directory or found automatically)")
	f.StringVar(&o.targetTime, "target-time", "", "stop at this time")
	f.StringVar(&o.targetXID, "target-xid", "", "stop after this transaction id")
	f.StringVar(&o.targetLSN, "target-lsn", "", "stop at this WAL location (X/X)")
	f.StringVar(&o.targetName, "target-name", "", "stop at this restore point")
	f.BoolVar(&o.targetImmediate, "target-immediate", false, "stop as soon as the backup is consistent")
	f.StringVar(&o.targetTLI, "target-tli", "", "timeline to follow: a number, current or latest (default latest)")
	f.BoolVar(&o.exclusive, "exclusive", false, "stop just before the target (time, xid, lsn)")
	f.IntVarP(&o.parallel, "jobs", "j", 2, "files copied or decompressed in parallel")
	return c
}

func newShowDrillCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show-drill SERVER [DRILL_ID|latest]",
		Short: "Show one recorded restore drill (default the latest)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(_ *cobra.Command, args []string) error {
			id := "latest"
			if len(args) == 2 {
				id = args[1]
			}
			if id != "latest" && !drill.ValidID(id) {
				return withCode(exitBadInput, fmt.Errorf("drill id %q: not a drill id (they look like 20260102T030405.000000Z, see drill --list)", id))
			}
			s, err := g.server(args[0])
			if err != nil {
				return err
			}
			rec, err := s.LoadDrill(id)
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(g.out, rec)
			}
			printDrill(g.out, rec)
			return nil
		},
	}
}

func runDrill(ctx context.Context, g *globalOptions, o drillFlags, args []string) error {
	target, err := parseRecoverTarget(o.recoverOptions)
	if err != nil {
		return err
	}
	ref := "latest"
	if len(args) == 2 {
		ref = args[1]
	}
	s, b, err := g.serverBackup(args[0], ref)
	if err != nil {
		return err
	}
	do := server.DrillOptions{Target: target, ScratchRoot: o.scratch, ChecksDir: o.checks, BinDir: o.binDir, Parallel: o.parallel}
	if !g.json() && !g.quiet {
		do.Progress = g.out
	}
	rec, err := s.Drill(ctx, b, do)
	if rec == nil {
		if errors.Is(err, recovery.ErrConflictingTargets) || errors.Is(err, recovery.ErrInvalidOptions) {
			return withCode(exitUsage, err)
		}
		return err
	}
	if g.json() {
		if jerr := writeJSON(g.out, rec); jerr != nil {
			return jerr
		}
	} else {
		printDrill(g.out, rec)
	}
	if err != nil {
		return fmt.Errorf("server %s: drill of backup %s FAILED: %w", rec.Server, rec.BackupID, err)
	}
	return nil
}

func runDrillList(g *globalOptions, srv string) error {
	s, err := g.server(srv)
	if err != nil {
		return err
	}
	recs, err := s.Drills()
	if err != nil {
		return err
	}
	if g.json() {
		if recs == nil {
			recs = []*drill.Record{}
		}
		return writeJSON(g.out, recs)
	}
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DRILL\tBACKUP\tRESULT\tRTO\tRECOVERED LSN\tRECOVERED TIME")
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.BackupID, r.Result,
			r.RTO().Round(time.Millisecond), dash(r.RecoveredLSN), recoveredTime(r))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func recoveredTime(r *drill.Record) string {
	if r.RecoveredTime == nil {
		return "-"
	}
	return r.RecoveredTime.Format(time.RFC3339)
}

// printDrill is the console form of one record.
func printDrill(w io.Writer, r *drill.Record) {
	fmt.Fprintf(w, "Drill %s of server %s\n", r.ID, r.Server)
	fmt.Fprintf(w, "  Backup          : %s\n", r.BackupID)
	if r.Target != "" {
		fmt.Fprintf(w, "  Target          : %s\n", r.Target)
	}
	fmt.Fprintf(w, "  Result          : %s\n", r.Result)
	if r.Error != "" {
		fmt.Fprintf(w, "  Error           : %s\n", strings.ReplaceAll(r.Error, "\n", "\n                    "))
	}
	fmt.Fprintf(w, "  Started         : %s\n", r.Start.Format(time.RFC3339))
	fmt.Fprintf(w, "  Duration        : %s (RTO %s)\n", r.Duration().Round(time.Millisecond), r.RTO().Round(time.Millisecond))
	for _, p := range r.Phases {
		fmt.Fprintf(w, "    %-14s: %s\n", p.Name, time.Duration(p.Seconds*float64(time.Second)).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "  System id       : %s (timeline %d)\n", dash(r.SystemID), r.Timeline)
	fmt.Fprintf(w, "  Recovered to    : %s at %s\n", dash(r.RecoveredLSN), recoveredTime(r))
	if r.ExpectedWAL != "" {
		fmt.Fprintf(w, "  Archive promised: %s (%s)\n", r.ExpectedWAL, r.ExpectedLSN)
	}
	for _, c := range r.Checks {
		status := "OK"
		if !c.OK {
			status = "FAILED"
		}
		fmt.Fprintf(w, "  Check %-10s: %s (got %q, expected %q)\n", c.Name, status, c.Got, c.Expected)
	}
}
