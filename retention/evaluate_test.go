package retention

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// now is the fixed evaluation time of every table row.
var testNow = time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)

// ago returns a DONE full backup started d days before testNow; it ends
// one hour after it starts. Its ID encodes the start, so IDs sort by age.
func ago(d int) Backup {
	start := testNow.AddDate(0, 0, -d)
	return Backup{ID: start.Format("20060102T150405"), Status: StatusDone, EndTime: start.Add(time.Hour), Type: "full"}
}

func (b Backup) status(s string) Backup { b.Status = s; return b }
func (b Backup) keep(k string) Backup   { b.Keep = k; return b }
func (b Backup) endAt(t time.Time) Backup {
	b.EndTime = t
	return b
}

func (b Backup) pending() Backup { b.DeletePending = true; return b }

// childOf makes b an incremental of parent (links both ways, as
// backup.info does).
func (b Backup) childOf(parent *Backup) Backup {
	b.ParentID, b.Type = parent.ID, "incremental"
	parent.ChildrenIDs = append(parent.ChildrenIDs, b.ID)
	return b
}

func mustPolicy(t *testing.T, s string, min int) Policy {
	t.Helper()
	if s == "" {
		return Policy{MinimumRedundancy: min}
	}
	p, err := ParsePolicy(s, min)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type evalCase struct {
	name   string
	policy string
	min    int
	in     func() []Backup
	want   string // labels in input order, space separated
	del    []int  // input indexes in expected deletion order
	reason []string
}

func list(b ...Backup) func() []Backup { return func() []Backup { return b } }

func runEvalCases(t *testing.T, cases []evalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := tc.in()
			orig := cloneBackups(in)
			p := mustPolicy(t, tc.policy, tc.min)
			dels, decs := Plan(p, in, testNow)
			if len(decs) != len(in) {
				t.Fatalf("%d decisions for %d backups", len(decs), len(in))
			}
			var got []string
			for i, d := range decs {
				got = append(got, string(d.Label))
				if d.ID != in[i].ID {
					t.Errorf("decision %d is for %s, want %s (input order)", i, d.ID, in[i].ID)
				}
				if d.Reason == "" {
					t.Errorf("decision %d (%s) has no reason", i, d.ID)
				}
				// OBSOLETE is deleted unless a surviving or running
				// incremental of the chain protects it.
				if d.Delete && d.Label != LabelObsolete || !d.Delete && d.Label == LabelObsolete && !strings.Contains(d.Reason, "not deleted") && in[i].Status != StatusStarted {
					t.Errorf("decision %s: Delete %v with label %s (%s)", d.ID, d.Delete, d.Label, d.Reason)
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("labels\n got %s\nwant %s", g, tc.want)
				for _, d := range decs {
					t.Logf("  %s %s: %s", d.ID, d.Label, d.Reason)
				}
			}
			var want []string
			for _, i := range tc.del {
				want = append(want, in[i].ID)
			}
			if !slices.Equal(dels, want) {
				t.Errorf("deletions %v, want %v", dels, want)
			}
			for i, sub := range tc.reason {
				if sub != "" && !strings.Contains(decs[i].Reason, sub) {
					t.Errorf("reason of %s = %q, want it to contain %q", decs[i].ID, decs[i].Reason, sub)
				}
			}
			if !equalBackups(in, orig) {
				t.Errorf("Plan modified its input")
			}
			// Evaluate is deterministic and agrees with Plan.
			if again := Evaluate(p, in, testNow); !slices.Equal(again, decs) {
				t.Errorf("Evaluate differs from Plan's decisions")
			}
		})
	}
}

func cloneBackups(in []Backup) []Backup {
	out := slices.Clone(in)
	for i := range out {
		out[i].ChildrenIDs = slices.Clone(in[i].ChildrenIDs)
	}
	return out
}

func equalBackups(a, b []Backup) bool { return reflect.DeepEqual(a, b) }

// chain builds root <- c1 <- c2 (incremental chain) started d, d-1, d-2
// days ago.
func chain(d int) (root, c1, c2 Backup) {
	root, c1, c2 = ago(d), ago(d-1), ago(d-2)
	c1 = c1.childOf(&root)
	c2 = c2.childOf(&c1)
	return root, c1, c2
}

