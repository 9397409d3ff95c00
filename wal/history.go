package wal

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidHistory is wrapped by every error ParseHistory returns.
var ErrInvalidHistory = errors.New("invalid timeline history")

// HistoryEntry is one line of a timeline history file: the timeline
// ParentTLI ended at SwitchPoint (exclusive) and the next timeline of the
// chain began there.
type HistoryEntry struct {
	ParentTLI   uint32
	SwitchPoint LSN
	Reason      string
}

// ParseHistory parses the contents of a TTTTTTTT.history file as
// PostgreSQL writes it: one "parentTLI<TAB>switchpoint<TAB>reason" line per
// ancestor timeline, oldest first. Blank lines and lines starting with '#'
// (after leading whitespace) are ignored, like PostgreSQL's reader does.
// Fields may be separated by any run of spaces or tabs; the reason is the
// rest of the line, trimmed, and may be empty. Timeline IDs must be
// strictly increasing and switch points must not go backwards. Errors wrap
// ErrInvalidHistory and give the 1-based line number.
func ParseHistory(data []byte) ([]HistoryEntry, error) {
	var out []HistoryEntry
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		s := strings.TrimLeft(string(line), historyBlanks)
		if s == "" || s[0] == '#' {
			continue
		}
		e, err := parseHistoryLine(s)
		if err != nil {
			return nil, fmt.Errorf("wal: %w: line %d: %s", ErrInvalidHistory, lineNo, err)
		}
		if n := len(out); n > 0 {
			prev := out[n-1]
			if e.ParentTLI <= prev.ParentTLI {
				return nil, fmt.Errorf("wal: %w: line %d: timeline %d does not increase after %d", ErrInvalidHistory, lineNo, e.ParentTLI, prev.ParentTLI)
			}
			if e.SwitchPoint < prev.SwitchPoint {
				return nil, fmt.Errorf("wal: %w: line %d: switch point %s is before previous %s", ErrInvalidHistory, lineNo, e.SwitchPoint, prev.SwitchPoint)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// historyBlanks separate fields and are trimmed around reasons; '\r' is
// among them so files written with CRLF line ends parse cleanly.
const historyBlanks = " \t\r\v\f"

func isBlank(c byte) bool { return strings.IndexByte(historyBlanks, c) >= 0 }

// nextField splits s at its first run of blanks.
func nextField(s string) (field, rest string) {
	i := 0
	for i < len(s) && !isBlank(s[i]) {
		i++
	}
	field = s[:i]
	for i < len(s) && isBlank(s[i]) {
		i++
	}
	return field, s[i:]
}

func parseHistoryLine(s string) (HistoryEntry, error) {
	tliText, rest := nextField(s)
	for i := 0; i < len(tliText); i++ {
		if tliText[i] < '0' || tliText[i] > '9' {
			return HistoryEntry{}, fmt.Errorf("expected a numeric timeline ID, got %q", tliText)
		}
	}
	tli, err := strconv.ParseUint(tliText, 10, 32)
	if err != nil {
		return HistoryEntry{}, fmt.Errorf("expected a numeric timeline ID, got %q", tliText)
	}
	if tli == 0 {
		return HistoryEntry{}, errors.New("timeline ID 0 is invalid")
	}
	lsnText, rest := nextField(rest)
	if lsnText == "" {
		return HistoryEntry{}, errors.New("expected a switch point location after the timeline ID")
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		return HistoryEntry{}, fmt.Errorf("bad switch point: %w", err)
	}
	return HistoryEntry{ParentTLI: uint32(tli), SwitchPoint: lsn, Reason: strings.TrimRight(rest, historyBlanks)}, nil
}

// FormatHistory renders entries in PostgreSQL's history file format, one
// "parentTLI<TAB>switchpoint<TAB>reason\n" line each. A newline inside a
// reason would split the line, so it becomes a space; other bytes,
// including invalid UTF-8, are kept. Reasons are trimmed as ParseHistory
// trims them, so parsing the output gives back the same entries when they
// follow ParseHistory's rules (TLIs > 0 strictly increasing, switch points
// not decreasing).
func FormatHistory(entries []HistoryEntry) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		// Byte-wise, not strings.Map: reasons are not necessarily UTF-8
		// (restore point names are in the server encoding) and must be
		// written back unchanged.
		reason := strings.ReplaceAll(e.Reason, "\n", " ")
		reason = strings.Trim(reason, historyBlanks)
		fmt.Fprintf(&b, "%d\t%s\t%s\n", e.ParentTLI, e.SwitchPoint, reason)
	}
	return b.Bytes()
}

// TimelineForLSN answers, for the history of timeline targetTLI (the
// entries of targetTLI's history file), which timeline the WAL at lsn was
// written on (PostgreSQL's tliOfPointInHistory): the first ancestor whose
// switch point lies after lsn, or targetTLI itself when lsn is at or past
// the last switch point. Entries must be in file order, as ParseHistory
// returns them.
func TimelineForLSN(entries []HistoryEntry, targetTLI uint32, lsn LSN) uint32 {
	for _, e := range entries {
		if lsn < e.SwitchPoint {
			return e.ParentTLI
		}
	}
	return targetTLI
}
