package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/wal"
)

// MinIncrementalVersion is the first server_version_num that takes
// incremental base backups (UPLOAD_MANIFEST, BASE_BACKUP INCREMENTAL).
const MinIncrementalVersion = 170000

// ErrIncremental refuses an incremental backup whose prerequisites are not
// met: server version, summarize_wal, or the parent backup.
var ErrIncremental = errors.New("cannot take an incremental backup")

// ParentLatest is the Options.Parent value (and the default) that picks the
// newest DONE backup of the server.
const ParentLatest = "latest"

// parent is the backup an incremental is taken from, with the manifest
// the server compares the data files against.
type parent struct {
	info     *catalog.BackupInfo
	manifest []byte
}

// manifestPath is where every backup (plain or tar) keeps its
// backup_manifest; an incremental's parent is read from there.
func manifestPath(l catalog.Layout, id string) string {
	return filepath.Join(l.BackupDirPath(id), "data", "backup_manifest")
}

// checkIncrementalServer refuses a server that cannot take incremental
// backups: before PostgreSQL 17, or with summarize_wal off.
func checkIncrementalServer(ctx context.Context, o *Options, conn *postgres.Conn, st *postgres.Status) error {
	if st.ServerVersion < MinIncrementalVersion {
		return fmt.Errorf("server %s: %w: PostgreSQL %s (incremental backups need PostgreSQL 17 or later)",
			o.Server, ErrIncremental, st.MajorVersion())
	}
	on, err := summarizeWAL(ctx, conn)
	if err != nil {
		return fmt.Errorf("server %s: %w", o.Server, err)
	}
	if !on {
		return fmt.Errorf("server %s: %w: summarize_wal is off on the server (set summarize_wal = on in postgresql.conf and reload)",
			o.Server, ErrIncremental)
	}
	return nil
}

// summarizeWAL reads the server's summarize_wal setting.
func summarizeWAL(ctx context.Context, conn *postgres.Conn) (bool, error) {
	var v string
	if err := conn.PgxConn().QueryRow(ctx, "SELECT current_setting('summarize_wal')").Scan(&v); err != nil {
		return false, fmt.Errorf("read summarize_wal: %w", err)
	}
	return v == "on", nil
}

// resolveParent finds the parent backup and reads its manifest. The parent
// must be DONE, of the same cluster, and taken from PostgreSQL 17+ with
// summarize_wal on (when recorded).
func resolveParent(cat *catalog.Catalog, o *Options, st *postgres.Status) (*parent, error) {
	ref := o.Parent
	if ref == "" {
		ref = ParentLatest
	}
	info, err := lookupParent(cat, ref)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w: parent backup %s (a DONE backup): %w", o.Server, ErrIncremental, ref, err)
	}
	if err := checkParent(info, st); err != nil {
		return nil, fmt.Errorf("server %s: %w: parent backup %s: %w", o.Server, ErrIncremental, info.ID, err)
	}
	p := manifestPath(cat.Layout(), info.ID)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w: parent backup %s: its backup_manifest: %w", o.Server, ErrIncremental, info.ID, err)
	}
	m, err := ParseManifest(data)
	if err == nil {
		err = m.CheckSystemID(st.SystemID)
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: %w: parent backup %s: %s: %w", o.Server, ErrIncremental, info.ID, p, err)
	}
	return &parent{info: info, manifest: data}, nil
}

func lookupParent(cat *catalog.Catalog, ref string) (*catalog.BackupInfo, error) {
	if ref == ParentLatest || ref == "last" {
		return cat.Last(catalog.StatusDone)
	}
	return cat.Resolve(ref)
}

func checkParent(b *catalog.BackupInfo, st *postgres.Status) error {
	switch {
	case b.Status != catalog.StatusDone:
		return fmt.Errorf("it is %s, not DONE", b.Status)
	case b.SystemID != "" && st.SystemID != "" && b.SystemID != st.SystemID:
		return fmt.Errorf("system identifier %s differs from the server's %s", b.SystemID, st.SystemID)
	case b.Version != 0 && b.Version < MinIncrementalVersion:
		return fmt.Errorf("it was taken from PostgreSQL %d, which has no WAL summaries", b.Version/10000)
	case b.SummarizeWAL == "off":
		return errors.New("it was taken with summarize_wal off")
	case b.EndXLog == "" || b.Timeline == 0:
		return errors.New("it has no end location or timeline")
	}
	return nil
}

