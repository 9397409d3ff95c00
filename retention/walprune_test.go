package retention

import (
	"fmt"
	"slices"
	"testing"
)

// seg names segment n of log 0 on timeline tli.
func seg(tli, n uint32) string { return fmt.Sprintf("%08X%08X%08X", tli, 0, n) }

// segs returns seg(1, from..to) inclusive.
func segs(from, to uint32) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, seg(1, n))
	}
	return out
}

func bw(id, status string, begin, end uint32) Backup {
	return Backup{ID: id, Status: status, BeginWAL: seg(1, begin), EndWAL: seg(1, end)}
}

func TestPrunableWAL(t *testing.T) {
	t.Parallel()
	const segSize = 16 << 20
	archive := append(append([]string{"00000001.history", "00000002.history"}, segs(1, 20)...),
		seg(1, 3)+".00000028.backup", seg(1, 8)+".00000028.backup", seg(1, 2)+".partial", "garbage",
		"000000010000000000000100") // segment 0x100 cannot exist with 16 MiB segments
	for _, tc := range []struct {
		name      string
		remaining []Backup
		wal       []string
		segSize   uint64
		want      []string
	}{
		{name: "no backups left: nothing pruned", wal: archive, segSize: segSize},
		{name: "a backup of unknown status keeps all WAL", wal: segs(1, 12),
			remaining: []Backup{bw("20261001T000000", "", 3, 4), bw("20261005T000000", StatusDone, 10, 11)}},
		{name: "older than the oldest backup", segSize: segSize, wal: archive,
			remaining: []Backup{bw("20261002T000000", StatusDone, 8, 9), bw("20261001T000000", StatusDone, 5, 6)},
			want:      append(segs(1, 4), seg(1, 3)+".00000028.backup", seg(1, 2)+".partial")},
		{name: "keep:full backup keeps everything after its start", wal: segs(1, 12),
			remaining: []Backup{func() Backup { b := bw("20261001T000000", StatusDone, 8, 9); b.Keep = KeepFull; return b }(), bw("20261005T000000", StatusDone, 11, 11)},
			want:      segs(1, 7)},
		{name: "leading keep:standalone keeps only its own range", wal: segs(1, 12),
			remaining: []Backup{func() Backup { b := bw("20261001T000000", StatusDone, 3, 4); b.Keep = KeepStandalone; return b }(), bw("20261005T000000", StatusDone, 10, 11)},
			want:      append(segs(1, 2), segs(5, 9)...)},
		{name: "several standalone, then a normal backup", wal: segs(1, 14),
			remaining: []Backup{
				func() Backup { b := bw("20261001T000000", StatusDone, 2, 2); b.Keep = KeepStandalone; return b }(),
				func() Backup { b := bw("20261002T000000", StatusDone, 5, 6); b.Keep = KeepStandalone; return b }(),
				bw("20261005T000000", StatusDone, 12, 13)},
			want: []string{seg(1, 1), seg(1, 3), seg(1, 4), seg(1, 7), seg(1, 8), seg(1, 9), seg(1, 10), seg(1, 11)}},
		{name: "standalone after the anchor protects nothing extra", wal: segs(1, 12),
			remaining: []Backup{bw("20261001T000000", StatusDone, 6, 6), func() Backup { b := bw("20261005T000000", StatusDone, 9, 9); b.Keep = KeepStandalone; return b }()},
			want:      segs(1, 5)},
		{name: "only standalone backups: the newest is the anchor", wal: segs(1, 12),
			remaining: []Backup{
				func() Backup { b := bw("20261001T000000", StatusDone, 3, 4); b.Keep = KeepStandalone; return b }(),
				func() Backup { b := bw("20261005T000000", StatusDone, 9, 10); b.Keep = KeepStandalone; return b }()},
			want: append(segs(1, 2), segs(5, 8)...)},
		{name: "FAILED backups protect nothing", wal: segs(1, 8),
			remaining: []Backup{bw("20261001T000000", StatusFailed, 2, 3), bw("20261005T000000", StatusDone, 6, 7)},
			want:      segs(1, 5)},
		{name: "WAITING_FOR_WALS backup is an anchor", wal: segs(1, 8),
			remaining: []Backup{bw("20261001T000000", StatusWaitingForWALs, 4, 5), bw("20261005T000000", StatusDone, 6, 7)},
			want:      segs(1, 3)},
		{name: "only a running backup: nothing pruned", wal: segs(1, 8),
			remaining: []Backup{bw("20261001T000000", StatusStarted, 4, 4)}},
		{name: "WAL on other backups' timelines is protected", wal: append(segs(1, 6), seg(2, 1), seg(2, 7), seg(3, 1)),
			remaining: []Backup{
				{ID: "20261001T000000", Status: StatusDone, BeginWAL: seg(2, 5), EndWAL: seg(2, 5)},
				bw("20261005T000000", StatusStarted, 9, 9)},
			want: []string{seg(2, 1)}},
		{name: "older timelines without backups are pruned", wal: append(segs(1, 3), seg(2, 1), seg(2, 7)),
			remaining: []Backup{{ID: "20261001T000000", Status: StatusDone, BeginWAL: seg(2, 5), EndWAL: seg(2, 5)}},
			want:      append(segs(1, 3), seg(2, 1))},
		{name: "unparsable anchor begin_wal prunes nothing", wal: segs(1, 8),
			remaining: []Backup{{ID: "20261001T000000", Status: StatusDone, BeginWAL: "", EndWAL: seg(1, 5)}}},
		{name: "standalone without a known range prunes nothing", wal: segs(1, 8),
			remaining: []Backup{{ID: "20261001T000000", Status: StatusDone, Keep: KeepStandalone, BeginWAL: seg(1, 2)}, bw("20261005T000000", StatusDone, 6, 7)}},
		{name: "lower-case names are understood", wal: []string{"00000001000000000000000a", "00000001000000000000000B"},
			remaining: []Backup{{ID: "20261001T000000", Status: StatusDone, BeginWAL: "00000001000000000000000b"}},
			want:      []string{"00000001000000000000000a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := cloneBackups(tc.remaining)
			got := PrunableWAL(tc.remaining, tc.wal, tc.segSize)
			// The result keeps the input order.
			var want []string
			for _, w := range tc.wal {
				if slices.Contains(tc.want, w) {
					want = append(want, w)
				}
			}
			if len(want) != len(tc.want) {
				t.Fatalf("bad test: want lists names not in the archive")
			}
			if !slices.Equal(got, want) {
				t.Errorf("PrunableWAL\n got %v\nwant %v", got, want)
			}
			if !equalBackups(before, tc.remaining) {
				t.Errorf("PrunableWAL modified its input")
			}
		})
	}
}

