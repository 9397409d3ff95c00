package catalog

import (
	"encoding/hex"
	"errors"
	"testing"
)

func TestManifestHash(t *testing.T) {
	for _, tc := range []struct{ alg, in, want string }{
		// CRC-32C check value 0xE3069283, written little-endian as PostgreSQL does.
		{"CRC32C", "123456789", "839206e3"},
		{"crc32c", "123456789", "839206e3"},
		{"SHA256", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"SHA224", "", "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"},
	} {
		h, err := ManifestHash(tc.alg)
		if err != nil {
			t.Fatalf("%s: %v", tc.alg, err)
		}
		h.Write([]byte(tc.in))
		if got := hex.EncodeToString(h.Sum(nil)); got != tc.want {
			t.Errorf("%s(%q) = %s, want %s", tc.alg, tc.in, got, tc.want)
		}
	}
	if h, err := ManifestHash("NONE"); h != nil || err != nil {
		t.Errorf("NONE = %v, %v; want nil, nil", h, err)
	}
	if _, err := ManifestHash("MD5"); !errors.Is(err, ErrUnknownManifestChecksum) {
		t.Errorf("MD5: %v", err)
	}
}
