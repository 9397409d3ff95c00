package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// newListFilesCommand prints the files a backup is made of (seed
// list_files): its data files, the WAL it needs, or both.
func newListFilesCommand(g *globalOptions) *cobra.Command {
	var target string
	c := &cobra.Command{
		Use:   "list-files SERVER BACKUP_ID|latest|oldest|last-failed|latest-full|NAME [--target data|wal|full|standalone]",
		Short: "List the files of a backup (data files, WAL files, or both), one absolute path a line",
		Long: "--target data: every file of the backup directory (base/<id>/)\n" +
			"--target standalone (default): data plus the WAL segments from begin_wal to end_wal\n" +
			"--target wal: the archived WAL from begin_wal up to the next backup's end_wal (the end of the archive for the newest backup), history files included\n" +
			"--target full: data plus wal",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runListFiles(cmd.Context(), g, target, args)
		},
	}
	c.Flags().StringVar(&target, "target", "standalone", "data, wal, full or standalone")
	return c
}

func runListFiles(ctx context.Context, g *globalOptions, target string, args []string) error {
	switch target {
	case "data", "wal", "full", "standalone":
	default:
		return usageError("invalid --target %q: use data, wal, full or standalone", target)
	}
	s, b, err := g.serverBackup(args[0], args[1])
	if err != nil {
		return err
	}
	files, err := backupFiles(ctx, s, b, target)
	if err != nil {
		return err
	}
	if g.json() {
		if files == nil {
			files = []string{}
		}
		return writeJSON(g.out, files)
	}
	for _, f := range files {
		fmt.Fprintln(g.out, f)
	}
	return nil
}

// backupFiles lists the absolute paths of a backup's files for target.
func backupFiles(ctx context.Context, s *server.Server, b *catalog.BackupInfo, target string) ([]string, error) {
	l := s.Layout()
	var out []string
	if target != "wal" {
		dir, err := filepath.Abs(l.BackupDirPath(b.ID))
		if err != nil {
			return nil, err
		}
		if err := walkLikePython(dir, &out); err != nil {
			return nil, fmt.Errorf("server %s: backup %s: %w", s.Name(), b.ID, err)
		}
	}
	switch target {
	case "standalone":
		wals, err := requiredWALs(s, b)
		if err != nil {
			return nil, err
		}
		out = append(out, wals...)
	case "wal", "full":
		wals, err := walsUntilNextBackup(ctx, s, b)
		if err != nil {
			return nil, err
		}
		out = append(out, wals...)
	}
	return out, nil
}

// walkLikePython lists a tree the way os.walk does in Barman: a directory's
// files (sorted) before its subdirectories (sorted), recursively.
func walkLikePython(dir string, out *[]string) error {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return err
	}
	var dirs []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			dirs = append(dirs, p)
			continue
		}
		*out = append(*out, p)
	}
	for _, d := range dirs {
		if err := walkLikePython(d, out); err != nil {
			return err
		}
	}
	return nil
}

// requiredWALs are the segments from begin_wal to end_wal, whether archived
// yet or not (seed get_required_xlog_files: the names a standalone restore
// needs).
func requiredWALs(s *server.Server, b *catalog.BackupInfo) ([]string, error) {
	if b.BeginWAL == "" || b.EndWAL == "" {
		return nil, nil
	}
	begin, err := wal.ParseName(b.BeginWAL)
	if err != nil {
		return nil, fmt.Errorf("server %s: backup %s: begin_wal: %w", s.Name(), b.ID, err)
	}
	end, err := wal.ParseName(b.EndWAL)
	if err != nil {
		return nil, fmt.Errorf("server %s: backup %s: end_wal: %w", s.Name(), b.ID, err)
	}
	seg := s.SegmentSize()
	if b.XLogSegmentSize > 0 {
		seg = uint64(b.XLogSegmentSize)
	}
	names, err := wal.SegmentsBetween(begin, end, seg)
	if err != nil {
		return nil, fmt.Errorf("server %s: backup %s: %w", s.Name(), b.ID, err)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		p, err := filepath.Abs(s.Layout().WALPath(n))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// walsUntilNextBackup are the archived WAL files (xlog.db order) from
// begin_wal up to the next available backup's end_wal, or to the end of
// the archive; every history file is included (seed
// get_wal_until_next_backup with include_history).
func walsUntilNextBackup(ctx context.Context, s *server.Server, b *catalog.BackupInfo) ([]string, error) {
	if b.BeginWAL == "" {
		return nil, nil
	}
	nextEnd := ""
	if next, err := s.Catalog().Next(b.ID); err == nil && next != nil {
		nextEnd = next.EndWAL
	}
	var names []wal.Name
	err := s.XLogDB().Scan(ctx, func(w catalog.WALInfo) error {
		n, err := wal.ParseName(w.Name)
		if err != nil {
			return nil // not a WAL name: nothing a restore could use
		}
		if !wal.IsHistoryName(w.Name) {
			seg := n.SegmentName()
			if seg < b.BeginWAL || (nextEnd != "" && seg > nextEnd) {
				return nil
			}
		}
		names = append(names, n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("server %s: reading %s: %w", s.Name(), s.XLogDB().Path(), err)
	}
	sort.SliceStable(names, func(i, j int) bool { return wal.Compare(names[i], names[j]) < 0 })
	out := make([]string, 0, len(names))
	for _, n := range names {
		p, err := filepath.Abs(s.Layout().WALPath(n))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
