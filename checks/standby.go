package checks

import (
	"context"
	"errors"
)

// The standby trio runs only when primary_conninfo is set (backups taken
// from a standby).

func hasPrimary(t Target) bool { return notPassive(t) && t.Config().PrimaryConninfo.IsSet() }

func isNotConfigured(err error) bool { return errors.Is(err, ErrNotConfigured) }

func probeIsStandby() Probe {
	return Probe{
		Name: "PostgreSQL server is standby", Key: "postgresql_server_is_standby", Group: "postgres",
		Critical: false, Applies: hasPrimary,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := pgStatus(ctx, t)
			if !ok {
				return Skip()
			}
			if pg.IsInRecovery {
				return Pass("")
			}
			return Fail("conninfo should point to a standby server if primary_conninfo is set")
		},
	}
}

func probePrimaryNotStandby() Probe {
	return Probe{
		Name: "Primary server is not a standby", Key: "primary_server_is_not_a_standby", Group: "postgres",
		Critical: true, Applies: hasPrimary,
		Run: func(ctx context.Context, t Target) Result {
			if _, ok := pgStatus(ctx, t); !ok {
				return Skip()
			}
			primary, err := t.PrimaryStatus(ctx)
			if isNotConfigured(err) {
				return Skip()
			}
			if err != nil || primary == nil {
				r := Fail("cannot connect to the primary server")
				if err != nil {
					r.Hint += ": " + err.Error()
				}
				return r
			}
			if primary.IsInRecovery {
				return Fail("primary_conninfo should point to a primary server, not a standby")
			}
			return Pass("")
		},
	}
}

func probeSameSystemID() Probe {
	return Probe{
		Name: "Primary and standby have same system ID", Key: "primary_and_standby_have_same_system_id",
		Group: "postgres", Critical: true, Applies: hasPrimary,
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := pgStatus(ctx, t)
			if !ok {
				return Skip()
			}
			primary, err := t.PrimaryStatus(ctx)
			if err != nil || primary == nil {
				return Skip() // reported by "Primary server is not a standby"
			}
			if pg.SystemID != "" && pg.SystemID == primary.SystemID {
				return Pass("")
			}
			return Fail("primary_conninfo and conninfo should point to primary and standby servers which share the same system identifier")
		},
	}
}
