package checks

import (
	"context"
	"fmt"

	"github.com/cellar-backup/cellar/config"
)

// walStreamingDistinct: Barman's "(WAL streaming)" checks replace the plain
// slot check when wal_conninfo / wal_streaming_conninfo resolve to another
// server than conninfo / streaming_conninfo.
func walStreamingDistinct(c *config.Server) bool {
	return (c.WALConninfo.IsSet() && c.WALConninfo != c.Conninfo) ||
		(c.WALStreamingConninfo.IsSet() && c.WALStreamingConninfo != c.StreamingConninfo)
}

func hasWALStreaming(t Target) bool { return notPassive(t) && walStreamingDistinct(t.Config()) }

func slotResult(c *config.Server, server string, pg *PGStatus) Result {
	slot := c.SlotName
	if !pg.SlotChecked {
		return Unknownf("cannot read the state of replication slot '%s'", slot)
	}
	if !c.StreamingArchiver {
		if pg.Slot != nil {
			return Pass(fmt.Sprintf("WARNING: slot '%s' is initialised but not required by the current config", slot))
		}
		return Skip()
	}
	switch {
	case pg.Slot == nil:
		return Fail(fmt.Sprintf("replication slot '%s' doesn't exist. Please execute 'cellar receive-wal --create-slot %s'", slot, server))
	case pg.Slot.RestartLSN == nil:
		return Fail(fmt.Sprintf("slot '%s' not initialised: is 'receive-wal' running?", slot))
	case !pg.Slot.Active:
		return Fail(fmt.Sprintf("slot '%s' not active: is 'receive-wal' running?", slot))
	}
	return Pass("")
}

func probeReplicationSlot() Probe {
	return Probe{
		Name: "replication slot", Key: "replication_slot", Group: "postgres", Critical: true,
		Applies: func(t Target) bool {
			return notPassive(t) && t.Config().SlotName != "" && !walStreamingDistinct(t.Config())
		},
		Run: func(ctx context.Context, t Target) Result {
			pg, ok := pgStatus(ctx, t)
			if !ok {
				return Skip()
			}
			return slotResult(t.Config(), t.Name(), pg)
		},
	}
}

// walPG is the WAL streaming group's PostgreSQL status; errors make the
// probe fail with the connection error (there is no separate
// "PostgreSQL (WAL streaming)" check to report them).
func walPG(ctx context.Context, t Target) (*PGStatus, Result, bool) {
	pg, err := t.WALPostgresStatus(ctx)
	if isNotConfigured(err) {
		return nil, Skip(), false
	}
	if err != nil || pg == nil {
		r := Fail("cannot connect to wal_conninfo")
		if err != nil {
			r.Hint += ": " + err.Error()
		}
		return nil, r, false
	}
	return pg, Result{}, true
}

func probeWALMonitoring() Probe {
	return Probe{
		Name: "has monitoring privileges (WAL streaming)", Key: "wal_streaming_monitoring_privileges",
		Group: "wal_streaming", Critical: true, Applies: hasWALStreaming,
		Run: func(ctx context.Context, t Target) Result {
			pg, r, ok := walPG(ctx, t)
			if !ok {
				return r
			}
			if pg.IsSuperuser || pg.HasMonitoringPrivileges {
				return Pass("")
			}
			r = Fail("privileges for PostgreSQL monitoring functions are required (see documentation)")
			r.Check = "no access to monitoring functions"
			return r
		},
	}
}

func probeWALStreamingConn() Probe {
	return Probe{
		Name: "PostgreSQL streaming (WAL streaming)", Key: "wal_streaming_postgresql_streaming",
		Group: "wal_streaming", Critical: true, Applies: hasWALStreaming,
		Prefetch: func(ctx context.Context, t Target) { _, _ = t.WALStreamingStatus(ctx) },
		Run: func(ctx context.Context, t Target) Result {
			st, err := t.WALStreamingStatus(ctx)
			if isNotConfigured(err) {
				return Skip()
			}
			return streamingResult(st, err)
		},
	}
}

func probeWALStreamingWALLevel() Probe {
	return Probe{
		Name: "wal_level (WAL streaming)", Key: "wal_streaming_wal_level",
		Group: "wal_streaming", Critical: true, Applies: hasWALStreaming,
		Run: func(ctx context.Context, t Target) Result {
			pg, r, ok := walPG(ctx, t)
			if !ok {
				return r
			}
			return walLevelResult(pg)
		},
	}
}