// TestPlanThenPrune runs the two steps the jobs engineer chains: the WAL
// pruned after a REDUNDANCY 2 plan is exactly what precedes the oldest
// surviving backup, and every WAL a survivor needs stays.
func TestPlanThenPrune(t *testing.T) {
	t.Parallel()
	var bs []Backup
	for i, d := range []int{40, 30, 20, 10, 1} {
		b := ago(d)
		b.BeginWAL, b.EndWAL = seg(1, uint32(10*i+5)), seg(1, uint32(10*i+6))
		bs = append(bs, b)
	}
	bs[1].Keep = KeepStandalone
	p := mustPolicy(t, "REDUNDANCY 2", 0)
	dels, _ := Plan(p, bs, testNow)
	if want := []string{bs[0].ID, bs[2].ID}; !slices.Equal(dels, want) {
		t.Fatalf("deletions %v, want %v", dels, want)
	}
	var remaining []Backup
	for _, b := range bs {
		if !slices.Contains(dels, b.ID) {
			remaining = append(remaining, b)
		}
	}
	archive := segs(1, 50)
	pruned := PrunableWAL(remaining, archive, 16<<20)
	for _, w := range archive {
		// Survivors: standalone 15..16, anchor from 35 on.
		needed := (w >= seg(1, 15) && w <= seg(1, 16)) || w >= seg(1, 35)
		if slices.Contains(pruned, w) == needed {
			t.Errorf("WAL %s: pruned=%v, needed=%v", w, slices.Contains(pruned, w), needed)
		}
	}
}
