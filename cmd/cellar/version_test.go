package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestRevisionOf(t *testing.T) {
	t.Parallel()
	vcs := func(kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{}
		for i := 0; i < len(kv); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return bi
	}
	for _, tc := range []struct {
		name   string
		ldflag string
		bi     *debug.BuildInfo
		ok     bool
		want   string
	}{
		{"ldflag wins", "abc", vcs("vcs.revision", "def"), true, "abc"},
		{"vcs revision", "", vcs("vcs.revision", "def", "vcs.modified", "false"), true, "def"},
		{"dirty tree", "", vcs("vcs.modified", "true", "vcs.revision", "def"), true, "def-dirty"},
		{"no vcs stamp", "", vcs("-trimpath", "true"), true, "unknown"},
		{"no build info", "", nil, false, "unknown"},
	} {
		if got := revisionOf(tc.ldflag, tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: revisionOf = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A binary built the way `make build` builds it prints the version and
// revision given with -ldflags -X and its Go version.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "cellar")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7 -X main.revision=0123abcd", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("cellar --version: %v\n%s", err, out)
	}
	want := "cellar version v9.8.7 (revision 0123abcd, " + runtime.Version() + ")\n"
	if string(out) != want {
		t.Errorf("cellar --version printed %q, want %q", out, want)
	}
	if !strings.Contains(versionText(), runtime.Version()) {
		t.Errorf("versionText() = %q lacks the Go version", versionText())
	}
}