func probeWALStreamingSystemID() Probe {
	return Probe{
		Name: "systemid coherence (WAL streaming)", Key: "wal_streaming_systemid_coherence",
		Group: "wal_streaming", Critical: true, Applies: hasWALStreaming,
		Run: func(ctx context.Context, t Target) Result {
			walpg, r, ok := walPG(ctx, t)
			if !ok {
				return r
			}
			ids := map[string]string{"wal_conninfo": walpg.SystemID}
			if st, err := t.WALStreamingStatus(ctx); err == nil && st != nil {
				ids["wal_streaming_conninfo"] = st.SystemID
			}
			if pg, ok := pgStatus(ctx, t); ok {
				ids["conninfo"] = pg.SystemID
			}
			return coherence(ids, nil)
		},
	}
}

func probeWALStreamingSlot() Probe {
	return Probe{
		Name: "replication slot (WAL streaming)", Key: "wal_streaming_replication_slot",
		Group: "wal_streaming", Critical: true,
		Applies: func(t Target) bool { return hasWALStreaming(t) && t.Config().SlotName != "" },
		Run: func(ctx context.Context, t Target) Result {
			pg, r, ok := walPG(ctx, t)
			if !ok {
				return r
			}
			return slotResult(t.Config(), t.Name(), pg)
		},
	}
}

// coherence compares the non-empty system ids; order fixes the hint's
// order (nil = sorted source names).
func coherence(ids map[string]string, order []string) Result {
	if order == nil {
		order = []string{"conninfo", "streaming_conninfo", "wal_conninfo", "wal_streaming_conninfo", "identity.json"}
	}
	var first, firstSrc string
	known := 0
	for _, src := range order {
		id := ids[src]
		if id == "" {
			continue
		}
		known++
		if first == "" {
			first, firstSrc = id, src
			continue
		}
		if id != first {
			return Fail(fmt.Sprintf("system ID mismatch: %s has %s, %s has %s", firstSrc, first, src, id))
		}
	}
	if known < 2 {
		return Pass("system ID not available for comparison")
	}
	return Pass("")
}

func probeSystemIDCoherence() Probe {
	return Probe{
		Name: "systemid coherence", Key: "systemid_coherence", Group: "identity", Critical: true,
		Run: func(ctx context.Context, t Target) Result {
			ids := map[string]string{}
			if notPassive(t) {
				if pg, ok := pgStatus(ctx, t); ok {
					ids["conninfo"] = pg.SystemID
				}
				if st, err := t.StreamingStatus(ctx); err == nil && st != nil {
					ids["streaming_conninfo"] = st.SystemID
				}
			}
			id, err := t.Identity()
			if err != nil {
				return Unknownf("cannot read identity.json: %v", err)
			}
			if id == nil {
				r := coherence(ids, nil)
				if r.Status == OK {
					r.Hint = "no system Id stored on disk"
				}
				return r
			}
			ids["identity.json"] = id.SystemID
			return coherence(ids, nil)
		},
	}
}

func probeReceiveWALRunning() Probe {
	return Probe{
		Name: "receive-wal running", Key: "receive_wal_running", Group: "archiver", Critical: true,
		Applies: func(t Target) bool { return t.Config().StreamingArchiver && notPassive(t) },
		Gauges: []Gauge{{
			Name: "receive_wal_lag_bytes",
			Help: "Bytes between PostgreSQL's current WAL position and the position receive-wal has flushed (or the replication slot's restart_lsn).",
		}},
		Run: func(ctx context.Context, t Target) Result {
			_, running, err := t.ReceiveWAL()
			if err != nil {
				return Unknownf("cannot read the receive-wal lock: %v", err)
			}
			r := Fail("See the Cellar log file for more details")
			if running {
				r = Pass("")
			}
			if pg, ok := pgStatus(ctx, t); ok && !pg.IsInRecovery {
				pos := pg.ReceiverFlushLSN
				if pos == nil && pg.Slot != nil {
					pos = pg.Slot.RestartLSN
				}
				if pos != nil && pg.CurrentLSN >= *pos {
					lag := float64(pg.CurrentLSN - *pos)
					r.Values = map[string]float64{"receive_wal_lag_bytes": lag}
					r.Perf = []Perf{{Label: "receive_wal_lag", Value: lag, UOM: "B", Min: Float(0)}}
				}
			}
			return r
		},
	}
}
