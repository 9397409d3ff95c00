package passive

import (
	"testing"
)

func FuzzSyncInfo(f *testing.F) {
	f.Add([]byte(`{"backups": {}, "wals": [], "version": "1", "config": {"name": "pg"}, "last_position": null, "last_name": null}`))
	f.Add([]byte(`{"backups": {"20240102T030405": {"backup_id": "20240102T030405", "status": "DONE", "begin_time": "Tue Jan  2 03:04:05 2024", "begin_time_iso": "2024-01-02T03:04:05.123456+01:00", "tablespaces": [["ts1", 16385, "/srv/ts1"]], "copy_stats": {"copy_time": 1.5}, "size": 10, "timeline": 1}}, "wals": [{"name": "000000010000000000000002", "size": 8194, "time": 1704067320.5, "compression": null, "encryption": null}], "last_position": 55, "last_name": "000000010000000000000002"}`))
	f.Add([]byte(`{"wals": [{"name": "00000002.history", "size": 1, "time": 1, "compression": "gzip"}]}`))
	f.Add([]byte(`{"backups": {"x": {}}}`))
	f.Add([]byte(`{"backups": {"20240102T030405": {"end_time": "Tue Jan  2 03:04:05 2024", "backup_label": "a\nb"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParseInfo(data)
		if err != nil {
			return
		}
		// Whatever parses must render and parse back to the same content.
		out, err := info.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := ParseInfo(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if len(back.WALs) != len(info.WALs) || len(back.Backups) != len(info.Backups) || back.LastName != info.LastName {
			t.Fatalf("round trip changed the document:\n%s", out)
		}
		for i := range info.WALs {
			if info.WALs[i] != back.WALs[i] {
				t.Fatalf("wal %d: %+v != %+v", i, info.WALs[i], back.WALs[i])
			}
		}
		for id, b := range info.Backups {
			if string(back.Backups[id].Marshal()) != string(b.Marshal()) {
				t.Fatalf("backup %s changed:\n%s\n%s", id, b.Marshal(), back.Backups[id].Marshal())
			}
		}
	})
}
