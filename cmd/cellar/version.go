package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// revision is the VCS revision, set at build time with
// -ldflags "-X main.revision=..." (make build does); when empty the
// revision Go stamped into the binary (vcs.revision) is used.
var revision = ""

// buildRevision is the revision this binary was built from.
func buildRevision() string {
	bi, ok := debug.ReadBuildInfo()
	return revisionOf(revision, bi, ok)
}

// revisionOf prefers the -X value, then vcs.revision (with "-dirty" when
// the tree had local changes), else "unknown" (a build with
// -buildvcs=false or outside a repository).
func revisionOf(ldflag string, bi *debug.BuildInfo, ok bool) string {
	if ldflag != "" {
		return ldflag
	}
	if !ok || bi == nil {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case rev == "":
		return "unknown"
	case dirty:
		return rev + "-dirty"
	}
	return rev
}

// versionText is what `cellar --version` prints after "cellar version ".
func versionText() string {
	return fmt.Sprintf("%s (revision %s, %s)", version, buildRevision(), runtime.Version())
}
