package recovery

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
)

// damage is one way a stored data file goes bad, with the word the error
// must use to say what was wrong.
type damage struct {
	name  string
	apply func(t *testing.T, data []byte) []byte // nil result: delete the file
	what  string
}

var damages = []damage{
	{"truncated-half", func(t *testing.T, d []byte) []byte { return d[:len(d)/2] }, "size"},
	{"deleted", func(t *testing.T, d []byte) []byte { return nil }, "missing"},
	{"byte-flipped", func(t *testing.T, d []byte) []byte {
		d = bytes.Clone(d)
		d[len(d)/2+100] ^= 0x40
		return d
	}, "checksum"},
}

// damagePlain applies dmg to the file rel of a plain backup.
func damagePlain(t *testing.T, f *fixture, id, rel string, dmg damage) {
	t.Helper()
	p := filepath.Join(f.layout.BackupDataDir(id), filepath.FromSlash(rel))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	out := dmg.apply(t, data)
	if out == nil {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// damageTarZstd rewrites base.tar.zst of a tar backup with dmg applied to
// member rel (left out when dmg deletes it).
func damageTarZstd(t *testing.T, f *fixture, id, rel string, dmg damage) {
	t.Helper()
	p := filepath.Join(f.layout.BackupDataDir(id), "base.tar.zst")
	in, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := zstd.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "./") == rel {
			found = true
			if data = dmg.apply(t, data); data == nil {
				continue
			}
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatalf("%s has no member %s", p, rel)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// damageFixture is a source cluster with one table big enough to span
// several pages, the table's file (relative to PGDATA) and its contents.
type damageFixture struct {
	*fixture
	rel  string
	want state
	next time.Time // next free backup id time
}

func newDamageFixture(t *testing.T) *damageFixture {
	t.Helper()
	f := newFixture(t, 0)
	f.src.Exec(t, "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1,3000) g; CHECKPOINT")
	return &damageFixture{fixture: f, rel: f.q(t, "SELECT pg_relation_filepath('t')"), want: f.state(t), next: time.Now()}
}

// backup takes a plain (or, with tarArgs, tar) backup under a fresh id.
func (d *damageFixture) backup(t *testing.T, tarArgs ...string) *catalog.BackupInfo {
	t.Helper()
	d.next = d.next.Add(time.Second)
	return d.takeBackup(t, catalog.NewBackupID(d.next), tarArgs...)
}

// TestRecoverRefusesDamagedBackup: a DONE backup whose data file was cut,
// deleted or had one byte flipped must not restore "successfully"; the
// error names the file (relative to PGDATA) and what is wrong with it. An
// intact backup restores and PostgreSQL serves the same data.
func TestRecoverRefusesDamagedBackup(t *testing.T) {
	d := newDamageFixture(t)
	intact := d.backup(t)
	plain := make([]*catalog.BackupInfo, len(damages))
	for i := range damages {
		plain[i] = d.backup(t)
		damagePlain(t, d.fixture, plain[i].ID, d.rel, damages[i])
	}
	tarred := d.backup(t, "-Ft", "--compress=client-zstd")
	damageTarZstd(t, d.fixture, tarred.ID, d.rel, damages[2])
	locked, marked, vanishing := d.backup(t), d.backup(t), d.backup(t)
	noManifest := d.backup(t)
	if err := os.Remove(filepath.Join(d.layout.BackupDataDir(noManifest.ID), ManifestName)); err != nil {
		t.Fatal(err)
	}
	badManifest := d.backup(t)
	damagePlain(t, d.fixture, badManifest.ID, ManifestName, damages[2])
	d.switchAndSync(t)

	t.Run("intact", func(t *testing.T) {
		t.Parallel()
		opts := Options{Layout: d.layout, Backup: intact, Dest: destDir(t), Target: Target{Immediate: true, Action: "promote"}}
		res, _ := restoreAndCheck(t, d.fixture, opts, d.want, true)
		for _, w := range res.Warnings {
			if strings.Contains(w, "verif") {
				t.Errorf("intact backup restored with warning %q", w)
			}
		}
	})
	t.Run("no-manifest", func(t *testing.T) {
		t.Parallel()
		opts := Options{Layout: d.layout, Backup: noManifest, Dest: destDir(t), Target: Target{Immediate: true, Action: "promote"}}
		res, _ := restoreAndCheck(t, d.fixture, opts, d.want, true)
		if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "could NOT be verified") }) {
			t.Errorf("restore without a manifest did not warn that it was not verified: %v", res.Warnings)
		}
	})
	check := func(t *testing.T, b *catalog.BackupInfo, file, what string, mod func(*Options)) {
		t.Helper()
		opts := Options{Layout: d.layout, Backup: b, Dest: destDir(t), Target: Target{Immediate: true, Action: "promote"}}
		if mod != nil {
			mod(&opts)
		}
		_, err := Recover(t.Context(), opts)
		if err == nil {
			t.Fatalf("restore of damaged backup %s succeeded", b.ID)
		}
		if !errors.Is(err, ErrBackupDamaged) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), what) {
			t.Fatalf("error %q: want ErrBackupDamaged naming %s and saying %q", err, file, what)
		}
		t.Logf("refused: %v", err)
		if _, serr := os.Stat(filepath.Join(opts.Dest, RecoverInfoFile)); serr == nil {
			t.Fatalf("failed restore left %s, the mark of a complete restore", RecoverInfoFile)
		}
	}
	for i, dmg := range damages {
		t.Run("plain-"+dmg.name, func(t *testing.T) {
			t.Parallel()
			check(t, plain[i], d.rel, dmg.what, nil)
		})
	}
	t.Run("tar-zstd-"+damages[2].name, func(t *testing.T) {
		t.Parallel()
		check(t, tarred, d.rel, damages[2].what, nil)
	})
	t.Run("manifest-damaged", func(t *testing.T) {
		t.Parallel()
		check(t, badManifest, ManifestName, "damaged", nil)
	})
	t.Run("remote-ssh-"+damages[2].name, func(t *testing.T) {
		t.Parallel()
		sshCmd := startSSHD(t)
		check(t, plain[2], d.rel, damages[2].what, func(o *Options) { o.RemoteSSHCommand = sshCmd })
	})
	t.Run("locked-by-delete", func(t *testing.T) {
		t.Parallel()
		lk, err := lock.TryLock(d.layout.BackupLockPath(locked.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Release()
		opts := Options{Layout: d.layout, Backup: locked, Dest: destDir(t)}
		_, err = Recover(t.Context(), opts)
		want := fmt.Sprintf("backup %s is being deleted by PID %d", locked.ID, os.Getpid())
		if !errors.Is(err, ErrBackupBusy) || !strings.Contains(err.Error(), want) {
			t.Fatalf("restore during a delete: %v, want %q", err, want)
		}
		if _, err := os.Stat(opts.Dest); err == nil {
			t.Fatalf("refused restore created %s", opts.Dest)
		}
	})
	t.Run("delete-this", func(t *testing.T) {
		t.Parallel()
		if err := catalog.Open(d.layout).MarkDeleteThis(marked.ID); err != nil {
			t.Fatal(err)
		}
		_, err := Recover(t.Context(), Options{Layout: d.layout, Backup: marked, Dest: destDir(t)})
		if !errors.Is(err, ErrBackupNotRestorable) || !strings.Contains(err.Error(), "delete_this") {
			t.Fatalf("restore of a backup marked delete_this: %v", err)
		}
	})
	t.Run("file-vanishes", func(t *testing.T) {
		t.Parallel()
		victim := filepath.Join(d.layout.BackupDataDir(vanishing.ID), filepath.FromSlash(d.rel))
		opts := Options{Layout: d.layout, Backup: vanishing, Dest: destDir(t), Target: Target{Immediate: true}, Parallel: 2,
			beforeOpen: func(p string) {
				if p == victim {
					os.Remove(p)
				}
			}}
		_, err := Recover(t.Context(), opts)
		if err == nil || errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), d.rel) {
			t.Fatalf("file vanishing mid-restore: %v; want the real cause naming %s", err, d.rel)
		}
		t.Logf("refused: %v", err)
	})
	t.Run("delta-"+damages[0].name, func(t *testing.T) {
		t.Parallel()
		opts := Options{Layout: d.layout, Backup: intact, Dest: destDir(t), Target: Target{Immediate: true, Action: "promote"}}
		if _, err := Recover(t.Context(), opts); err != nil {
			t.Fatal(err)
		}
		check(t, plain[0], d.rel, damages[0].what, func(o *Options) { o.Dest, o.DeltaRestore = opts.Dest, true })
	})
}

