package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// statusRow is one line of `cellar status`: a stable key for JSON, the
// label Barman prints and the value.
type statusRow struct {
	key, label, value string
}

// newStatusCommand shows, per server, what Barman's `status` shows: the
// PostgreSQL side (version, cluster state, size, archiver), the WAL
// archiving rate, retention enforcement and the backup catalog summary.
func newStatusCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status SERVER|all [SERVER...]",
		Short: "Show the status of servers: PostgreSQL, WAL archiver, retention and backups",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, args)
		},
	}
}

func runStatus(ctx context.Context, g *globalOptions, args []string) error {
	srvs, err := g.servers(args)
	if err != nil {
		return err
	}
	doc := map[string]map[string]map[string]string{}
	var errs []error
	for _, s := range srvs {
		rows, err := serverStatus(ctx, s)
		if err != nil {
			// A broken catalog still prints what could be read, like a
			// failed connection does.
			errs = append(errs, err)
		}
		if g.json() {
			m := map[string]map[string]string{}
			for _, r := range rows {
				m[r.key] = map[string]string{"description": r.label, "message": r.value}
			}
			doc[s.Name()] = m
			continue
		}
		fmt.Fprintf(g.out, "Server %s:\n", s.Name())
		for _, r := range rows {
			fmt.Fprintf(g.out, "\t%s: %s\n", r.label, r.value)
		}
	}
	if g.json() {
		if err := writeJSON(g.out, doc); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// serverStatus builds the rows of one server. PostgreSQL problems become
// row values (the command reports, it does not fail); catalog read errors
// are returned together with the rows that could be computed.
func serverStatus(ctx context.Context, s *server.Server) ([]statusRow, error) {
	cfg := s.Config()
	rows := []statusRow{
		{"description", "Description", cfg.Description},
		{"active", "Active", formatValue(cfg.Active)},
		{"disabled", "Disabled", formatValue(false)},
	}
	if !cfg.IsPassive() {
		rows = append(rows, postgresStatusRows(ctx, s)...)
	}
	var errs []error
	backups, err := s.Catalog().Available()
	if err != nil {
		errs = append(errs, fmt.Errorf("server %s: reading the backup catalog: %w", s.Name(), err))
	}
	rate, err := walArchivingRate(ctx, s, backups)
	if err != nil {
		errs = append(errs, fmt.Errorf("server %s: reading %s: %w", s.Name(), s.XLogDB().Path(), err))
	}
	if rate != "" {
		rows = append(rows, statusRow{"server_archived_wals_per_hour", "Server WAL archiving rate", rate})
	}
	rows = append(rows, statusRow{"passive_node", "Passive node", formatValue(cfg.IsPassive())})

	retention := "not enforced"
	if p, err := s.RetentionPolicy(); err == nil {
		retention = fmt.Sprintf("enforced (mode: %s, retention: %s, WAL retention: %s)",
			cfg.RetentionPolicyMode, p, strings.ToUpper(string(cfg.WALRetentionPolicy)))
	} else if !errors.Is(err, server.ErrNoRetentionPolicy) {
		errs = append(errs, err)
	}
	rows = append(rows, statusRow{"retention_policies", "Retention policies", retention})

	rows = append(rows, statusRow{"backups_number", "No. of available backups", fmt.Sprint(len(backups))})
	if deleting, err := s.Catalog().Available(catalog.StatusDeleting); err == nil && len(deleting) > 0 {
		rows = append(rows, statusRow{"backups_deleting", "Backups being deleted", deletingIDs(deleting)})
	}
	first, last := "None", "None"
	if n := len(backups); n > 0 {
		first, last = backups[0].ID, backups[n-1].ID
	}
	rows = append(rows,
		statusRow{"first_backup", "First available backup", first},
		statusRow{"last_backup", "Last available backup", last},
	)
	verdict := "satisfied"
	if len(backups) < cfg.MinimumRedundancy {
		verdict = "FAILED"
	}
	rows = append(rows, statusRow{"minimum_redundancy", "Minimum redundancy requirements",
		fmt.Sprintf("%s (%d/%d)", verdict, len(backups), cfg.MinimumRedundancy)})
	return rows, errors.Join(errs...)
}

// postgresStatusRows is seed status_postgres plus status_wal_archiver. A
// server that cannot be reached yields one FAILED row, as in Barman.
func postgresStatusRows(ctx context.Context, s *server.Server) []statusRow {
	timeout := s.Config().CheckTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := s.Connect(ctx)
	if err != nil {
		return []statusRow{{"pg_version", "PostgreSQL version", "FAILED trying to get PostgreSQL version"}}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := conn.Status(ctx)
	if err != nil {
		return []statusRow{{"pg_version", "PostgreSQL version", "FAILED trying to get PostgreSQL version"}}
	}
	state := "in production"
	if st.IsInRecovery {
		state = "in archive recovery"
	}
	rows := []statusRow{
		{"pg_version", "PostgreSQL version", st.ServerVersionText},
		{"cluster_state", "Cluster state", state},
	}
	// pg_database_size of every database is one catalog query; it is the
	// "current data size" Barman reports (it skips it when unreadable too).
	var size int64
	if err := conn.PgxConn().QueryRow(ctx, "SELECT sum(pg_database_size(oid))::bigint FROM pg_database").Scan(&size); err == nil {
		rows = append(rows, statusRow{"current_size", "Current data size", prettySize(size)})
	}
	rows = append(rows, statusRow{"data_directory", "PostgreSQL Data directory", st.DataDirectory})
	if st.CurrentWAL != "" {
		rows = append(rows, statusRow{"current_xlog", "Current WAL segment", st.CurrentWAL})
	}
	if st.ArchiveMode != "" && st.ArchiveMode != "off" {
		rows = append(rows, statusRow{"archive_command", "PostgreSQL 'archive_command' setting", orNone(st.ArchiveCommand)})
		last := "No WAL segment shipped yet"
		if a := st.Archiver; a.LastArchivedWAL != "" {
			last = a.LastArchivedWAL
			if a.LastArchivedTime != nil {
				last += ", at " + a.LastArchivedTime.Local().Format(ctimeLayout)
			}
		}
		rows = append(rows, statusRow{"last_archived_wal", "Last archived WAL", last})
		failures := fmt.Sprint(st.Archiver.FailedCount)
		if a := st.Archiver; a.FailedCount > 0 && a.LastFailedWAL != "" {
			failures += " (" + a.LastFailedWAL
			if a.LastFailedTime != nil {
				failures += " at " + a.LastFailedTime.Local().Format(ctimeLayout)
			}
			failures += ")"
		}
		rows = append(rows, statusRow{"failed_count", "Failures of WAL archiver", failures})
	}
	return rows
}

func orNone(v string) string {
	if v == "" {
		return "None"
	}
	return v
}

// walArchivingRate is the WAL segments per hour Cellar archived: over the
// WAL after the last backup when there is one (as show-backup's "WAL
// rate"), else over the whole of xlog.db. "" when there is not enough WAL
// to measure a rate.
func walArchivingRate(ctx context.Context, s *server.Server, backups []*catalog.BackupInfo) (string, error) {
	if n := len(backups); n > 0 {
		last := backups[n-1]
		stats, err := s.WALStatsFor(ctx, []*catalog.BackupInfo{last})
		if err != nil {
			return "", err
		}
		if st := stats[last.ID]; st != nil && st.UntilNextNum > 0 {
			if h := st.LastWALTime.Sub(last.EndTime).Hours(); h > 0 {
				return fmt.Sprintf("%0.2f/hour", float64(st.UntilNextNum)/h), nil
			}
		}
	}
	var count int
	var oldest, newest float64
	err := s.XLogDB().Scan(ctx, func(w catalog.WALInfo) error {
		if !wal.IsSegmentName(w.Name) {
			return nil
		}
		if count == 0 || w.Time < oldest {
			oldest = w.Time
		}
		if count == 0 || w.Time > newest {
			newest = w.Time
		}
		count++
		return nil
	})
	if err != nil || count < 2 || newest <= oldest {
		return "", err
	}
	// n segments span n-1 intervals between their archive times.
	return fmt.Sprintf("%0.2f/hour", float64(count-1)/((newest-oldest)/3600)), nil
}

// deletingIDs lists backups whose deletion was interrupted, with what
// will finish it.
func deletingIDs(bs []*catalog.BackupInfo) string {
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	return strings.Join(ids, ", ") + " (interrupted; the next cron or daemon pass finishes the deletion)"
}
