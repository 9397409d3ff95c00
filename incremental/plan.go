package incremental

import (
	"fmt"
	"sort"
)

// Action says what a restore does with one path.
type Action int

const (
	// ActionAbsent: only older backups have the path (a dropped database, a
	// removed relation, a segment truncated away). Do not restore it.
	ActionAbsent Action = iota
	// ActionCopy: copy the newest backup's full file as it is.
	ActionCopy
	// ActionReconstruct: rebuild the file from the backups From..To with
	// Reconstruct.
	ActionReconstruct
	// ActionRewriteLabel: write FullLabel of the newest backup's
	// backup_label.
	ActionRewriteLabel
)

func (a Action) String() string {
	switch a {
	case ActionCopy:
		return "copy"
	case ActionReconstruct:
		return "reconstruct"
	case ActionRewriteLabel:
		return "rewrite-label"
	default:
		return "absent"
	}
}

// Step is the decision for one path of the restored data directory.
type Step struct {
	// Path is relative to the data directory, "/"-separated.
	Path   string
	Action Action
	// From and To index the chain (0 = the full backup): ActionCopy and
	// ActionRewriteLabel read backup To only; ActionReconstruct reads the
	// full file in From and the INCREMENTAL files in From+1..To. For
	// ActionAbsent, To is the newest backup that still had the path.
	From, To int
	// Sources are the files to read, oldest first, aligned with From..To,
	// with their sizes and incremental flags as the manifests list them:
	// fill in each Source's R and pass them to Reconstruct.
	Sources []Source
	// Size, Algorithm and Checksum are the newest manifest's entry for
	// ActionCopy, to verify the copy against.
	Size      int64
	Algorithm string
	Checksum  string
}

// SourcePaths are the backup-relative paths of Sources, aligned with them.
func (s Step) SourcePaths() []string {
	paths := make([]string, len(s.Sources))
	for i := range s.Sources {
		paths[i] = s.Path
		if s.Sources[i].Incremental {
			paths[i] = IncrementalName(s.Path)
		}
	}
	return paths
}

// Plan is the restore plan of a chain, one Step per path sorted by path.
//
// Manifests list files only: a restore also creates the newest backup's
// directories (its archives' directory entries) and takes pg_wal's content
// from wherever the WAL comes from, as for a full backup.
type Plan struct {
	Steps []Step
}

// NewPlan checks that manifests, oldest (the full backup) first, form one
// chain of the same cluster with increasing start LSNs, and decides, for
// every path any of them holds, how the restore produces it. A chain whose
// full backup contains INCREMENTAL files, or where a backup between the
// newest full copy of a file and the newest increment lacks the file,
// fails with an error wrapping ErrBrokenChain that names the backup and
// path.
func NewPlan(manifests []*Manifest) (*Plan, error) {
	if err := checkChain(manifests); err != nil {
		return nil, err
	}
	newest := len(manifests) - 1
	p := &Plan{}
	out := map[string]bool{}
	for _, f := range manifests[newest].Files {
		st, err := planFile(manifests, f)
		if err != nil {
			return nil, err
		}
		if out[st.Path] {
			return nil, fmt.Errorf("%w: %s lists both %s and %s", ErrCorrupt, manifests[newest].Name, st.Path, IncrementalName(st.Path))
		}
		out[st.Path] = true
		p.Steps = append(p.Steps, st)
	}
	p.Steps = append(p.Steps, absentSteps(manifests, out)...)
	sort.Slice(p.Steps, func(i, j int) bool { return p.Steps[i].Path < p.Steps[j].Path })
	return p, nil
}

func checkChain(manifests []*Manifest) error {
	if len(manifests) == 0 {
		return fmt.Errorf("%w: no backups", ErrBrokenChain)
	}
	for _, f := range manifests[0].Files {
		if _, incr := ParseName(f.Path); incr {
			return fmt.Errorf("%w: %s should be the chain's full backup but holds the incremental file %s: its parent is missing",
				ErrBrokenChain, manifests[0].Name, f.Path)
		}
	}
	for i := 1; i < len(manifests); i++ {
		prev, m := manifests[i-1], manifests[i]
		if prev.SystemIdentifier != 0 && m.SystemIdentifier != 0 && prev.SystemIdentifier != m.SystemIdentifier {
			return fmt.Errorf("%w: %s is of cluster %d but %s of cluster %d", ErrBrokenChain, prev.Name, prev.SystemIdentifier, m.Name, m.SystemIdentifier)
		}
		if m.StartLSN() <= prev.StartLSN() {
			return fmt.Errorf("%w: %s (start %s) does not start after its parent %s (start %s)", ErrBrokenChain, m.Name, m.StartLSN(), prev.Name, prev.StartLSN())
		}
	}
	return nil
}

// planFile decides how the newest backup's entry f is restored.
func planFile(manifests []*Manifest, f ManifestFile) (Step, error) {
	newest := len(manifests) - 1
	full, incr := ParseName(f.Path)
	switch {
	case !incr && f.Path == "backup_label":
		return Step{Path: f.Path, Action: ActionRewriteLabel, From: newest, To: newest,
			Sources: []Source{{Name: sourceName(manifests[newest], f.Path), Size: f.Size}}, Size: f.Size}, nil
	case !incr:
		return Step{Path: f.Path, Action: ActionCopy, From: newest, To: newest,
			Sources: []Source{{Name: sourceName(manifests[newest], f.Path), Size: f.Size}},
			Size:    f.Size, Algorithm: f.Algorithm, Checksum: f.Checksum}, nil
	}
	st := Step{Path: full, Action: ActionReconstruct, To: newest}
	sources := []Source{{Name: sourceName(manifests[newest], f.Path), Incremental: true, Size: f.Size}}
	for k := newest - 1; k >= 0; k-- {
		src, err := chainSource(manifests[k], full, manifests[newest].Name)
		if err != nil {
			return Step{}, err
		}
		sources = append(sources, src)
		if !src.Incremental {
			st.From = k
			break
		}
	}
	for i, j := 0, len(sources)-1; i < j; i, j = i+1, j-1 {
		sources[i], sources[j] = sources[j], sources[i]
	}
	st.Sources = sources
	return st, nil
}

// chainSource finds the full file or the INCREMENTAL file for path in an
// older backup m.
func chainSource(m *Manifest, path, newest string) (Source, error) {
	if f, ok := m.File(path); ok {
		return Source{Name: sourceName(m, path), Size: f.Size}, nil
	}
	ipath := IncrementalName(path)
	if f, ok := m.File(ipath); ok {
		return Source{Name: sourceName(m, ipath), Incremental: true, Size: f.Size}, nil
	}
	return Source{}, fmt.Errorf("%w: %s has neither %s nor %s, which rebuilding it from %s needs",
		ErrBrokenChain, m.Name, path, ipath, newest)
}

func sourceName(m *Manifest, path string) string {
	return "backup " + m.Name + " " + path
}

// absentSteps lists the paths older backups hold that the newest does not.
func absentSteps(manifests []*Manifest, out map[string]bool) []Step {
	var steps []Step
	seen := map[string]bool{}
	for k := len(manifests) - 2; k >= 0; k-- {
		for _, f := range manifests[k].Files {
			p, _ := ParseName(f.Path)
			if out[p] || seen[p] {
				continue
			}
			seen[p] = true
			steps = append(steps, Step{Path: p, Action: ActionAbsent, From: k, To: k})
		}
	}
	return steps
}
