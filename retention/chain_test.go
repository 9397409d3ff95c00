package retention

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestEvaluateChains(t *testing.T) {
	t.Parallel()
	runEvalCases(t, []evalCase{
		{name: "obsolete chain goes whole, children first", policy: "REDUNDANCY 1",
			in: func() []Backup {
				root, c1, c2 := chain(10)
				newer := ago(3)
				kid := ago(2).childOf(&newer)
				return []Backup{root, c1, c2, newer, kid}
			},
			want: "OBSOLETE OBSOLETE OBSOLETE VALID VALID", del: []int{2, 1, 0}},
		{name: "a running incremental keeps its obsolete chain", policy: "REDUNDANCY 1",
			in: func() []Backup {
				root, c1, c2 := chain(10)
				c2 = c2.status(StatusStarted)
				return []Backup{root, c1, c2, ago(3)}
			},
			want: "OBSOLETE OBSOLETE OBSOLETE VALID", del: nil,
			reason: []string{"not deleted: incremental backup", "not deleted: incremental backup"}},
		{name: "interrupted delete of a parent resumes with its children", policy: "REDUNDANCY 2",
			in: func() []Backup {
				root, c1, c2 := chain(10)
				return []Backup{root.pending(), c1, c2, ago(3)}
			},
			want: "OBSOLETE OBSOLETE OBSOLETE VALID", del: []int{2, 1, 0},
			reason: []string{"", "interrupted delete is being resumed"}},
		{name: "a chain inside the policy is kept whole", policy: "REDUNDANCY 2",
			in: func() []Backup {
				root, c1, c2 := chain(10)
				return []Backup{ago(20), root, c1, c2, ago(3)}
			},
			want: "OBSOLETE VALID VALID VALID VALID", del: []int{0}},
	})
}

func TestDeleteOrder(t *testing.T) {
	t.Parallel()
	root, c1, c2 := chain(10)
	side := ago(7).childOf(&c1)
	bs := []Backup{root, c1, c2, side, ago(3)}
	tests := []struct {
		id           string
		withChildren bool
		want         []string
		err          error
		names        []string
	}{
		{root.ID, false, nil, ErrHasChildren, []string{c1.ID, c2.ID, side.ID}},
		{root.ID, true, []string{c2.ID, side.ID, c1.ID, root.ID}, nil, nil},
		{c1.ID, false, nil, ErrHasChildren, []string{c2.ID, side.ID}},
		{c1.ID, true, []string{c2.ID, side.ID, c1.ID}, nil, nil},
		{c2.ID, false, []string{c2.ID}, nil, nil},
		{"20200101T000000", true, nil, ErrUnknownBackup, nil},
	}
	for _, tc := range tests {
		got, err := DeleteOrder(bs, tc.id, 0, tc.withChildren)
		if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
			t.Errorf("DeleteOrder(%s, with children %v) = %v, %v; want %v, %v", tc.id, tc.withChildren, got, err, tc.want, tc.err)
		}
		for _, n := range tc.names {
			if err == nil || !strings.Contains(err.Error(), n) {
				t.Errorf("DeleteOrder(%s): error %v does not name child %s", tc.id, err, n)
			}
		}
	}
}
