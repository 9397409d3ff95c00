package checks

import (
	"context"
	"slices"
)

// minIncrementalVersion is the first server_version_num with WAL
// summarization (summarize_wal), which incremental backups need.
const minIncrementalVersion = 170000

// usesIncrementals reports whether the server's catalog holds incremental
// backups: such a server is configured for incrementals, and a next one
// (cellar backup --incremental) needs summarize_wal on.
func usesIncrementals(ctx context.Context, t Target) (bool, error) {
	backups, err := t.Backups(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(backups, func(b Backup) bool { return b.ParentID != "" }), nil
}

// probeSummarizeWAL checks summarize_wal on a PostgreSQL 17+ server whose
// catalog has incremental backups. It is not critical: full backups do not
// need it, so the preflight of a full backup must not stop on it (an
// incremental backup refuses by itself, naming the setting).
func probeSummarizeWAL() Probe {
	return Probe{
		Name: "summarize_wal", Key: "summarize_wal", Group: "postgres",
		Critical: false, Applies: notPassive,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := pgStatus(ctx, t)
			if !ok || pg.ServerVersion < minIncrementalVersion {
				return Skip()
			}
			uses, err := usesIncrementals(ctx, t)
			if err != nil {
				return Fail("cannot read the backup catalog: " + err.Error())
			}
			if !uses {
				return Skip()
			}
			if pg.SummarizeWAL != "on" {
				return Fail("summarize_wal is off: incremental backups need summarize_wal = on in postgresql.conf (reload to apply)")
			}
			return Pass("")
		},
	}
}
