package retention

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestEvaluateInvariants checks, over many random catalogs, the safety
// properties every rule of §7 implies, independently of the exact labels.
func TestEvaluateInvariants(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(8, 7))
	statuses := []string{StatusDone, StatusDone, StatusDone, StatusFailed, StatusWaitingForWALs, StatusStarted, StatusEmpty}
	keeps := []string{"", "", "", "", KeepFull, KeepStandalone}
	policies := []string{"REDUNDANCY 1", "REDUNDANCY 2", "REDUNDANCY 4", "RECOVERY WINDOW OF 7 DAYS", "RECOVERY WINDOW OF 2 WEEKS", "RECOVERY WINDOW OF 1 MONTH"}
	for iter := range 3000 {
		p := mustPolicy(t, policies[rng.IntN(len(policies))], rng.IntN(4))
		n := rng.IntN(10)
		days := rng.Perm(60)[:n]
		var bs []Backup
		for _, d := range days {
			b := ago(d + 1)
			b.Status = statuses[rng.IntN(len(statuses))]
			b.Keep = keeps[rng.IntN(len(keeps))]
			if len(bs) > 0 && rng.IntN(4) == 0 {
				parent := rng.IntN(len(bs))
				if bs[parent].ID < b.ID {
					b = b.childOf(&bs[parent])
					b.Keep = ""
				}
			}
			bs = append(bs, b)
		}
		dels, decs := Plan(p, bs, testNow)
		point := p.RecoveryPoint(testNow)

		var doneRoots []int
		for i, b := range bs {
			if b.Status == StatusDone && !b.incremental() {
				doneRoots = append(doneRoots, i)
			}
		}
		slices.SortFunc(doneRoots, func(a, b int) int { return cmp.Compare(bs[b].ID, bs[a].ID) })
		kept := 0
		for _, i := range doneRoots {
			if decs[i].Label != LabelObsolete {
				kept++
			}
		}
		want := p.MinimumRedundancy
		if p.Kind == Redundancy {
			want = p.EffectiveRedundancy()
		}
		if want = min(want, len(doneRoots)); kept < want {
			t.Fatalf("iter %d %s: only %d DONE backups survive, want at least %d: %+v", iter, p, kept, want, decs)
		}
		if len(doneRoots) > 0 && decs[doneRoots[0]].Delete {
			t.Fatalf("iter %d %s: newest DONE backup %s deleted", iter, p, bs[doneRoots[0]].ID)
		}
		for i, b := range bs {
			d := decs[i]
			if !b.incremental() && d.Delete && (b.Status != StatusDone || b.Keep != "") {
				t.Fatalf("iter %d: %s (%s keep %q) deleted", iter, b.ID, b.Status, b.Keep)
			}
			if d.Label == LabelPotentiallyObsolete && d.Delete {
				t.Fatalf("iter %d: OBSOLETE* %s deleted", iter, b.ID)
			}
			if p.Kind == RecoveryWindow && !b.incremental() && !b.EndTime.Before(point) && d.Delete {
				t.Fatalf("iter %d: %s inside the window deleted", iter, b.ID)
			}
		}
		// A parent is deleted only after its children.
		byID := make(map[string]Backup, len(bs))
		for _, b := range bs {
			byID[b.ID] = b
		}
		for k, id := range dels {
			for _, later := range dels[k+1:] {
				if byID[later].ParentID == id || slices.Contains(byID[id].ChildrenIDs, later) {
					t.Fatalf("iter %d: parent %s deleted before its child %s", iter, id, later)
				}
			}
		}
	}
}
