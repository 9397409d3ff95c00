package passive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// The test binary doubles as the remote cellar (PASSIVE_TEST_MODE=remote)
// and as a passive process that a test kills (PASSIVE_TEST_MODE=sync-backup).
func TestMain(m *testing.M) {
	switch os.Getenv("PASSIVE_TEST_MODE") {
	case "remote":
		os.Exit(remoteMain(os.Args[1:]))
	case "sync-backup":
		os.Exit(syncBackupMain())
	}
	os.Exit(m.Run())
}

const testServer = "pg"

// primaryLayout is the layout a "config" directory names in tests: the
// server's catalog in <root>/<server>, locks in <root>.
func rootLayout(root string) catalog.Layout {
	return catalog.NewLayout(testServer, filepath.Join(root, testServer), root)
}

// remoteMain implements "-c ROOT -q <command> SERVER args..." like cellar.
func remoteMain(args []string) int {
	root := ""
	for len(args) > 0 && (args[0] == "-c" || args[0] == "-q") {
		if args[0] == "-c" {
			root, args = args[1], args[2:]
		} else {
			args = args[1:]
		}
	}
	if root == "" || len(args) < 2 || args[1] != testServer {
		fmt.Fprintf(os.Stderr, "remote: bad arguments %q\n", args)
		return 2
	}
	layout := rootLayout(root)
	ctx := context.Background()
	var err error
	switch args[0] {
	case "sync-info":
		lastWAL, pos := "", int64(0)
		if len(args) > 2 {
			lastWAL = args[2]
		}
		if len(args) > 3 {
			pos, _ = strconv.ParseInt(args[3], 10, 64)
		}
		var info *Info
		if info, err = SyncInfo(ctx, layout, lastWAL, pos); err == nil {
			info.Config["compression"] = os.Getenv("PASSIVE_TEST_COMPRESSION")
			var data []byte
			if data, err = info.MarshalJSON(); err == nil {
				_, err = os.Stdout.Write(data)
			}
		}
	case "sync-backup-send":
		var have []FileState
		if have, err = ReadHaveList(os.Stdin); err == nil {
			err = SendBackup(ctx, layout, args[2], have, os.Stdout)
		}
	case "sync-wals-send":
		var names []string
		if names, err = ReadWALNames(os.Stdin); err == nil {
			err = SendWALs(ctx, layout, names, os.Stdout)
		}
	default:
		err = fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "remote:", err)
		return 1
	}
	return 0
}

