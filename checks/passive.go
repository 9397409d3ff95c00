package checks

import (
	"context"
	"errors"
	"strings"
)

// Passive nodes (primary_ssh_command set) never connect to PostgreSQL; their
// executor check is `ssh` to the primary node (Barman's passive executor).

func isPassive(t Target) bool { return t.Config().IsPassive() }

// Gauge names of the passive lag, exported as cellar_<name>{server}.
const (
	GaugePassiveLagSeconds  = "passive_sync_lag_seconds"
	GaugePassiveLagSegments = "passive_sync_lag_segments"
)

func probeSSH() Probe {
	return Probe{
		Name: "ssh", Key: "ssh", Group: "executor", Critical: true,
		Applies: isPassive,
		Gauges: []Gauge{
			{Name: GaugePassiveLagSeconds, Help: "Passive node: seconds of WAL the local copy trails the primary by, as of the last sync-info answer (0 when in step)."},
			{Name: GaugePassiveLagSegments, Help: "Passive node: WAL files the primary listed at the last sync-info that are not copied locally yet."},
		},
		Run: func(ctx context.Context, t Target) Result {
			st, err := t.Passive(ctx)
			if errors.Is(err, ErrNotConfigured) {
				return Skip()
			}
			if err != nil || st == nil {
				r := Fail("cannot query the primary node")
				if err != nil {
					r.Hint = oneLine(err.Error())
				}
				return r
			}
			var r Result
			if st.PrimaryErr != nil {
				// Barman's hint on failure is the ssh error itself.
				r = Fail(oneLine(st.PrimaryErr.Error()))
			} else {
				r = Pass("Barman primary node")
			}
			if st.LagKnown {
				r.Values = map[string]float64{
					GaugePassiveLagSeconds:  st.LagSeconds,
					GaugePassiveLagSegments: float64(st.LagSegments),
				}
				r.Perf = []Perf{
					{Label: "sync_lag", Value: st.LagSeconds, UOM: "s", Min: Float(0)},
					{Label: "sync_lag_segments", Value: float64(st.LagSegments), Min: Float(0)},
				}
			}
			return r
		},
	}
}

// oneLine folds a multi-line error into one check hint.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
