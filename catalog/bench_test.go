package catalog

import (
	"fmt"
	"os"
	"testing"

	"github.com/cellar-backup/cellar/internal/durable"
)

// BenchmarkXLogDBAppend measures one durable append with a small and a
// large existing catalog. Append must not depend on the catalog size.
func BenchmarkXLogDBAppend(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		l := newXLogLayout(b)
		buf := make([]byte, 0, n*72)
		for i := range n {
			buf = WALInfo{Name: walName(1, uint64(i)), Size: 16777216, Time: 1.7e9 + float64(i), Compression: "gzip"}.appendLine(buf)
		}
		if err := os.WriteFile(l.XLogDBPath(), buf, 0o600); err != nil {
			b.Fatal(err)
		}
		// Flush the setup data now, or the first timed fsync pays for it.
		if err := durable.SyncFile(l.XLogDBPath()); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			x := OpenXLogDB(l)
			i := n
			b.ReportAllocs()
			for b.Loop() {
				w := WALInfo{Name: walName(1, uint64(i)), Size: 16777216, Time: 1.7e9 + float64(i), Compression: "gzip"}
				if err := x.Append(b.Context(), w); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