func syncBackupMain() int {
	var o subOptions
	if err := json.Unmarshal([]byte(os.Getenv("PASSIVE_TEST_OPTS")), &o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	opts := Options{Server: o.Server, Layout: o.Layout, PrimarySSHCommand: o.SSH, RemoteCellar: o.Remote, RemoteConfig: o.Config, BandwidthLimitKBps: o.KBps}
	if err := SyncBackup(context.Background(), opts, os.Getenv("PASSIVE_TEST_ID")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// subOptions is the JSON form of Options for the killed subprocess.
type subOptions struct {
	Server, SSH, Remote, Config string
	Layout                      catalog.Layout
	KBps                        int
}

// env is one primary and one passive catalog on this machine.
type env struct {
	t        *testing.T
	root     string
	primary  catalog.Layout
	passive  catalog.Layout
	opts     Options
	fakeSSH  string
	testExec string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Behaves like ssh: joins its arguments and lets a shell split them.
	fake := filepath.Join(root, "fake-ssh")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nshift\nexec sh -c \"$*\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	e := &env{
		t:        t,
		root:     root,
		primary:  rootLayout(filepath.Join(root, "primary")),
		passive:  rootLayout(filepath.Join(root, "passive")),
		fakeSSH:  fake,
		testExec: exe,
	}
	for _, l := range []catalog.Layout{e.primary, e.passive} {
		if err := l.MakeDirs(); err != nil {
			t.Fatal(err)
		}
	}
	e.opts = Options{
		Server:            testServer,
		Layout:            e.passive,
		PrimarySSHCommand: fake + " localhost",
		RemoteCellar:      "PASSIVE_TEST_MODE=remote " + shellQuote(exe),
		RemoteConfig:      filepath.Join(root, "primary"),
	}
	return e
}

func segName(seg int) string {
	return wal.Name{TLI: 1, Log: 0, Seg: uint32(seg)}.String()
}

// addWALs archives segments from..to on the primary: files in wals/<hash>/
// and xlog.db lines, mtimes increasing one minute apart.
func (e *env) addWALs(from, to int) {
	e.t.Helper()
	var infos []catalog.WALInfo
	for seg := from; seg <= to; seg++ {
		name := segName(seg)
		infos = append(infos, e.writeWAL(name, 8192+seg, time.Date(2024, 1, 1, 0, seg, 0, 500000000, time.UTC)))
	}
	if err := catalog.OpenXLogDB(e.primary).Append(context.Background(), infos...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) writeWAL(name string, size int, mtime time.Time) catalog.WALInfo {
	e.t.Helper()
	n, err := wal.ParseName(name)
	if err != nil {
		e.t.Fatal(err)
	}
	p := e.primary.WALPath(n)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, randBytes(name, size), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		e.t.Fatal(err)
	}
	info, err := catalog.WALInfoFromFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

func randBytes(seed string, n int) []byte {
	h := sha256.Sum256([]byte(seed))
	r := rand.New(rand.NewChaCha8(h))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// addBackup writes a realistic plain backup on the primary: data/ with a
// few files, an empty dir, a tablespace in <oid>/, a symlink, and a valid
// backup_manifest (SHA256 and CRC32C checksums).
func (e *env) addBackup(id string, status catalog.Status, beginSeg int, legacy bool, bigFile int) *catalog.BackupInfo {
	e.t.Helper()
	dir := e.primary.BackupDirPath(id)
	files := map[string][]byte{
		"data/PG_VERSION":               []byte("15\n"),
		"data/global/pg_control":        randBytes(id+"control", 8192),
		"data/base/1/1259":              randBytes(id+"1259", bigFile),
		"data/base/1/2608":              randBytes(id+"2608", 40000),
		"data/postgresql.conf":          []byte("shared_buffers = 128MB\n"),
		"16385/PG_15_202209061/5/16386": randBytes(id+"ts", 12345),
	}
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for rel, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			e.t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "data", "pg_wal"), 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data", "pg_tblspc"), 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Symlink("/srv/ts1", filepath.Join(dir, "data", "pg_tblspc", "16385")); err != nil {
		e.t.Fatal(err)
	}
	writeManifest(e.t, dir, files)

	seg := segName(beginSeg)
	b := catalog.NewBackupInfo(id)
	b.Status = status
	b.BeginWAL, b.EndWAL = seg, seg
	b.BeginXLog, b.EndXLog = fmt.Sprintf("0/%X", beginSeg<<24|0x28), fmt.Sprintf("0/%X", beginSeg<<24|0x100)
	b.BeginOffset, b.EndOffset = catalog.Int64(40), catalog.Int64(256)
	b.BeginTime = time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.FixedZone("", 3600))
	b.EndTime = b.BeginTime.Add(90 * time.Second)
	b.Timeline, b.Version = 1, 150004
	b.SystemID = "7312345678901234567"
	b.Mode = "postgres"
	b.PGData = "/var/lib/postgresql/15/main"
	b.ServerName = testServer
	b.Size, b.DeduplicatedSize, b.ClusterSize = catalog.Int64(int64(bigFile+60000)), catalog.Int64(int64(bigFile+60000)), catalog.Int64(int64(bigFile+70000))
	b.Tablespaces = []catalog.Tablespace{{Name: "ts1", OID: 16385, Location: "/srv/ts1"}}
	b.CopyStats = map[string]float64{"copy_time": 1.5, "total_time": 2.25}
	b.BackupLabel = "START WAL LOCATION: 0/2000028 (file " + seg + ")\nLABEL: x\n"
	b.DataChecksums = "on"
	b.Compression = ""
	b.BackupName = "nightly-" + id[:8]
	if status == catalog.StatusFailed {
		b.Error = "failure copying files (boom)"
	}
	path := e.primary.MetaBackupInfoPath(id)
	if legacy {
		path = e.primary.LegacyBackupInfoPath(id)
	}
	if err := catalog.WriteBackupInfo(path, b); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func writeManifest(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	type mf struct {
		Path      string `json:"Path"`
		Size      int    `json:"Size"`
		Modified  string `json:"Last-Modified"`
		Algorithm string `json:"Checksum-Algorithm"`
		Checksum  string `json:"Checksum"`
	}
	var list []mf
	i := 0
	for rel, data := range files {
		name, ok := cutData(rel)
		if !ok {
			// Tablespace files appear as pg_tblspc/<oid>/... in a manifest.
			name = "pg_tblspc/" + rel
		}
		f := mf{Path: name, Size: len(data), Modified: "2024-01-02 03:04:05 GMT"}
		if i%2 == 0 {
			sum := sha256.Sum256(data)
			f.Algorithm, f.Checksum = "SHA256", hex.EncodeToString(sum[:])
		} else {
			c := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
			f.Algorithm, f.Checksum = "CRC32C", hex.EncodeToString([]byte{byte(c), byte(c >> 8), byte(c >> 16), byte(c >> 24)})
		}
		list = append(list, f)
		i++
	}
	files2, _ := json.Marshal(list)
	var b bytes.Buffer
	b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": ")
	b.Write(files2)
	b.WriteString(",\n\"WAL-Ranges\": [],\n")
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(filepath.Join(dir, "data", "backup_manifest"), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func cutData(rel string) (string, bool) {
	const p = "data/"
	if len(rel) > len(p) && rel[:len(p)] == p {
		return rel[len(p):], true
	}
	return "", false
}

// tree describes every entry under dir: type, mode, mtime and content hash.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "symlink " + target
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out[rel] = fmt.Sprintf("file %v %d %s %s", fi.Mode().Perm(), fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano), hex.EncodeToString(sum[:]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTrees(t *testing.T, want, got map[string]string, what string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s: got %q, want %q", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
