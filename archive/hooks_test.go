package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/hooks/hookstest"
)

func TestArchiveHooksEnv(t *testing.T) {
	t.Parallel()
	const seg = 1 * mib
	e := newEnv(t, seg, "gzip")
	hookDir := t.TempDir()
	pre, post := filepath.Join(hookDir, "pre"), filepath.Join(hookDir, "post")
	e.opts.Hooks = hooks.Set{
		Kind: hooks.KindArchive, Server: testServer, Configuration: "/etc/cellar.yaml", Version: "test",
		Pre: hookstest.EnvDump(pre), PostRetry: hookstest.EnvDump(post),
	}
	names := []string{segName(1, 3, seg), segName(1, 4, seg)}
	var mtimes []time.Time
	for i, n := range names {
		p := put(t, e.opts.Layout.IncomingDir, n, segment(n, seg, testSysID, uint64(i)))
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		mtimes = append(mtimes, fi.ModTime())
	}
	rep := e.archive()
	if len(rep.Archived) != 2 {
		t.Fatalf("archived %v", rep.Archived)
	}
	infos := e.xlogInfos()
	pres, posts := hookstest.ReadDumps(t, pre), hookstest.ReadDumps(t, post)
	if len(pres) != 2 || len(posts) != 2 {
		t.Fatalf("pre ran %d times, post %d times; want 2 each", len(pres), len(posts))
	}
	for i, n := range names {
		src := filepath.Join(e.opts.Layout.IncomingDir, n)
		common := map[string]string{
			"BARMAN_SERVER": testServer, "BARMAN_CONFIGURATION": "/etc/cellar.yaml", "BARMAN_VERSION": "test",
			"BARMAN_SEGMENT": n, "BARMAN_FILE": src, "BARMAN_TIMESTAMP": hooks.Timestamp(mtimes[i]),
		}
		wantPre := map[string]string{"BARMAN_PHASE": "pre", "BARMAN_HOOK": "archive_script", "BARMAN_RETRY": "0",
			"BARMAN_SIZE": fmt.Sprint(seg), "BARMAN_COMPRESSION": ""}
		wantPost := map[string]string{"BARMAN_PHASE": "post", "BARMAN_HOOK": "archive_retry_script", "BARMAN_RETRY": "1",
			"BARMAN_SIZE": fmt.Sprint(infos[i].Size), "BARMAN_COMPRESSION": "gzip"}
		for k, v := range common {
			wantPre[k], wantPost[k] = v, v
		}
		for k, v := range wantPre {
			if pres[i][k] != v {
				t.Errorf("pre %s: %s = %q, want %q", n, k, pres[i][k], v)
			}
		}
		for k, v := range wantPost {
			if posts[i][k] != v {
				t.Errorf("post %s: %s = %q, want %q", n, k, posts[i][k], v)
			}
		}
		if _, ok := posts[i]["BARMAN_ERROR"]; !ok || posts[i]["BARMAN_ERROR"] != "" {
			t.Errorf("post %s: BARMAN_ERROR = %q (set %v), want empty", n, posts[i]["BARMAN_ERROR"], ok)
		}
	}
	if infos[0].Size >= seg {
		t.Errorf("stored size %d: compression did not happen", infos[0].Size)
	}
}

func TestArchivePreRetryAbortStop(t *testing.T) {
	t.Parallel()
	const seg = 1 * mib
	e := newEnv(t, seg, "")
	hookDir := t.TempDir()
	post := filepath.Join(hookDir, "post")
	names := []string{segName(1, 7, seg), segName(1, 8, seg)}
	// Stop on the second file: the first is archived, the second stays.
	e.opts.Hooks = hooks.Set{
		Kind:        hooks.KindArchive,
		PreRetry:    fmt.Sprintf(`[ "$BARMAN_SEGMENT" = %s ] && exit 63; exit 0`, names[1]),
		Post:        hookstest.EnvDump(post),
		RetryPolicy: hooks.RetryPolicy{Break: time.Millisecond, Nap: time.Millisecond, NapAfter: 5},
	}
	for i, n := range names {
		put(t, e.opts.Layout.IncomingDir, n, segment(n, seg, testSysID, uint64(i)))
	}
	a, err := NewArchiver(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.ArchiveWAL(context.Background())
	if !errors.Is(err, hooks.ErrAbortStop) {
		t.Fatalf("ArchiveWAL err = %v, want ErrAbortStop", err)
	}
	if len(rep.Archived) != 1 || rep.Archived[0] != names[0] {
		t.Fatalf("archived %v, want only %s", rep.Archived, names[0])
	}
	if _, err := os.Stat(filepath.Join(e.opts.Layout.IncomingDir, names[1])); err != nil {
		t.Fatalf("stopped WAL left incoming/: %v", err)
	}
	if got := e.xlogNames(); len(got) != 1 || got[0] != names[0] {
		t.Fatalf("xlog.db = %v", got)
	}
	// Post scripts ran for the archived file only: the stopped one never
	// started.
	if posts := hookstest.ReadDumps(t, post); len(posts) != 1 || posts[0]["BARMAN_SEGMENT"] != names[0] {
		t.Fatalf("post runs: %v", posts)
	}
	// The next run without the hook archives it: nothing was lost.
	e.opts.Hooks = hooks.Set{}
	if rep := e.archive(); len(rep.Archived) != 1 || rep.Archived[0] != names[1] {
		t.Fatalf("second run archived %v", rep.Archived)
	}
}

func TestArchivePostErrorOnDuplicate(t *testing.T) {
	t.Parallel()
	const seg = 1 * mib
	e := newEnv(t, seg, "")
	post := filepath.Join(t.TempDir(), "post")
	e.opts.Hooks = hooks.Set{Kind: hooks.KindArchive, Post: hookstest.EnvDump(post)}
	n := segName(1, 9, seg)
	put(t, e.opts.Layout.IncomingDir, n, segment(n, seg, testSysID, 1))
	e.archive()
	put(t, e.opts.Layout.IncomingDir, n, segment(n, seg, testSysID, 2)) // different content
	rep := e.archive()
	if len(rep.Duplicates) != 1 {
		t.Fatalf("duplicates %v", rep.Duplicates)
	}
	posts := hookstest.ReadDumps(t, post)
	if len(posts) != 2 || posts[0]["BARMAN_ERROR"] != "" || !strings.Contains(posts[1]["BARMAN_ERROR"], "duplicate") {
		t.Fatalf("post runs: %v", posts)
	}
}
