package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"unicode/utf16"

	"github.com/cellar-backup/cellar/internal/durable"
)

// Identity is identity.json: the PostgreSQL system identifier and major
// version the server's backups belong to, written once before the first
// backup.
type Identity struct {
	SystemID string `json:"systemid"`
	Version  string `json:"version"`
}

// MarshalIdentity renders id exactly like Python json.dump(sort_keys=True,
// indent=4) plus a trailing newline.
func MarshalIdentity(id Identity) []byte {
	var b bytes.Buffer
	b.WriteString("{\n    \"systemid\": ")
	b.WriteString(pyJSONString(id.SystemID))
	b.WriteString(",\n    \"version\": ")
	b.WriteString(pyJSONString(id.Version))
	b.WriteString("\n}\n")
	return b.Bytes()
}

// pyJSONString quotes s like Python's json with ensure_ascii: non-ASCII as
// \uXXXX (surrogate pairs beyond the BMP), no HTML escaping.
func pyJSONString(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20 || (r >= 0x7f && r <= 0xffff):
			fmt.Fprintf(&b, `\u%04x`, r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ParseIdentity decodes identity.json. Numbers are accepted for either key
// because older writers stored the system id as an integer.
func ParseIdentity(data []byte, source string) (Identity, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", source, err)
	}
	var id Identity
	for key, dst := range map[string]*string{"systemid": &id.SystemID, "version": &id.Version} {
		raw, ok := m[key]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			*dst = s
			continue
		}
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return Identity{}, fmt.Errorf("identity %s: key %s: not a string or number", source, key)
		}
		if _, err := strconv.ParseFloat(n.String(), 64); err != nil {
			return Identity{}, fmt.Errorf("identity %s: key %s: %w", source, key, err)
		}
		*dst = n.String()
	}
	return id, nil
}

// ReadIdentity reads <bd>/identity.json. A missing file is returned as an
// error matching fs.ErrNotExist.
func ReadIdentity(l Layout) (Identity, error) {
	p := l.IdentityPath()
	data, err := os.ReadFile(p)
	if err != nil {
		return Identity{}, fmt.Errorf("server %s: read identity: %w", l.Server, err)
	}
	return ParseIdentity(data, p)
}

// WriteIdentity writes <bd>/identity.json durably.
func WriteIdentity(l Layout, id Identity) error {
	if err := durable.WriteFile(l.IdentityPath(), MarshalIdentity(id), 0o600); err != nil {
		return fmt.Errorf("server %s: write identity: %w", l.Server, err)
	}
	return nil
}
