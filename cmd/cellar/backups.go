package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// ctimeLayout is Python's time.ctime() format, which Barman prints.
const ctimeLayout = "Mon Jan _2 15:04:05 2006"

// prettySize prints bytes the way Barman does: "%d B" below 1 KiB, then one
// decimal with a binary unit.
func prettySize(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	u := ""
	for _, unit := range units {
		f /= 1024
		u = unit
		if f < 1024 && f > -1024 {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", f, u)
}

func typeLetter(b *catalog.BackupInfo) string {
	switch b.BackupType() {
	case "incremental":
		return "I"
	case "rsync":
		return "R"
	case "snapshot":
		return "S"
	default:
		return "F"
	}
}

func i64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func newListBackupsCommand(g *globalOptions) *cobra.Command {
	var minimal bool
	c := &cobra.Command{
		Use:   "list-backups SERVER|all [SERVER...]",
		Short: "List the backups of servers, newest first",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srvs, err := g.servers(args)
			if err != nil {
				return err
			}
			jsonOut := map[string][]map[string]any{}
			var errs []error
			for _, s := range srvs {
				rows, err := listBackups(cmd, g, s, minimal)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				jsonOut[s.Name()] = rows
			}
			if g.json() {
				if err := writeJSON(g.out, jsonOut); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVar(&minimal, "minimal", false, "only print backup ids")
	return c
}

func listBackups(cmd *cobra.Command, g *globalOptions, s *server.Server, minimal bool) ([]map[string]any, error) {
	backups, err := s.Catalog().Backups()
	unreadable := catalog.UnreadableBackups(err)
	if err != nil && len(backups) == 0 && len(unreadable) == 0 {
		return nil, err
	}
	stats, serr := s.WALStatsFor(cmd.Context(), backups)
	if serr != nil {
		return nil, serr
	}
	type entry struct {
		b *catalog.BackupInfo
		u *catalog.UnreadableError
	}
	entries := make([]entry, 0, len(backups)+len(unreadable))
	for _, b := range backups {
		entries = append(entries, entry{b: b})
	}
	for _, u := range unreadable {
		entries = append(entries, entry{u: u})
	}
	id := func(e entry) string {
		if e.u != nil {
			return e.u.ID
		}
		return e.b.ID
	}
	sort.Slice(entries, func(i, j int) bool { return id(entries[i]) > id(entries[j]) })
	labels := retentionLabels(s)
	var rows []map[string]any
	for _, e := range entries {
		var row map[string]any
		var line string
		if e.u != nil {
			row, line = unreadableRow(s, e.u)
		} else {
			row, line = backupRow(s, e.b, stats[e.b.ID], labels[e.b.ID])
		}
		rows = append(rows, row)
		switch {
		case g.json():
		case minimal:
			fmt.Fprintln(g.out, id(e))
		default:
			fmt.Fprintln(g.out, line)
		}
	}
	return rows, err
}

// unreadableRow is list-backups' entry for a backup.info that cannot be
// read: its status is unknown, so it is shown as such (never as EMPTY).
func unreadableRow(s *server.Server, u *catalog.UnreadableError) (map[string]any, string) {
	row := map[string]any{
		"backup_id": u.ID,
		"status":    string(catalog.StatusUnreadable),
		"error":     fmt.Sprintf("%s: %v", u.Path, u.Err),
	}
	return row, fmt.Sprintf("%s %s - %s (%s: %v)", s.Name(), u.ID, catalog.StatusUnreadable, u.Path, u.Err)
}

func backupRow(s *server.Server, b *catalog.BackupInfo, st *server.WALStats, retention string) (map[string]any, string) {
	row := listBackupJSON(b, st, retention)
	name := ""
	if b.BackupName != "" {
		name = " '" + b.BackupName + "'"
	}
	line := fmt.Sprintf("%s %s%s - %s - ", s.Name(), b.ID, name, typeLetter(b))
	if b.Status == catalog.StatusDone || b.Status == catalog.StatusWaitingForWALs {
		line += fmt.Sprintf("%s - Size: %s - WAL Size: %s", b.EndTime.Local().Format(ctimeLayout), prettySize(i64(b.Size)+st.Size), prettySize(st.UntilNextSize))
		if b.Status == catalog.StatusWaitingForWALs {
			line += " - WAITING_FOR_WALS"
		}
	} else {
		line += string(b.Status)
	}
	return row, line
}

func newShowBackupCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show-backup SERVER BACKUP_ID|latest|oldest|last-failed|latest-full|NAME",
		Short: "Show the details of one backup",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, b, err := g.serverBackup(args[0], args[1])
			if err != nil {
				return err
			}
			all, _ := s.Catalog().Backups()
			stats, err := s.WALStatsFor(cmd.Context(), all)
			if err != nil {
				return err
			}
			st := stats[b.ID]
			if st == nil {
				st = &server.WALStats{}
			}
			if g.json() {
				return writeJSON(g.out, map[string]any{s.Name(): showBackupJSON(s, b, st, retentionLabels(s)[b.ID])})
			}
			sec := showBackupSections(s, b, st)
			printSections(g.out, b.ID, sec)
			return nil
		},
	}
}

// serverBackup resolves the SERVER and BACKUP arguments that the backup
// commands share: an id, a name or a shortcut (latest, oldest, ...).
func (g *globalOptions) serverBackup(name, ref string) (*server.Server, *catalog.BackupInfo, error) {
	s, err := g.server(name)
	if err != nil {
		return nil, nil, err
	}
	b, err := s.ResolveBackup(ref)
	if err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, nil, withCode(exitFailure, fmt.Errorf("server %s: unknown backup %q", s.Name(), ref))
		}
		return nil, nil, err
	}
	return s, b, nil
}

