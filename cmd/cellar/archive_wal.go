package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/backup"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
)

func newArchiveWALCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "archive-wal SERVER|all [SERVER...]",
		Short: "Move WAL files from incoming/ and streaming/ into the archive",
		Long: "Validates every file (name, size, header timeline/position/system id), compresses it per\n" +
			"the compression option, stores it durably in wals/ and lists it in xlog.db. Duplicates\n" +
			"with different content and unknown files go to errors/; nothing is ever overwritten.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srvs, err := g.servers(args)
			if err != nil {
				return err
			}
			var out io.Writer = g.out
			if g.json() {
				out = io.Discard
			}
			reports := map[string]archive.Report{}
			var errs []error
			for _, s := range srvs {
				if s.Config().IsPassive() {
					continue
				}
				rep, err := s.ArchiveWAL(cmd.Context(), out)
				if err != nil {
					if errors.Is(err, lock.ErrBusy) {
						errs = append(errs, fmt.Errorf("another archive-wal process is already running on server %s", s.Name()))
						continue
					}
					errs = append(errs, err)
				}
				reports[s.Name()] = rep
			}
			if g.json() {
				if err := writeJSON(g.out, reports); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
}

func newCheckBackupCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "check-backup SERVER BACKUP_ID|latest|NAME",
		Short: "Check that every WAL a backup needs is archived (WAITING_FOR_WALS → DONE or FAILED)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, b, err := g.serverBackup(args[0], args[1])
			if err != nil {
				return err
			}
			info, err := backup.CheckBackup(cmd.Context(), s.Layout(), b.ID)
			if err != nil {
				return err
			}
			if g.json() {
				return writeJSON(g.out, map[string]any{"backup_id": info.ID, "status": info.Status, "error": info.Error})
			}
			fmt.Fprintf(g.out, "Backup %s of server %s: %s\n", info.ID, s.Name(), info.Status)
			if info.Status == catalog.StatusFailed {
				return withCode(exitFailure, fmt.Errorf("server %s: backup %s: %s", s.Name(), info.ID, info.Error))
			}
			if info.Deleting() {
				return withCode(exitFailure, fmt.Errorf("server %s: backup %s is being deleted (an interrupted delete the next cron or daemon pass finishes)", s.Name(), info.ID))
			}
			return nil
		},
	}
}