func TestEvaluateRedundancy(t *testing.T) {
	t.Parallel()
	sameEnd := testNow.Add(-48 * time.Hour)
	runEvalCases(t, []evalCase{
		{name: "empty list", policy: "REDUNDANCY 2", in: list(), want: ""},
		{name: "n most recent DONE are valid", policy: "REDUNDANCY 2",
			in:   list(ago(3), ago(2), ago(1)),
			want: "OBSOLETE VALID VALID", del: []int{0},
			reason: []string{"obsolete: DONE backup #3", "one of the 2 most recent DONE backups", "#1"}},
		{name: "output keeps input order; oldest deleted first", policy: "REDUNDANCY 1",
			in:   list(ago(2), ago(5), ago(1), ago(9)),
			want: "OBSOLETE OBSOLETE VALID OBSOLETE", del: []int{3, 1, 0}},
		{name: "single backup is valid", policy: "REDUNDANCY 1", in: list(ago(400)), want: "VALID"},
		{name: "minimum_redundancy raises n", policy: "REDUNDANCY 1", min: 3,
			in:   list(ago(4), ago(3), ago(2), ago(1)),
			want: "OBSOLETE VALID VALID VALID", del: []int{0},
			reason: []string{"", "raised to minimum_redundancy 3"}},
		{name: "minimum_redundancy larger than the number of backups", policy: "REDUNDANCY 1", min: 5,
			in: list(ago(2), ago(1)), want: "VALID VALID"},
		{name: "FAILED never counts and is never deleted", policy: "REDUNDANCY 1",
			in:   list(ago(9).status(StatusFailed), ago(3), ago(2), ago(1).status(StatusFailed)),
			want: "- OBSOLETE VALID -", del: []int{1},
			reason: []string{"FAILED backups never count", "", "", "FAILED"}},
		{name: "WAITING_FOR_WALS does not count", policy: "REDUNDANCY 1",
			in:   list(ago(3), ago(2), ago(1).status(StatusWaitingForWALs)),
			want: "OBSOLETE VALID -", del: []int{0},
			reason: []string{"", "", "WAITING_FOR_WALS"}},
		{name: "other statuses are labelled -", policy: "REDUNDANCY 1",
			in:   list(ago(5).status(StatusEmpty), ago(4).status(StatusStarted), ago(3).status(StatusSyncing), ago(2)),
			want: "- - - VALID", reason: []string{"EMPTY"}},
		{name: "only FAILED backups: nothing deleted", policy: "REDUNDANCY 1",
			in: list(ago(2).status(StatusFailed), ago(1).status(StatusFailed)), want: "- -"},
		{name: "keep full takes a redundancy slot", policy: "REDUNDANCY 2",
			in:   list(ago(3), ago(2), ago(1).keep(KeepFull)),
			want: "OBSOLETE VALID KEEP:FULL", del: []int{0},
			reason: []string{"", "", `keep annotation "full"`}},
		{name: "keep standalone beyond the policy is kept", policy: "REDUNDANCY 1",
			in:   list(ago(3), ago(2).keep(KeepStandalone), ago(1)),
			want: "OBSOLETE KEEP:STANDALONE VALID", del: []int{0},
			reason: []string{"", "beyond the policy"}},
		{name: "unknown keep target is treated as full", policy: "REDUNDANCY 1",
			in: list(ago(2).keep("forever"), ago(1)), want: "KEEP:FULL VALID"},
		{name: "all backups kept", policy: "REDUNDANCY 1",
			in: list(ago(2).keep(KeepFull), ago(1).keep(KeepStandalone)), want: "KEEP:FULL KEEP:STANDALONE"},
		{name: "ties on end time are ordered by ID", policy: "REDUNDANCY 1",
			in:   list(ago(2).endAt(sameEnd), ago(3).endAt(sameEnd)),
			want: "VALID OBSOLETE", del: []int{1}},
		{name: "incrementals do not count and inherit their root", policy: "REDUNDANCY 1",
			in: func() []Backup {
				oldRoot, newRoot := ago(10), ago(5)
				oldKid := ago(9).childOf(&oldRoot)
				newKid := ago(4).childOf(&newRoot)
				return []Backup{oldRoot, oldKid, newRoot, newKid}
			},
			want: "OBSOLETE OBSOLETE VALID VALID", del: []int{1, 0},
			reason: []string{"", "from root backup"}},
		{name: "incremental chain deleted deepest first", policy: "REDUNDANCY 1",
			in: func() []Backup {
				r, c1, c2 := chain(10)
				return []Backup{r, c1, c2, ago(1)}
			},
			want: "OBSOLETE OBSOLETE OBSOLETE VALID", del: []int{2, 1, 0}},
		{name: "children of KEEP:FULL root beyond the policy are valid", policy: "REDUNDANCY 1",
			in: func() []Backup {
				r, c1, c2 := chain(10)
				r = r.keep(KeepFull)
				return []Backup{r, c1, c2, ago(1)}
			},
			want: "KEEP:FULL VALID VALID VALID"},
		{name: "children of KEEP:STANDALONE root within the policy are valid", policy: "REDUNDANCY 2",
			in: func() []Backup {
				r, c1, c2 := chain(10)
				r = r.keep(KeepStandalone)
				return []Backup{r, c1, c2, ago(1)}
			},
			want: "KEEP:STANDALONE VALID VALID VALID"},
		{name: "children of KEEP:STANDALONE root beyond the policy are obsolete", policy: "REDUNDANCY 1",
			in: func() []Backup {
				r, c1, c2 := chain(10)
				r = r.keep(KeepStandalone)
				return []Backup{r, c1, c2, ago(1)}
			},
			want: "KEEP:STANDALONE OBSOLETE OBSOLETE VALID", del: []int{2, 1}},
		{name: "children of a FAILED root are labelled -", policy: "REDUNDANCY 1",
			in: func() []Backup {
				r, c1, c2 := chain(10)
				r = r.status(StatusFailed)
				return []Backup{r, c1, c2}
			},
			want: "- - -"},
		{name: "FAILED child of an obsolete root goes with it", policy: "REDUNDANCY 1",
			in: func() []Backup {
				r, c1, _ := chain(10)
				c1 = c1.status(StatusFailed)
				return []Backup{ago(1), r, c1}
			},
			want: "VALID OBSOLETE OBSOLETE", del: []int{2, 1}},
		{name: "incremental whose parent is missing is never deleted", policy: "REDUNDANCY 1",
			in: func() []Backup {
				r, c1, _ := chain(10)
				_ = r
				return []Backup{c1, ago(1)}
			},
			want: "- VALID", reason: []string{"no evaluated root"}},
		{name: "child linked only through children_backup_ids", policy: "REDUNDANCY 1",
			in: func() []Backup {
				r, c := ago(10), ago(9)
				r.ChildrenIDs = []string{c.ID}
				c.Type = "incremental"
				return []Backup{r, c, ago(1)}
			},
			want: "OBSOLETE OBSOLETE VALID", del: []int{1, 0}},
		{name: "parent cycle does not hang", policy: "REDUNDANCY 1",
			in: func() []Backup {
				a, b := ago(10), ago(9)
				a.ParentID, b.ParentID = b.ID, a.ID
				return []Backup{a, b, ago(1)}
			},
			want: "- - VALID"},
		{name: "delete_this forces OBSOLETE", policy: "REDUNDANCY 3",
			in:   list(ago(3).pending(), ago(2), ago(1)),
			want: "OBSOLETE VALID VALID", del: []int{0},
			reason: []string{"interrupted delete"}},
		{name: "a backup being deleted takes no redundancy slot", policy: "REDUNDANCY 1",
			in:   list(ago(3), ago(2), ago(1).pending()),
			want: "OBSOLETE VALID OBSOLETE", del: []int{0, 2}},
		{name: "duplicate IDs do not duplicate deletions", policy: "REDUNDANCY 1",
			in:   list(ago(3), ago(3), ago(1)),
			want: "OBSOLETE OBSOLETE VALID", del: []int{0}},
		{name: "no policy: nothing is obsolete", policy: "",
			in:   list(ago(30), ago(20).keep(KeepFull), ago(10).status(StatusFailed)),
			want: "VALID KEEP:FULL -"},
	})
}