// checkParentTimeline refuses a parent whose WAL is not in the history of
// the server's current timeline (e.g. a backup of a timeline that a later
// promotion forked away from before the backup ended).
func checkParentTimeline(ctx context.Context, o *Options, p *catalog.BackupInfo) error {
	repl, err := postgres.ConnectReplication(ctx, o.ReplConninfo, postgres.ApplicationName(ApplicationName))
	if err != nil {
		return fmt.Errorf("server %s: %w", o.Server, err)
	}
	defer repl.Close(context.WithoutCancel(ctx))
	sys, err := repl.IdentifySystem(ctx)
	if err != nil {
		return fmt.Errorf("server %s: %w", o.Server, err)
	}
	if uint32(p.Timeline) == sys.Timeline {
		return nil
	}
	var history []byte
	if sys.Timeline > 1 {
		if _, history, err = repl.TimelineHistory(ctx, sys.Timeline); err != nil {
			return fmt.Errorf("server %s: %w", o.Server, err)
		}
	}
	return parentOnTimeline(o.Server, p, sys.Timeline, history)
}

// parentOnTimeline checks that the parent's end lies on its timeline in the
// history of timeline cur.
func parentOnTimeline(server string, p *catalog.BackupInfo, cur uint32, history []byte) error {
	end, err := wal.ParseLSN(p.EndXLog)
	if err != nil {
		return fmt.Errorf("server %s: %w: parent backup %s: end_xlog: %w", server, ErrIncremental, p.ID, err)
	}
	entries, err := wal.ParseHistory(history)
	if err != nil {
		return fmt.Errorf("server %s: %w: history of timeline %d: %w", server, ErrIncremental, cur, err)
	}
	if got := wal.TimelineForLSN(entries, cur, end); got != uint32(p.Timeline) {
		return fmt.Errorf("server %s: %w: parent backup %s is on timeline %d, which is not an ancestor of the server's timeline %d at %s",
			server, ErrIncremental, p.ID, p.Timeline, cur, p.EndXLog)
	}
	return nil
}

// uploadManifest sends the parent's manifest (UPLOAD_MANIFEST) on the
// replication connection that runs the incremental BASE_BACKUP next.
func uploadManifest(ctx context.Context, repl *postgres.ReplConn, manifest []byte) error {
	if _, err := repl.PgConn().CopyFrom(ctx, bytes.NewReader(manifest), "UPLOAD_MANIFEST"); err != nil {
		return fmt.Errorf("UPLOAD_MANIFEST: %w", err)
	}
	return nil
}

// prepareIncremental runs an incremental backup's checks before anything
// is written to the catalog, so a refused incremental leaves no FAILED
// backup behind. It returns nil for a full backup.
func prepareIncremental(ctx context.Context, o *Options, cat *catalog.Catalog, conn *postgres.Conn, st *postgres.Status) (*parent, error) {
	if !o.Incremental {
		return nil, nil
	}
	if err := checkIncrementalServer(ctx, o, conn, st); err != nil {
		return nil, err
	}
	p, err := resolveParent(cat, o, st)
	if err != nil {
		return nil, err
	}
	if err := checkParentTimeline(ctx, o, p.info); err != nil {
		return nil, err
	}
	return p, nil
}

// summarizeWALField is backup.info's summarize_wal: the server's setting on
// PostgreSQL 17+ (a later incremental checks its parent had it on), None
// before.
func summarizeWALField(ctx context.Context, conn *postgres.Conn, st *postgres.Status, log *slog.Logger) string {
	if st.ServerVersion < MinIncrementalVersion {
		return ""
	}
	on, err := summarizeWAL(ctx, conn)
	if err != nil {
		log.Warn("cannot read summarize_wal", "err", err)
		return ""
	}
	if on {
		return "on"
	}
	return "off"
}