type section struct {
	title string
	rows  [][2]string
}

func showBackupSections(s *server.Server, b *catalog.BackupInfo, st *server.WALStats) []section {
	none := func(v string) string {
		if v == "" {
			return "None"
		}
		return v
	}
	t := func(x time.Time) string {
		if x.IsZero() {
			return "None"
		}
		return x.Local().Format(ctimeLayout)
	}
	head := section{rows: [][2]string{
		{"Server Name", s.Name()},
		{"Backup Name", none(b.BackupName)},
		{"Status", string(b.Status)},
	}}
	if b.Deleting() {
		head.rows = append(head.rows,
			[2]string{"Stored status", string(b.StoredStatus())},
			[2]string{"Deletion", "interrupted: not available for recovery; the next cron or daemon pass (or `cellar delete`) finishes it"})
		return []section{head}
	}
	if b.Status != catalog.StatusDone && b.Status != catalog.StatusWaitingForWALs {
		head.rows = append(head.rows, [2]string{"Error", none(b.Error)})
		return []section{head}
	}
	head.rows = append(head.rows,
		[2]string{"PostgreSQL Version", fmt.Sprint(b.Version)},
		[2]string{"PGDATA directory", b.PGData},
		[2]string{"Backup type", b.BackupType()},
	)
	srv := section{title: "Server information", rows: [][2]string{
		{"Checksums", none(b.DataChecksums)},
		{"System ID", none(b.SystemID)},
	}}
	ts := section{title: "Tablespaces"}
	for _, sp := range b.Tablespaces {
		ts.rows = append(ts.rows, [2]string{sp.Name, fmt.Sprintf("%s (oid: %d)", sp.Location, sp.OID)})
	}
	var copyTime string
	if v, ok := b.CopyStats["copy_time"]; ok {
		copyTime = (time.Duration(v * float64(time.Second))).Round(time.Second).String()
	}
	base := section{title: "Base backup information", rows: [][2]string{
		{"Backup Method", none(b.Mode)},
		{"Backup Size", fmt.Sprintf("%s (%s with WALs)", prettySize(i64(b.Size)), prettySize(i64(b.Size)+st.Size))},
		{"WAL Size", prettySize(st.Size)},
		{"Resources saved", prettySize(i64(b.Size) - i64(b.DeduplicatedSize))},
		{"Timeline", fmt.Sprint(b.Timeline)},
		{"Begin WAL", none(b.BeginWAL)},
		{"End WAL", none(b.EndWAL)},
		{"WAL number", fmt.Sprint(st.Num)},
		{"Begin time", t(b.BeginTime)},
		{"End time", t(b.EndTime)},
		{"Copy time", none(copyTime)},
		{"Begin Offset", fmt.Sprint(i64(b.BeginOffset))},
		{"End Offset", fmt.Sprint(i64(b.EndOffset))},
		{"Begin LSN", none(b.BeginXLog)},
		{"End LSN", none(b.EndXLog)},
	}}
	walSec := section{title: "WAL information", rows: [][2]string{
		{"No of files", fmt.Sprint(st.UntilNextNum)},
		{"Disk usage", prettySize(st.UntilNextSize)},
		{"Last available", none(st.LastWAL)},
	}}
	if st.UntilNextNum > 0 {
		rate := ""
		if d := st.LastWALTime.Sub(b.EndTime).Hours(); d > 0 {
			rate = fmt.Sprintf("%0.2f/hour", float64(st.UntilNextNum)/d)
		}
		walSec.rows = append(walSec.rows, [2]string{"WAL rate", none(rate)})
	}
	cat := section{title: "Catalog information"}
	prev, _ := s.Catalog().Previous(b.ID)
	next, _ := s.Catalog().Next(b.ID)
	id := func(x *catalog.BackupInfo) string {
		if x == nil {
			return "- (this is the oldest base backup)"
		}
		return x.ID
	}
	cat.rows = append(cat.rows, [2]string{"Previous Backup", id(prev)})
	if next == nil {
		cat.rows = append(cat.rows, [2]string{"Next Backup", "- (this is the latest base backup)"})
	} else {
		cat.rows = append(cat.rows, [2]string{"Next Backup", next.ID})
	}
	if keep, _ := s.Catalog().Keep(b.ID); keep != "" {
		cat.rows = append(cat.rows, [2]string{"Keep", keep})
	}
	out := []section{head, srv}
	if len(ts.rows) > 0 {
		out = append(out, ts)
	}
	return append(out, base, walSec, cat)
}

