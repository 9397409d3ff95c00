package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

func newSwitchWALCommand(g *globalOptions) *cobra.Command {
	var force, doArchive bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:     "switch-wal SERVER|all [SERVER...]",
		Aliases: []string{"switch-xlog"},
		Short:   "Force PostgreSQL to close the current WAL file (and optionally wait for it to be archived)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srvs, err := g.servers(args)
			if err != nil {
				return err
			}
			var errs []error
			for _, s := range srvs {
				if err := switchWAL(cmd.Context(), g, s, force, doArchive, timeout); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "run a CHECKPOINT first, so a switch happens even with no new writes")
	c.Flags().BoolVar(&doArchive, "archive", false, "wait until the closed WAL file is archived")
	c.Flags().DurationVar(&timeout, "archive-timeout", 30*time.Second, "how long --archive waits")
	return c
}

func switchWAL(ctx context.Context, g *globalOptions, s *server.Server, force, doArchive bool, timeout time.Duration) error {
	conn, err := s.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := conn.Status(ctx)
	if err != nil {
		return fmt.Errorf("server %s: %w", s.Name(), err)
	}
	if st.IsInRecovery {
		fmt.Fprintf(g.out, "No switch performed because server '%s' is a standby.\n", s.Name())
		return nil
	}
	if force {
		if err := conn.Checkpoint(ctx); err != nil {
			return fmt.Errorf("server %s: checkpoint before switch-wal: %w", s.Name(), err)
		}
	}
	closed, switched, err := conn.SwitchWAL(ctx)
	if err != nil {
		if errors.Is(err, postgres.ErrUnsupportedVersion) {
			return fmt.Errorf("server %s: %w", s.Name(), err)
		}
		return fmt.Errorf("server %s: switch-wal: %w", s.Name(), err)
	}
	if !switched {
		fmt.Fprintf(g.out, "No switch required for server '%s'\n", s.Name())
		if !doArchive {
			return nil
		}
		closed = ""
	} else {
		fmt.Fprintf(g.out, "The WAL file %s has been closed on server '%s'\n", closed, s.Name())
	}
	if doArchive {
		fmt.Fprintf(g.out, "Waiting for the WAL file %s from server '%s' (max: %s)\n", closed, s.Name(), timeout)
		if err := archive.WaitForWAL(ctx, s.ArchiveOptions(nil), closed, timeout); err != nil {
			if errors.Is(err, archive.ErrWaitTimeout) {
				return fmt.Errorf("server %s: the WAL file %s has not been received in %s", s.Name(), closed, timeout)
			}
			return fmt.Errorf("server %s: %w", s.Name(), err)
		}
		if closed != "" {
			fmt.Fprintf(g.out, "Processing xlog segments from file archival for %s\n\t%s\n", s.Name(), closed)
		}
	}
	return nil
}

func newReplicationStatusCommand(g *globalOptions) *cobra.Command {
	var minimal bool
	var target string
	c := &cobra.Command{
		Use:   "replication-status SERVER|all [SERVER...]",
		Short: "Show the streaming clients (standbys and WAL streamers) of servers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch target {
			case "all", "hot-standby", "wal-streamer":
			default:
				return usageError("invalid --target %q: use all, hot-standby or wal-streamer", target)
			}
			srvs, err := g.servers(args)
			if err != nil {
				return err
			}
			out := map[string]any{}
			var errs []error
			for _, s := range srvs {
				rows, cur, err := replicationRows(cmd.Context(), s)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				var kept []postgres.ReplicationStat
				for _, r := range rows {
					if target == "hot-standby" && r.IsWALStreamer() || target == "wal-streamer" && !r.IsWALStreamer() {
						continue
					}
					kept = append(kept, r)
				}
				out[s.Name()] = kept
				if g.json() {
					continue
				}
				printReplication(g, s.Name(), cur, kept, minimal)
			}
			if g.json() {
				if err := writeJSON(g.out, out); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVar(&minimal, "minimal", false, "one line per client")
	c.Flags().StringVar(&target, "target", "all", "all, hot-standby or wal-streamer")
	return c
}

func replicationRows(ctx context.Context, s *server.Server) ([]postgres.ReplicationStat, *postgres.Status, error) {
	conn, err := s.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := conn.Status(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("server %s: %w", s.Name(), err)
	}
	rows, err := conn.ReplicationStats(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("server %s: %w", s.Name(), err)
	}
	return rows, st, nil
}

func printReplication(g *globalOptions, name string, st *postgres.Status, rows []postgres.ReplicationStat, minimal bool) {
	if minimal {
		for i, r := range rows {
			kind := "hot standby"
			if r.IsWALStreamer() {
				kind = "WAL streamer"
			}
			flush := "None"
			if r.FlushLSN != nil {
				flush = r.FlushLSN.String()
			}
			fmt.Fprintf(g.out, "%s: %d. %s %s %s (%s) flush %s\n", name, i+1, r.ApplicationName, kind, r.State, r.SyncState, flush)
		}
		return
	}
	fmt.Fprintf(g.out, "Status of streaming clients for server '%s':\n", name)
	fmt.Fprintf(g.out, "  Current LSN on master: %s\n", st.CurrentLSN)
	if len(rows) == 0 {
		fmt.Fprintln(g.out, "  No streaming clients attached")
		return
	}
	fmt.Fprintf(g.out, "  Number of streaming clients: %d\n", len(rows))
	for i, r := range rows {
		kind := "Hot standby"
		if r.IsWALStreamer() {
			kind = "WAL streamer"
		}
		fmt.Fprintf(g.out, "\n  %d. %s (%s)\n", i+1, kind, r.SyncState)
		fmt.Fprintf(g.out, "     Application name: %s\n", r.ApplicationName)
		fmt.Fprintf(g.out, "     Replication user: %s\n", r.UserName)
		addr := r.ClientAddr
		if addr == "" {
			addr = "socket"
		}
		fmt.Fprintf(g.out, "     Communication   : %s\n", addr)
		fmt.Fprintf(g.out, "     WAL sender PID  : %d\n", r.PID)
		if r.BackendStart != nil {
			fmt.Fprintf(g.out, "     Started at      : %s\n", r.BackendStart.Format(time.RFC3339))
		}
		if r.SlotName != "" {
			fmt.Fprintf(g.out, "     Replication slot: %s\n", r.SlotName)
		}
		fmt.Fprintf(g.out, "     Current state   : %s\n", r.State)
		for _, l := range []struct {
			label string
			v     *wal.LSN
		}{{"Sent LSN", r.SentLSN}, {"Write LSN", r.WriteLSN}, {"Flush LSN", r.FlushLSN}, {"Replay LSN", r.ReplayLSN}} {
			text := "None"
			if l.v != nil {
				// The byte distance from the server's position, as Barman shows it.
				text = fmt.Sprintf("%s (diff: %s)", l.v, prettySize(int64(st.CurrentLSN)-int64(*l.v)))
			}
			fmt.Fprintf(g.out, "     %-16s: %s\n", l.label, text)
		}
	}
}
