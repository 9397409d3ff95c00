package wal

import (
	"errors"
	"fmt"
)

// ErrInvalidLSN is wrapped by every error ParseLSN returns.
var ErrInvalidLSN = errors.New("invalid LSN")

// LSN is a PostgreSQL log sequence number: a byte position in the WAL
// stream, written as two hex halves "16/B374D848".
type LSN uint64

// InvalidLSN is PostgreSQL's InvalidXLogRecPtr (0/0).
const InvalidLSN LSN = 0

// maxLSNHalf is PostgreSQL's MAXPG_LSNCOMPONENT: each half of the text form
// has at most 8 hex digits.
const maxLSNHalf = 8

// ParseLSN parses the text form "XXXXXXXX/XXXXXXXX" (1 to 8 hex digits on
// each side, any case), as pg_lsn input does. Anything else, including
// surrounding whitespace, signs and "0x" prefixes, is rejected with an error
// that wraps ErrInvalidLSN and quotes the input.
func ParseLSN(s string) (LSN, error) {
	hi, rest, ok := parseHexRun(s, maxLSNHalf)
	if !ok || len(rest) == 0 || rest[0] != '/' {
		return 0, fmt.Errorf("wal: %w %q: want hex/hex such as 16/B374D848", ErrInvalidLSN, s)
	}
	lo, rest, ok := parseHexRun(rest[1:], maxLSNHalf)
	if !ok || len(rest) != 0 {
		return 0, fmt.Errorf("wal: %w %q: want hex/hex such as 16/B374D848", ErrInvalidLSN, s)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
}

// parseHexRun reads 1..max hex digits from the front of s and returns the
// value and the unread remainder.
func parseHexRun(s string, max int) (uint32, string, bool) {
	var v uint32
	i := 0
	for ; i < len(s) && i < max; i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			break
		}
		v = v<<4 | uint32(d)
	}
	if i == 0 {
		return 0, s, false
	}
	return v, s[i:], true
}

// String formats the LSN as PostgreSQL does ("%X/%X", upper case, no
// padding).
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// MarshalText implements encoding.TextMarshaler using String.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler using ParseLSN.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// SegmentNo returns the absolute segment number holding the byte at l
// (PostgreSQL's XLByteToSeg). An invalid segSize is treated as
// DefaultSegmentSize.
func (l LSN) SegmentNo(segSize uint64) uint64 {
	return uint64(l) / effectiveSize(segSize)
}

// SegmentOffset returns l's byte offset inside its segment
// (XLogSegmentOffset).
func (l LSN) SegmentOffset(segSize uint64) uint64 {
	return uint64(l) & (effectiveSize(segSize) - 1)
}