func printSections(w io.Writer, id string, secs []section) {
	fmt.Fprintf(w, "Backup %s:\n", id)
	for _, s := range secs {
		if s.title == "" {
			for _, r := range s.rows {
				fmt.Fprintf(w, "  %-23s: %s\n", r[0], r[1])
			}
			continue
		}
		fmt.Fprintf(w, "\n  %s:\n", s.title)
		for _, r := range s.rows {
			fmt.Fprintf(w, "    %-21s: %s\n", r[0], strings.TrimSpace(r[1]))
		}
	}
}

func newRebuildXLogDBCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "rebuild-xlogdb SERVER|all [SERVER...]",
		Short: "Rebuild xlog.db from the contents of wals/",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srvs, err := g.servers(args)
			if err != nil {
				return err
			}
			res := map[string]map[string]int{}
			for _, s := range srvs {
				if !g.json() {
					fmt.Fprintf(g.out, "Rebuilding xlogdb for server %s\n", s.Name())
				}
				if err := s.XLogDB().Rebuild(cmd.Context()); err != nil {
					return fmt.Errorf("server %s: rebuild xlog.db: %w", s.Name(), err)
				}
				counts := map[string]int{}
				if err := s.XLogDB().Scan(cmd.Context(), func(w catalog.WALInfo) error {
					switch {
					case wal.IsHistoryName(w.Name):
						counts["history"]++
					case wal.IsBackupLabelName(w.Name):
						counts["backup_labels"]++
					default:
						counts["wal_file"]++
					}
					return nil
				}); err != nil {
					return err
				}
				res[s.Name()] = counts
				if !g.json() {
					fmt.Fprintf(g.out, "Done rebuilding xlogdb for server %s (history: %d, backup_labels: %d, wal_file: %d)\n", s.Name(), counts["history"], counts["backup_labels"], counts["wal_file"])
				}
			}
			if g.json() {
				return writeJSON(g.out, res)
			}
			return nil
		},
	}
}