// TestVerifyBackup checks stored backups at rest: intact ones (plain and
// tar with each client compression) are ok, damaged plain and compressed
// ones fail naming the file and the problem, one without a manifest is
// unverifiable; each verdict is saved as the backup's record.
func TestVerifyBackup(t *testing.T) {
	d := newDamageFixture(t)
	type verifyCase struct {
		name   string
		b      *catalog.BackupInfo
		result catalog.VerifyResult
		msg    []string
	}
	var cases []verifyCase
	cases = append(cases, verifyCase{"plain-intact", d.backup(t), catalog.VerifyOK, nil})
	for _, comp := range []string{"none", "client-gzip", "client-lz4", "client-zstd"} {
		cases = append(cases, verifyCase{"tar-" + comp + "-intact", d.backup(t, "-Ft", "--compress="+comp), catalog.VerifyOK, nil})
	}
	for _, dmg := range damages {
		b := d.backup(t)
		damagePlain(t, d.fixture, b.ID, d.rel, dmg)
		cases = append(cases, verifyCase{"plain-" + dmg.name, b, catalog.VerifyFailed, []string{d.rel, dmg.what}})
		b = d.backup(t, "-Ft", "--compress=client-zstd")
		damageTarZstd(t, d.fixture, b.ID, d.rel, dmg)
		cases = append(cases, verifyCase{"tar-zstd-" + dmg.name, b, catalog.VerifyFailed, []string{d.rel, dmg.what}})
	}
	noManifest := d.backup(t)
	if err := os.Remove(filepath.Join(d.layout.BackupDataDir(noManifest.ID), ManifestName)); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, verifyCase{"no-manifest", noManifest, catalog.VerifyUnverifiable, []string{"no backup_manifest"}})
	busy := d.backup(t)
	cat := catalog.Open(d.layout)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := VerifyBackup(t.Context(), VerifyOptions{Layout: d.layout, Backup: tc.b})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s %s (%d files, %d bytes)", tc.b.ID, v.Result, v.Error, v.Files, v.Bytes)
			if v.Result != tc.result {
				t.Fatalf("result %s (%s), want %s", v.Result, v.Error, tc.result)
			}
			for _, m := range tc.msg {
				if !strings.Contains(v.Error, m) {
					t.Errorf("error %q does not mention %q", v.Error, m)
				}
			}
			if tc.result == catalog.VerifyOK && (v.Files < 100 || v.Bytes < 1<<20 || v.Error != "") {
				t.Errorf("ok verification of %d files, %d bytes, error %q", v.Files, v.Bytes, v.Error)
			}
			saved, ok, err := cat.Verification(tc.b.ID)
			if err != nil || !ok || saved.Result != v.Result || saved.Error != v.Error || saved.Files != v.Files || !saved.VerifiedAt.Equal(v.VerifiedAt) {
				t.Fatalf("saved record %+v (%v, %v), returned %+v", saved, ok, err, v)
			}
		})
	}
	t.Run("being-deleted", func(t *testing.T) {
		t.Parallel()
		lk, err := lock.TryLock(d.layout.BackupLockPath(busy.ID))
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Release()
		_, err = VerifyBackup(t.Context(), VerifyOptions{Layout: d.layout, Backup: busy})
		if !errors.Is(err, ErrBackupBusy) || !strings.Contains(err.Error(), fmt.Sprintf("being deleted by PID %d", os.Getpid())) {
			t.Fatalf("verify during a delete: %v", err)
		}
		if _, ok, _ := cat.Verification(busy.ID); ok {
			t.Fatal("a verification that did not run saved a record")
		}
	})
}
