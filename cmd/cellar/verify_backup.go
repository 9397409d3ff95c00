package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/recovery"
	"github.com/cellar-backup/cellar/server"
)

// exitUnverifiable is verify-backup's exit code when no backup failed but
// at least one could not be verified (no backup_manifest, or one without
// checksums): it is not known to be good, so it is not success either.
const exitUnverifiable = 4

// newVerifyBackupCommand checks stored backups against their manifests.
func newVerifyBackupCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "verify-backup SERVER BACKUP_ID|latest|NAME|all",
		Short: "Check stored backups at rest against their backup_manifest (every file present, with its size and checksum)",
		Long: "Reads every file of the backup (plain or tar, any compression) and compares it with\n" +
			"backup_manifest; prints OK, FAILED (first bad file) or UNVERIFIABLE (no manifest) per backup\n" +
			"and saves the verdict in base/<id>/cellar-verify.json. `all` checks every DONE and\n" +
			"WAITING_FOR_WALS backup. For an incremental backup it also checks its chain of parents\n" +
			"(present, DONE, manifests and backup_labels linked up) and prints each parent's last verdict;\n" +
			"a broken chain counts as FAILED.\n\n" +
			"Exit codes: 0 every checked backup is OK; 1 a backup FAILED or could not be checked\n" +
			"(e.g. it is being deleted); 2 usage; 4 none failed but some are UNVERIFIABLE.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerifyBackup(cmd.Context(), g, args[0], args[1])
		},
	}
}

func verifyTargets(g *globalOptions, srv, ref string) (*server.Server, []*catalog.BackupInfo, error) {
	if ref != "all" {
		s, b, err := g.serverBackup(srv, ref)
		if err != nil {
			return nil, nil, err
		}
		return s, []*catalog.BackupInfo{b}, nil
	}
	s, err := g.server(srv)
	if err != nil {
		return nil, nil, err
	}
	bs, err := s.AvailableBackups(catalog.StatusDone, catalog.StatusWaitingForWALs)
	return s, bs, err
}

// verifyTally counts the verdicts of one verify-backup run.
type verifyTally struct {
	checked, failed, unverifiable int
	firstErr                      error
}

func runVerifyBackup(ctx context.Context, g *globalOptions, srv, ref string) error {
	s, backups, err := verifyTargets(g, srv, ref)
	if err != nil {
		return err
	}
	var tally verifyTally
	var records []catalog.Verification
	for _, b := range backups {
		v, err := s.VerifyBackup(ctx, b)
		if ctx.Err() != nil {
			return err
		}
		tally.checked++
		if err != nil {
			tally.failed++
			tally.firstErr = keepFirst(tally.firstErr, err)
			if !g.json() {
				fmt.Fprintf(g.out, "backup %s: ERROR: %v\n", b.ID, err)
			}
			continue
		}
		records = append(records, v)
		tally.count(v)
		if !g.json() {
			printVerification(g, v)
		}
		reportChain(g, s.Layout(), b, &tally)
	}
	if g.json() {
		if records == nil {
			records = []catalog.Verification{}
		}
		if err := writeJSON(g.out, records); err != nil {
			return err
		}
	} else if tally.checked == 0 {
		fmt.Fprintf(g.out, "server %s has no DONE backup to verify\n", s.Name())
	}
	return tally.err(s.Name())
}

// reportChain checks an incremental backup's chain of parents (a backup
// whose chain is broken cannot be restored, so it counts as failed) and
// prints each parent's status and last verification.
func reportChain(g *globalOptions, l catalog.Layout, b *catalog.BackupInfo, tally *verifyTally) {
	if b.ParentBackupID == "" {
		return
	}
	links, err := recovery.CheckChain(l, b)
	if err != nil {
		tally.failed++
		tally.firstErr = keepFirst(tally.firstErr, fmt.Errorf("backup %s: chain of parents broken: %w", b.ID, err))
		if !g.json() {
			fmt.Fprintf(g.out, "  chain of backup %s: BROKEN: %v\n", b.ID, err)
		}
		return
	}
	if g.json() {
		return
	}
	for _, p := range links {
		last := "never verified (run verify-backup on it)"
		if p.Verified {
			last = fmt.Sprintf("last verified %s: %s", p.Verification.VerifiedAt.Format(time.RFC3339), strings.ToUpper(string(p.Verification.Result)))
		}
		fmt.Fprintf(g.out, "  parent %s: %s, manifest and backup_label link up; %s\n", p.ID, p.Status, last)
	}
}

func keepFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func (t *verifyTally) count(v catalog.Verification) {
	switch v.Result {
	case catalog.VerifyFailed:
		t.failed++
		t.firstErr = keepFirst(t.firstErr, errors.New(v.Error))
	case catalog.VerifyUnverifiable:
		t.unverifiable++
	}
}

// err is the run's outcome: failures first, then unverifiable backups.
func (t *verifyTally) err(srv string) error {
	switch {
	case t.failed > 0:
		return withCode(exitFailure, fmt.Errorf("server %s: %d of %d backups FAILED verification; first: %w", srv, t.failed, t.checked, t.firstErr))
	case t.unverifiable > 0:
		return withCode(exitUnverifiable, fmt.Errorf("server %s: %d of %d backups are UNVERIFIABLE (no backup_manifest or no checksums): they are not known to be good", srv, t.unverifiable, t.checked))
	}
	return nil
}

func printVerification(g *globalOptions, v catalog.Verification) {
	switch v.Result {
	case catalog.VerifyOK:
		fmt.Fprintf(g.out, "backup %s: OK (%d files, %s in %s)\n", v.BackupID, v.Files, prettySize(v.Bytes), v.Duration.Round(time.Millisecond))
	case catalog.VerifyFailed:
		fmt.Fprintf(g.out, "backup %s: FAILED: %s\n", v.BackupID, v.Error)
	default:
		fmt.Fprintf(g.out, "backup %s: UNVERIFIABLE: %s\n", v.BackupID, v.Error)
	}
}
