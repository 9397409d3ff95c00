package drill

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
)

// Results of a drill.
const (
	ResultOK     = "OK"
	ResultFailed = "FAILED"
)

// Phase names, in the order a drill runs them; they are also the values of
// the phase label of cellar_restore_drill_duration_seconds.
const (
	PhaseRestore = "restore" // base backup copied, WAL staged
	PhaseStartup = "startup" // postmaster spawned until it accepts queries
	PhaseReplay  = "replay"  // WAL replayed until the end of recovery
	PhaseChecks  = "checks"  // identity, recovered point, user SQL checks
)

// DefaultKeep is how many drill records a server keeps.
const DefaultKeep = 20

// ErrNoDrill: the server has no drill record (or not the one asked for).
var ErrNoDrill = errors.New("no such drill")

// Phase is one timed step of a drill.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Check is the outcome of one user SQL check.
type Check struct {
	Name     string `json:"name"`
	Query    string `json:"query"`
	Expected string `json:"expected"`
	Got      string `json:"got"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
}

// Record is the durable account of one drill, stored as
// <backup_dir>/drills/<ID>.json.
type Record struct {
	ID       string    `json:"id"`
	Server   string    `json:"server"`
	BackupID string    `json:"backup_id"`
	Target   string    `json:"target,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Phases   []Phase   `json:"phases"`
	// SystemID and Timeline are what the restored server reported.
	SystemID string `json:"system_id,omitempty"`
	Timeline uint32 `json:"timeline,omitempty"`
	// RecoveredLSN and RecoveredTime are the last replayed WAL location and
	// the commit timestamp of the last replayed transaction.
	RecoveredLSN  string     `json:"recovered_lsn,omitempty"`
	RecoveredTime *time.Time `json:"recovered_time,omitempty"`
	// ExpectedWAL is the newest archived segment the drill had to reach,
	// ExpectedLSN its start: the point the archive promised.
	ExpectedWAL string  `json:"expected_wal,omitempty"`
	ExpectedLSN string  `json:"expected_lsn,omitempty"`
	Checks      []Check `json:"checks,omitempty"`
	Result      string  `json:"result"`
	Error       string  `json:"error,omitempty"`
}

// Duration is the wall time of the whole drill, checks and tear-down
// included.
func (r *Record) Duration() time.Duration { return r.End.Sub(r.Start) }

// RTO is the measured recovery time: restore, start-up and WAL replay,
// until the restored server was usable.
func (r *Record) RTO() time.Duration {
	s := r.PhaseSeconds(PhaseRestore) + r.PhaseSeconds(PhaseStartup) + r.PhaseSeconds(PhaseReplay)
	return time.Duration(s * float64(time.Second))
}

// PhaseSeconds returns the duration of phase name (0 when it did not run).
func (r *Record) PhaseSeconds(name string) float64 {
	for _, p := range r.Phases {
		if p.Name == name {
			return p.Seconds
		}
	}
	return 0
}

// Dir is where a server's drill records live: drills/ under its backup
// directory, a name Barman neither creates nor reads.
func Dir(l catalog.Layout) string { return filepath.Join(l.BackupDir, "drills") }

// idFormat names records by their start time; it sorts chronologically.
const idFormat = "20060102T150405.000000Z"

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z$`)

// NewID is the record id of a drill started at t.
func NewID(t time.Time) string { return t.UTC().Format(idFormat) }

// ValidID reports whether id can name a drill record.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Save writes rec durably (whole or not at all) and then removes all but
// the newest keep records of the server.
func Save(l catalog.Layout, rec *Record, keep int) error {
	if !ValidID(rec.ID) {
		return fmt.Errorf("server %s: drill record id %q is not valid", l.Server, rec.ID)
	}
	dir := Dir(l)
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("server %s: drill records: %w", l.Server, err)
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("server %s: drill %s: %w", l.Server, rec.ID, err)
	}
	if err := durable.WriteFile(filepath.Join(dir, rec.ID+".json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("server %s: write drill record: %w", l.Server, err)
	}
	return prune(l, keep)
}

// prune keeps the newest keep records.
func prune(l catalog.Layout, keep int) error {
	if keep <= 0 {
		keep = DefaultKeep
	}
	ids, err := listIDs(l)
	if err != nil || len(ids) <= keep {
		return err
	}
	for _, id := range ids[:len(ids)-keep] {
		if err := os.Remove(filepath.Join(Dir(l), id+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("server %s: prune drill %s: %w", l.Server, id, err)
		}
	}
	return durable.SyncDir(Dir(l))
}

// listIDs returns the record ids, oldest first.
func listIDs(l catalog.Layout) ([]string, error) {
	ents, err := os.ReadDir(Dir(l))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: drill records: %w", l.Server, err)
	}
	var ids []string
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && ValidID(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// List reads every record of the server, oldest first.
func List(l catalog.Layout) ([]*Record, error) {
	ids, err := listIDs(l)
	if err != nil {
		return nil, err
	}
	out := make([]*Record, 0, len(ids))
	for _, id := range ids {
		r, err := Load(l, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Load reads one record; id "latest" is the newest. The error wraps
// ErrNoDrill when there is none.
func Load(l catalog.Layout, id string) (*Record, error) {
	if id == "latest" {
		ids, err := listIDs(l)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("server %s: %w recorded yet", l.Server, ErrNoDrill)
		}
		id = ids[len(ids)-1]
	}
	if !ValidID(id) {
		return nil, fmt.Errorf("server %s: drill id %q: %w (ids look like 20260102T030405.000000Z)", l.Server, id, ErrNoDrill)
	}
	p := filepath.Join(Dir(l), id+".json")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("server %s: drill %s: %w", l.Server, id, ErrNoDrill)
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: drill %s: %w", l.Server, id, err)
	}
	return ParseRecord(p, data)
}

// ParseRecord decodes a record file's content; name is used in errors.
func ParseRecord(name string, data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("drill record %s: %w", name, err)
	}
	if !ValidID(r.ID) || (r.Result != ResultOK && r.Result != ResultFailed) {
		return nil, fmt.Errorf("drill record %s: bad id %q or result %q", name, r.ID, r.Result)
	}
	return &r, nil
}