func TestEvaluateRecoveryWindow(t *testing.T) {
	t.Parallel()
	point := testNow.AddDate(0, 0, -7)
	runEvalCases(t, []evalCase{
		{name: "empty list", policy: "RECOVERY WINDOW OF 7 DAYS", in: list(), want: ""},
		{name: "all inside the window", policy: "RECOVERY WINDOW OF 7 DAYS",
			in: list(ago(6), ago(3), ago(1)), want: "VALID VALID VALID",
			reason: []string{"inside the recovery window of 7 DAYS"}},
		{name: "newest backup before the window start stays valid", policy: "RECOVERY WINDOW OF 7 DAYS",
			in:   list(ago(30), ago(20), ago(10), ago(3), ago(1)),
			want: "OBSOLETE OBSOLETE VALID VALID VALID", del: []int{0, 1},
			reason: []string{"obsolete: older than the recovery window (ended 2026-10-04 13:00:00 UTC, window starts 2026-10-27 12:00:00 UTC) and 3 newer backups satisfy minimum_redundancy 0",
				"", "needed to recover to the window start"}},
		{name: "the only backup is never deleted", policy: "RECOVERY WINDOW OF 7 DAYS",
			in: list(ago(100)), want: "VALID"},
		{name: "minimum_redundancy makes older backups potentially obsolete", policy: "RECOVERY WINDOW OF 7 DAYS", min: 3,
			in:   list(ago(30), ago(20), ago(10), ago(1)),
			want: "OBSOLETE OBSOLETE* VALID VALID", del: []int{0},
			reason: []string{"", "only 2 newer backups count toward minimum_redundancy 3; never deleted automatically"}},
		{name: "minimum_redundancy larger than the number of backups", policy: "RECOVERY WINDOW OF 7 DAYS", min: 10,
			in: list(ago(40), ago(30), ago(20), ago(10)), want: "OBSOLETE* OBSOLETE* OBSOLETE* VALID"},
		{name: "keep annotations override OBSOLETE", policy: "RECOVERY WINDOW OF 7 DAYS",
			in:   list(ago(40), ago(30).keep(KeepStandalone), ago(20).keep(KeepFull), ago(10), ago(1)),
			want: "OBSOLETE KEEP:STANDALONE KEEP:FULL VALID VALID", del: []int{0}},
		{name: "keep annotation overrides OBSOLETE* and counts toward minimum_redundancy", policy: "RECOVERY WINDOW OF 7 DAYS", min: 3,
			in:   list(ago(40), ago(30), ago(20).keep(KeepFull), ago(10), ago(1)),
			want: "OBSOLETE OBSOLETE KEEP:FULL VALID VALID", del: []int{0, 1}},
		{name: "keep inside the window", policy: "RECOVERY WINDOW OF 7 DAYS",
			in: list(ago(20), ago(2).keep(KeepStandalone)), want: "VALID KEEP:STANDALONE"},
		{name: "ending exactly at the window start is inside", policy: "RECOVERY WINDOW OF 7 DAYS",
			in:   list(ago(30), ago(20), ago(9).endAt(point)),
			want: "OBSOLETE VALID VALID", del: []int{0}},
		{name: "one nanosecond before the window start is the boundary", policy: "RECOVERY WINDOW OF 7 DAYS",
			in:   list(ago(30), ago(20), ago(9).endAt(point.Add(-1))),
			want: "OBSOLETE OBSOLETE VALID", del: []int{0, 1}},
		{name: "FAILED and WAITING_FOR_WALS neither count nor end the window", policy: "RECOVERY WINDOW OF 7 DAYS",
			in:   list(ago(30), ago(20), ago(15).status(StatusFailed), ago(1).status(StatusWaitingForWALs)),
			want: "OBSOLETE VALID - -", del: []int{0}},
		// 3 calendar months before testNow are 92 days; Barman's are 93.
		{name: "a month is 31 days", policy: "RECOVERY WINDOW OF 3 MONTHS",
			in:   list(ago(120), ago(100), ago(93).endAt(testNow.AddDate(0, 0, -93).Add(time.Hour))),
			want: "OBSOLETE VALID VALID", del: []int{0}},
		{name: "31-day-old end is inside a 1 month window", policy: "RECOVERY WINDOW OF 1 MONTH",
			in:   list(ago(60), ago(40), ago(31).endAt(testNow.AddDate(0, 0, -31).Add(time.Minute))),
			want: "OBSOLETE VALID VALID", del: []int{0}},
		{name: "weeks", policy: "RECOVERY WINDOW OF 2 WEEKS",
			in:   list(ago(30), ago(16), ago(13)),
			want: "OBSOLETE VALID VALID", del: []int{0}},
		{name: "ties on end time are ordered by ID", policy: "RECOVERY WINDOW OF 7 DAYS",
			in:   list(ago(20).endAt(point.Add(-time.Hour)), ago(21).endAt(point.Add(-time.Hour))),
			want: "VALID OBSOLETE", del: []int{1}},
		{name: "children inherit the root label", policy: "RECOVERY WINDOW OF 7 DAYS",
			in: func() []Backup {
				r1, c1, c2 := chain(30)
				r2, c3, _ := chain(10)
				return []Backup{r1, c1, c2, r2, c3}
			},
			want: "OBSOLETE OBSOLETE OBSOLETE VALID VALID", del: []int{2, 1, 0}},
		{name: "children of KEEP:STANDALONE root inside the window are valid", policy: "RECOVERY WINDOW OF 7 DAYS",
			in: func() []Backup {
				r, c1, _ := chain(5)
				r = r.keep(KeepStandalone)
				return []Backup{ago(20), r, c1}
			},
			want: "VALID KEEP:STANDALONE VALID"},
		// Barman checks "found" after the root itself, so the boundary
		// root's standalone children are already obsolete.
		{name: "children of a boundary KEEP:STANDALONE root are obsolete", policy: "RECOVERY WINDOW OF 7 DAYS",
			in: func() []Backup {
				r, c1, _ := chain(10)
				r = r.keep(KeepStandalone)
				return []Backup{r, c1, ago(1)}
			},
			want: "KEEP:STANDALONE OBSOLETE VALID", del: []int{1}},
		{name: "children of KEEP:FULL root outside the window are valid", policy: "RECOVERY WINDOW OF 7 DAYS",
			in: func() []Backup {
				r, c1, _ := chain(30)
				r = r.keep(KeepFull)
				return []Backup{r, c1, ago(10), ago(1)}
			},
			want: "KEEP:FULL VALID VALID VALID"},
		{name: "children of a potentially obsolete root are potentially obsolete", policy: "RECOVERY WINDOW OF 7 DAYS", min: 2,
			in: func() []Backup {
				r, c1, _ := chain(30)
				return []Backup{r, c1, ago(10)}
			},
			want: "OBSOLETE* OBSOLETE* VALID"},
	})
}

func TestCheckDelete(t *testing.T) {
	t.Parallel()
	r, c1, _ := chain(10)
	bs := []Backup{r, c1, ago(5).keep(KeepFull), ago(3).status(StatusFailed), ago(1)}
	for _, tc := range []struct {
		id   string
		min  int
		want error
	}{
		{bs[0].ID, 0, nil},
		{bs[0].ID, 2, nil},
		{bs[0].ID, 3, ErrMinimumRedundancy}, // 3 DONE roots (the kept one counts)
		{bs[1].ID, 9, nil},                  // incrementals are not protected by the minimum
		{bs[2].ID, 0, ErrKept},
		{bs[3].ID, 9, nil}, // FAILED backups can always be deleted
		{"20000101T000000", 0, ErrUnknownBackup},
	} {
		err := CheckDelete(bs, tc.id, tc.min)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("CheckDelete(%s, min %d) = %v, want %v", tc.id, tc.min, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), tc.id) {
			t.Errorf("error %q does not name backup %s", err, tc.id)
		}
	}
}
