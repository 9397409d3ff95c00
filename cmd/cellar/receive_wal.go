package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/archive/stream"
	"github.com/cellar-backup/cellar/server"
)

type receiveWALOptions struct {
	createSlot  bool
	ifNotExists bool
	dropSlot    bool
	reset       bool
	stop        bool
}

// newReceiveWALCommand is Barman's receive-wal: stream WAL into streaming/
// in the foreground until interrupted, or run one of the slot/reset/stop
// actions.
func newReceiveWALCommand(g *globalOptions) *cobra.Command {
	var opts receiveWALOptions
	c := &cobra.Command{
		Use:   "receive-wal SERVER",
		Short: "Stream WAL from the server into its streaming directory (or manage the slot, reset, stop)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReceiveWAL(cmd.Context(), g, opts, args)
		},
	}
	f := c.Flags()
	f.BoolVar(&opts.createSlot, "create-slot", false, "create the physical replication slot (slot_name) and exit")
	f.BoolVar(&opts.ifNotExists, "if-not-exists", false, "with --create-slot: an existing slot is not an error")
	f.BoolVar(&opts.dropSlot, "drop-slot", false, "drop the replication slot and exit")
	f.BoolVar(&opts.reset, "reset", false, "reset the streaming position to the server's (slot's) position and exit")
	f.BoolVar(&opts.stop, "stop", false, "stop the running receive-wal process of the server")
	c.MarkFlagsMutuallyExclusive("create-slot", "drop-slot", "reset", "stop")
	return c
}

func runReceiveWAL(ctx context.Context, g *globalOptions, opts receiveWALOptions, args []string) error {
	if opts.ifNotExists && !opts.createSlot {
		return usageError("--if-not-exists needs --create-slot")
	}
	s, err := g.server(args[0])
	if err != nil {
		return err
	}
	if opts.stop {
		err := stream.Stop(ctx, s.Layout())
		if errors.Is(err, stream.ErrNotRunning) {
			fmt.Fprintf(g.out, "Termination of receive-wal failed: no such process for server %s\n", s.Name())
		}
		return err
	}
	so, err := streamOptions(s, g)
	if err != nil {
		return err
	}
	switch {
	case opts.createSlot:
		if so.SlotName == "" {
			return usageError("server %s: --create-slot needs slot_name", s.Name())
		}
		if err := stream.CreateSlot(ctx, so, opts.ifNotExists); err != nil {
			return err
		}
		fmt.Fprintf(g.out, "Replication slot '%s' created\n", so.SlotName)
		return nil
	case opts.dropSlot:
		if so.SlotName == "" {
			return usageError("server %s: --drop-slot needs slot_name", s.Name())
		}
		if err := stream.DropSlot(ctx, so); err != nil {
			return err
		}
		fmt.Fprintf(g.out, "Replication slot '%s' dropped\n", so.SlotName)
		return nil
	case opts.reset:
		so.CreateSlot = false // Barman never auto-creates under --reset
		res, err := stream.Reset(ctx, so)
		if err != nil {
			return err
		}
		if res.Changed {
			fmt.Fprintf(g.out, "%s: reset streaming position to %s\n", s.Name(), res.Partial)
		}
		return nil
	}

	if !s.Config().StreamingArchiver {
		return withCode(exitUsage, fmt.Errorf("server %s: streaming_archiver is off", s.Name()))
	}
	if err := s.MakeDirectories(); err != nil {
		return err
	}
	// Barman passes --synchronous when the server lists the receiver in
	// synchronous_standby_names.
	if sync, err := stream.IsSynchronousStandby(ctx, so); err != nil {
		return err
	} else if sync {
		so.Synchronous = true
	}
	rec, err := stream.NewReceiver(so)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.out, "Starting receive-wal for server %s\n", s.Name())
	// Run returns nil on SIGINT/SIGTERM (main's context): a clean stop.
	return rec.Run(ctx)
}

// streamOptions maps a server's configuration to stream.Options.
func streamOptions(s *server.Server, g *globalOptions) (stream.Options, error) {
	so, err := s.StreamOptions()
	if err != nil {
		return so, withCode(exitUsage, err)
	}
	return so, nil
}
