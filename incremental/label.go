package incremental

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cellar-backup/cellar/wal"
)

// Label is what the chain check needs from a backup's backup_label.
type Label struct {
	// StartLSN and StartTimeline are START WAL LOCATION and START TIMELINE.
	StartLSN      wal.LSN
	StartTimeline uint32
	// IncrementalFromLSN and IncrementalFromTimeline name the parent
	// backup's start; both are zero for a full backup.
	IncrementalFromLSN      wal.LSN
	IncrementalFromTimeline uint32
}

// Incremental reports whether the label is an incremental backup's.
func (l Label) Incremental() bool { return l.IncrementalFromLSN != 0 }

const (
	labelStart    = "START WAL LOCATION: "
	labelTimeline = "START TIMELINE: "
	labelFromLSN  = "INCREMENTAL FROM LSN: "
	labelFromTLI  = "INCREMENTAL FROM TLI: "
)

// ParseLabel reads the backup_label of the backup name. START WAL LOCATION
// is required; the INCREMENTAL FROM lines come both or neither.
func ParseLabel(data []byte, name string) (Label, error) {
	var l Label
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		var err error
		if key, value := labelField(line); key != "" {
			if seen[key] {
				err = errors.New("repeated")
			} else {
				err = l.set(key, value)
			}
			seen[key] = true
		}
		if err != nil {
			return Label{}, fmt.Errorf("%w: backup_label of %s: line %q: %v", ErrCorrupt, name, line, err)
		}
	}
	if !seen[labelStart] {
		return Label{}, fmt.Errorf("%w: backup_label of %s: no START WAL LOCATION", ErrCorrupt, name)
	}
	if seen[labelFromLSN] != seen[labelFromTLI] || (seen[labelFromLSN] && l.IncrementalFromLSN == 0) {
		return Label{}, fmt.Errorf("%w: backup_label of %s: INCREMENTAL FROM LSN and TLI must come together, LSN not 0/0", ErrCorrupt, name)
	}
	return l, nil
}

// labelField returns the key (with its ": ") and value of a line this
// package reads, or "" for other lines.
func labelField(line string) (string, string) {
	for _, key := range []string{labelStart, labelTimeline, labelFromLSN, labelFromTLI} {
		if v, ok := strings.CutPrefix(line, key); ok {
			return key, v
		}
	}
	return "", ""
}

func (l *Label) set(key, value string) error {
	var err error
	switch key {
	case labelStart:
		lsn, _, _ := strings.Cut(value, " ")
		l.StartLSN, err = wal.ParseLSN(lsn)
	case labelTimeline:
		l.StartTimeline, err = parseTimeline(value)
	case labelFromLSN:
		l.IncrementalFromLSN, err = wal.ParseLSN(value)
	case labelFromTLI:
		l.IncrementalFromTimeline, err = parseTimeline(value)
	}
	return err
}

func parseTimeline(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("bad timeline %q", s)
	}
	return uint32(v), nil
}

// FullLabel is the backup_label for a data directory rebuilt from a chain:
// the newest backup's label without its INCREMENTAL FROM lines, which make
// PostgreSQL refuse to start ("this is an incremental backup, not a data
// directory").
func FullLabel(data []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(data) {
		if bytes.HasPrefix(line, []byte(labelFromLSN)) || bytes.HasPrefix(line, []byte(labelFromTLI)) {
			continue
		}
		out.Write(line)
	}
	return out.Bytes()
}

// CheckLabels checks that the chain's backup_labels link up, oldest first,
// aligned with manifests: the first is a full backup, every later one was
// taken incrementally from the backup just before it (its INCREMENTAL FROM
// LSN and TLI are that backup's start), and each label's start agrees with
// its manifest.
func CheckLabels(manifests []*Manifest, labels []Label) error {
	if len(labels) != len(manifests) {
		return fmt.Errorf("%w: %d backup labels for %d manifests", ErrBrokenChain, len(labels), len(manifests))
	}
	for i, l := range labels {
		m := manifests[i]
		if l.StartLSN != m.StartLSN() {
			return fmt.Errorf("%w: %s: backup_label starts at %s but backup_manifest at %s", ErrBrokenChain, m.Name, l.StartLSN, m.StartLSN())
		}
		if err := checkParent(manifests, labels, i); err != nil {
			return err
		}
	}
	return nil
}

func checkParent(manifests []*Manifest, labels []Label, i int) error {
	l, name := labels[i], manifests[i].Name
	if i == 0 {
		if l.Incremental() {
			return fmt.Errorf("%w: %s is the oldest backup of the chain but is incremental (from %s): its parent is missing", ErrBrokenChain, name, l.IncrementalFromLSN)
		}
		return nil
	}
	parent := labels[i-1]
	switch {
	case !l.Incremental():
		return fmt.Errorf("%w: %s is a full backup, not an increment of %s", ErrBrokenChain, name, manifests[i-1].Name)
	case l.IncrementalFromLSN != parent.StartLSN || l.IncrementalFromTimeline != parent.StartTimeline:
		return fmt.Errorf("%w: %s was taken incrementally from the backup that started at %s on timeline %d, but its parent %s started at %s on timeline %d",
			ErrBrokenChain, name, l.IncrementalFromLSN, l.IncrementalFromTimeline, manifests[i-1].Name, parent.StartLSN, parent.StartTimeline)
	}
	return nil
}
