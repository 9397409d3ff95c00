package checks

import (
	"context"
	"fmt"
)

// Barman's check_postgres group: skipped on passive nodes.

func notPassive(t Target) bool { return !t.Config().IsPassive() }

// pgStatus returns the PostgreSQL status, or false when it could not be
// read: the `PostgreSQL` probe reports that, the rest of the group stays
// silent (as in Barman).
func pgStatus(ctx context.Context, t Target) (*PGStatus, bool) {
	pg, err := t.PostgresStatus(ctx)
	if err != nil || pg == nil {
		return nil, false
	}
	return pg, true
}

const minPostgresVersion = 90600

func versionText(pg *PGStatus) string {
	if pg.ServerVersionText != "" {
		return pg.ServerVersionText
	}
	v := pg.ServerVersion
	if v >= 100000 {
		return fmt.Sprintf("%d.%d", v/10000, v%10000)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

func probePostgreSQL() Probe {
	return Probe{
		Name: "PostgreSQL", Key: "postgresql", Group: "postgres", Critical: true,
		Applies:  notPassive,
		Prefetch: func(ctx context.Context, t Target) { _, _ = t.PostgresStatus(ctx) },
		Run: func(ctx context.Context, t Target) Result {
			pg, err := t.PostgresStatus(ctx)
			if err != nil || pg == nil || pg.ServerVersion == 0 {
				// Barman prints no hint; the reason goes to Detail.
				r := Fail("")
				if err != nil {
					r.Detail = err.Error()
				}
				return r
			}
			if pg.ServerVersion < minPostgresVersion {
				return Fail(fmt.Sprintf("unsupported version: PostgreSQL server is too old (%s < 9.6.0)", versionText(pg)))
			}
			return Pass("")
		},
	}
}

func probeBackupPrivileges() Probe {
	return Probe{
		Name: "superuser or standard user with backup privileges", Key: "backup_privileges",
		Group: "postgres", Critical: true, Applies: notPassive,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := pgStatus(ctx, t)
			if !ok {
				return Skip()
			}
			if pg.IsSuperuser || pg.HasBackupPrivileges {
				return Pass("")
			}
			r := Fail("privileges for PostgreSQL backup functions are required (see documentation)")
			r.Check = "no access to backup functions"
			return r
		},
	}
}

// hasStreaming: Barman has a streaming connection whenever
// streaming_conninfo resolves to something (it defaults to conninfo).
func hasStreaming(t Target) bool {
	c := t.Config()
	return notPassive(t) && (c.StreamingConninfo.IsSet() || c.Conninfo.IsSet())
}

func streamingResult(st *StreamingStatus, err error) Result {
	if err != nil {
		return Fail(err.Error())
	}
	if st == nil {
		return Fail("IDENTIFY_SYSTEM returned nothing")
	}
	return Pass("")
}

func probePostgreSQLStreaming() Probe {
	return Probe{
		Name: "PostgreSQL streaming", Key: "postgresql_streaming", Group: "postgres", Critical: true,
		Applies:  hasStreaming,
		Prefetch: func(ctx context.Context, t Target) { _, _ = t.StreamingStatus(ctx) },
		Run: func(ctx context.Context, t Target) Result {
			if _, ok := pgStatus(ctx, t); !ok {
				return Skip()
			}
			st, err := t.StreamingStatus(ctx)
			if isNotConfigured(err) {
				return Skip()
			}
			return streamingResult(st, err)
		},
	}
}

func walLevelResult(pg *PGStatus) Result {
	if pg.WALLevel == "minimal" {
		return Fail("please set it to a higher level than 'minimal'")
	}
	return Pass("")
}

func probeWALLevel() Probe {
	return Probe{
		Name: "wal_level", Key: "wal_level", Group: "postgres", Critical: true, Applies: notPassive,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := pgStatus(ctx, t)
			if !ok {
				return Skip()
			}
			return walLevelResult(pg)
		},
	}
}
