package archive

import (
	"bytes"
	"io"
	"testing"
)

// TestDecodersReuse decodes several different files, of every readable
// compression, with one Decoders: each must come out byte-identical, also
// after an abandoned half-read stream and after Close.
func TestDecodersReuse(t *testing.T) {
	t.Parallel()
	var inputs [][]byte
	for i := uint64(1); i <= 3; i++ {
		inputs = append(inputs, segment(segName(1, i, mib), mib, testSysID, i))
	}
	for _, comp := range []string{CompressionNone, CompressionGzip, CompressionZstd, CompressionLZ4} {
		t.Run("compression="+comp, func(t *testing.T) {
			t.Parallel()
			var d Decoders
			enc := NewEncoders(0)
			for round := range 2 {
				for i, in := range inputs {
					var buf bytes.Buffer
					w, err := enc.Writer(&buf, comp)
					if err != nil {
						t.Fatal(err)
					}
					w.Write(in)
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					r, name, err := d.Sniff(bytes.NewReader(buf.Bytes()))
					if err != nil || name != comp {
						t.Fatalf("round %d file %d: sniffed %q: %v", round, i, name, err)
					}
					if i == 1 {
						// Abandon this stream half-way: the next must not
						// see its leftovers.
						io.CopyN(io.Discard, r, int64(len(in)/2))
						r.Close()
						continue
					}
					got, err := io.ReadAll(r)
					r.Close()
					if err != nil || !bytes.Equal(got, in) {
						t.Fatalf("round %d file %d: %d bytes, equal %v, err %v", round, i, len(got), bytes.Equal(got, in), err)
					}
				}
				d.Close()
			}
		})
	}
}
