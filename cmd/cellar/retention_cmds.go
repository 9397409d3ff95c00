package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/server"
)

func newDeleteCommand(g *globalOptions) *cobra.Command {
	var withChildren bool
	c := &cobra.Command{
		Use:   "delete SERVER BACKUP_ID|oldest|latest|last-failed|NAME",
		Short: "Delete a backup and the WAL only it needed",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, b, err := g.serverBackup(args[0], args[1])
			if err != nil {
				return err
			}
			// A busy lock is refused with the holder named ("backup ID
			// is being restored by PID N"), never waited for.
			return s.DeleteBackupTree(cmd.Context(), b.ID, withChildren, g.out)
		},
	}
	c.Flags().BoolVar(&withChildren, "with-children", false, "also delete the incremental backups taken from this one (children first); without it a backup with children is refused")
	return c
}

func newKeepCommand(g *globalOptions) *cobra.Command {
	var target string
	var status, release bool
	c := &cobra.Command{
		Use:   "keep SERVER BACKUP_ID (--target full|standalone | --status | --release)",
		Short: "Keep a backup forever, regardless of the retention policy",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, set := range []bool{target != "", status, release} {
				if set {
					n++
				}
			}
			if n != 1 {
				return usageError("keep: give exactly one of --target, --status, --release")
			}
			s, b, err := g.serverBackup(args[0], args[1])
			if err != nil {
				return err
			}
			switch {
			case status:
				k, err := s.Catalog().Keep(b.ID)
				if err != nil {
					return err
				}
				if k == "" {
					k = "nokeep"
				}
				if g.json() {
					return writeJSON(g.out, map[string]string{"backup_id": b.ID, "keep_status": k})
				}
				fmt.Fprintf(g.out, "Keep: %s\n", k)
				return nil
			case release:
				return s.Catalog().ReleaseKeep(b.ID)
			default:
				return s.Keep(b.ID, target)
			}
		},
	}
	c.Flags().StringVar(&target, "target", "", "full (keep every later WAL) or standalone (only the WAL needed to restore this backup)")
	c.Flags().BoolVar(&status, "status", false, "print the keep annotation")
	c.Flags().BoolVar(&release, "release", false, "remove the keep annotation")
	return c
}

func newRetentionCommand(g *globalOptions) *cobra.Command {
	var dryRun bool
	c := &cobra.Command{
		Use:   "retention SERVER|all [SERVER...] [--dry-run]",
		Short: "Apply the retention policy (or, with --dry-run, explain what it would do)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srvs, err := g.servers(args)
			if err != nil {
				return err
			}
			doc := map[string]any{}
			var errs []error
			for _, s := range srvs {
				dels, decisions, err := s.EnforceRetention(cmd.Context(), dryRun, quietWriter(g, dryRun))
				if errors.Is(err, server.ErrNoRetentionPolicy) {
					if !g.json() {
						fmt.Fprintf(g.out, "Server %s: no retention policy configured\n", s.Name())
					}
					continue
				}
				if err != nil {
					errs = append(errs, err)
				}
				unreadable := unreadableRows(err)
				doc[s.Name()] = map[string]any{"deleted": dels, "dry_run": dryRun, "decisions": decisions, "unreadable": unreadable}
				if g.json() {
					continue
				}
				if len(unreadable) > 0 {
					fmt.Fprintf(g.out, "Server %s: retention and WAL pruning stopped: backup.info unreadable\n", s.Name())
					for _, u := range unreadable {
						fmt.Fprintf(g.out, "  %s %-16s %s: %s\n", u["backup_id"], catalog.StatusUnreadable, u["path"], u["error"])
					}
					continue
				}
				p, _ := s.RetentionPolicy()
				fmt.Fprintf(g.out, "Server %s: retention policy %s (minimum redundancy %d)\n", s.Name(), p, p.MinimumRedundancy)
				for _, d := range decisions {
					verb := "keep"
					if d.Delete {
						verb = "delete"
						if dryRun {
							verb = "would delete"
						}
					}
					fmt.Fprintf(g.out, "  %s %-16s %-12s %s\n", d.ID, d.Label, verb, d.Reason)
				}
			}
			if g.json() {
				if err := writeJSON(g.out, doc); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "only explain, for each backup, why it is kept or would be deleted")
	return c
}

func quietWriter(g *globalOptions, dry bool) io.Writer {
	if dry || g.json() {
		return io.Discard
	}
	return g.out
}

// unreadableRows describes the unreadable backup.info files err names.
func unreadableRows(err error) []map[string]string {
	var rows []map[string]string
	for _, u := range catalog.UnreadableBackups(err) {
		rows = append(rows, map[string]string{"backup_id": u.ID, "path": u.Path, "error": u.Err.Error()})
	}
	return rows
}
