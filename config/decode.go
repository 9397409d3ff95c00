package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Decoding is done here, field by field through the koanf struct tags,
// rather than with koanf's Unmarshal (mapstructure): that way every bad
// value and every unknown key becomes its own *Error naming the server and
// key, and all of them are reported at once.

var (
	typeOfGlobal        = reflect.TypeFor[Global]()
	typeOfDuration      = reflect.TypeFor[time.Duration]()
	typeOfTextUnmarshal = reflect.TypeFor[encoding.TextUnmarshaler]()
)

type field struct {
	key   string
	index []int
	typ   reflect.Type
	sub   bool // a nested section (Global.Web, Global.Daemon)
}

// structFields lists the tagged fields of t; untagged embedded structs
// (Server.Hooks) are flattened, as their keys live in the server section.
func structFields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "-" {
			continue
		}
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			for _, sf := range structFields(f.Type) {
				sf.index = append([]int{i}, sf.index...)
				out = append(out, sf)
			}
			continue
		}
		if tag == "" || !f.IsExported() {
			continue
		}
		sub := f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(typeOfTextUnmarshal)
		out = append(out, field{key: tag, index: []int{i}, typ: f.Type, sub: sub})
	}
	return out
}

// OptionNames returns the option keys of a server section, sorted.
func OptionNames() []string {
	var names []string
	for _, f := range structFields(reflect.TypeFor[Server]()) {
		names = append(names, f.key)
	}
	slices.Sort(names)
	return names
}

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func decodeStruct(dst reflect.Value, m map[string]any, path []string, r *reporter) {
	fields := structFields(dst.Type())
	byKey := make(map[string]field, len(fields))
	names := make([]string, 0, len(fields))
	for _, f := range fields {
		byKey[f.key] = f
		names = append(names, f.key)
	}
	for _, k := range sortedKeys(m) {
		sub := append(slices.Clip(path), k)
		f, ok := byKey[k]
		if !ok {
			r.add(sub, unknownOption(k, names))
			continue
		}
		if f.sub {
			if sm, ok := asMap(m[k], sub, r); ok {
				decodeStruct(dst.FieldByIndex(f.index), sm, sub, r)
			}
			continue
		}
		if err := decodeValue(dst.FieldByIndex(f.index), m[k]); err != nil {
			r.add(sub, err)
		}
	}
}

// decodeValue sets v from a raw layer value: strings from YAML and the
// environment, typed values from flags. nil and "" mean unset (Barman:
// "Empty or None = unset"), so the default stays.
func decodeValue(v reflect.Value, raw any) error {
	if raw == nil {
		return nil
	}
	if d, ok := raw.(time.Duration); ok && v.Type() == typeOfDuration {
		if d < 0 {
			return invalidf("negative duration %s", d)
		}
		v.SetInt(int64(d))
		return nil
	}
	s, err := scalarString(raw)
	if err != nil {
		return err
	}
	if strings.TrimSpace(s) == "" {
		return nil
	}
	if tu, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return tu.UnmarshalText([]byte(s))
	}
	if v.Type() == typeOfDuration {
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int:
		n, err := parseInt(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
	default:
		return fmt.Errorf("config: internal: no decoder for %s", v.Type())
	}
	return nil
}

// scalarString renders a scalar layer value as the string the parsers read.
func scalarString(raw any) (string, error) {
	switch x := raw.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Duration:
		return x.String(), nil
	case int:
		return strconv.Itoa(x), nil
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	case float32:
		return scalarString(float64(x))
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10), nil
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case map[string]any, []any, []string, []int, []bool:
		return "", invalidf("expected a single value, got %s", describe(raw))
	}
	return fmt.Sprint(raw), nil
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any, []string, []int, []bool:
		return "a list"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("the value %q", fmt.Sprint(v))
}

// encodeStruct renders a struct's options as display values. With redact,
// secrets are hidden; without, the result decodes back to the same struct.
func encodeStruct(ptr any, redact bool) map[string]any {
	return encodeFields(reflectValue(ptr), redact)
}

func encodeFields(v reflect.Value, redact bool) map[string]any {
	m := map[string]any{}
	for _, f := range structFields(v.Type()) {
		fv := v.FieldByIndex(f.index)
		if f.sub {
			m[f.key] = encodeFields(fv, redact)
			continue
		}
		m[f.key] = encodeScalar(fv, redact)
	}
	return m
}

func encodeScalar(fv reflect.Value, redact bool) any {
	switch x := fv.Interface().(type) {
	case Conninfo:
		if redact {
			return x.String()
		}
		return x.Raw()
	case time.Duration:
		return formatDuration(x)
	case Size:
		return int64(x)
	case RetentionPolicy:
		return x.String()
	case RecoveryOptions:
		return strings.Join(x, ",")
	case bool:
		return x
	case int:
		return x
	}
	if fv.Kind() == reflect.String {
		return fv.String()
	}
	return fmt.Sprint(fv.Interface())
}

// formatDuration prints whole days in Barman's interval syntax and the rest
// as a Go duration without trailing zero units ("1h", "5m"); ParseDuration
// reads all of them back.
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		n := int64(d / day)
		if n == 1 {
			return "1 day"
		}
		return strconv.FormatInt(n, 10) + " days"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// barmanOnly lists Barman options Cellar deliberately does not implement,
// with the reason, so a copied barman.conf setting gets a better message
// than "unknown option". ImportBarmanINI drops them with a warning.
var barmanOnly = map[string]string{
	"barman_user":                   "Cellar runs as the user that starts it",
	"config_changes_queue":          "config-update is not implemented",
	"ssh_command":                   "it is used by rsync backups only",
	"network_compression":           "it is used by rsync backups only",
	"tablespace_bandwidth_limit":    "it is used by rsync backups only",
	"backup_options":                "it is used by rsync backups only (Cellar always takes concurrent backups)",
	"reuse_backup_directory":        "it is used by rsync backups only",
	"encryption":                    "backup encryption is not implemented",
	"encryption_key_id":             "backup encryption is not implemented",
	"encryption_passphrase_command": "backup encryption is not implemented",
	"basebackups_directory":         "Cellar derives it from backup_directory",
	"wals_directory":                "Cellar derives it from backup_directory",
	"incoming_wals_directory":       "Cellar derives it from backup_directory",
	"streaming_wals_directory":      "Cellar derives it from backup_directory",
	"errors_directory":              "Cellar derives it from backup_directory",
	"xlogdb_directory":              "Cellar derives it from backup_directory",
	"custom_compression_filter":     "custom compression is not implemented",
	"custom_decompression_filter":   "custom compression is not implemented",
	"custom_compression_magic":      "custom compression is not implemented",
	"backup_compression_format":     "Cellar chooses the backup format itself",
	"backup_compression_location":   "Cellar chooses the backup format itself",
	"backup_compression_workers":    "Cellar chooses the backup format itself",
	"autogenerate_manifest":         "backup manifests come from PostgreSQL",
	"worm_mode":                     "WORM storage is not implemented",
	"cluster":                       "configuration models are not implemented",
	"model":                         "configuration models are not implemented",
	"recovery_staging_path":         "use staging_path",
	"local_staging_path":            "incremental combine is not implemented",
	"staging_location":              "remote staging is not implemented",
	"combine_mode":                  "incremental combine is not implemented",
	"snapshot_provider":             "cloud snapshots are not implemented",
	"snapshot_disks":                "cloud snapshots are not implemented",
	"snapshot_instance":             "cloud snapshots are not implemented",
	"snapshot_zone":                 "cloud snapshots are not implemented",
	"snapshot_gcp_project":          "cloud snapshots are not implemented",
	"gcp_project":                   "cloud snapshots are not implemented",
	"gcp_zone":                      "cloud snapshots are not implemented",
	"azure_credential":              "cloud snapshots are not implemented",
	"azure_resource_group":          "cloud snapshots are not implemented",
	"azure_subscription_id":         "cloud snapshots are not implemented",
	"aws_profile":                   "cloud snapshots are not implemented",
	"aws_region":                    "cloud snapshots are not implemented",
	"aws_await_snapshots_timeout":   "cloud snapshots are not implemented",
	"aws_snapshot_lock_mode":        "cloud snapshots are not implemented",
}

// unknownOption builds the error for key k, suggesting the closest known name.
func unknownOption(k string, known []string) error {
	if why, ok := barmanOnly[k]; ok && why != "" {
		return &valueError{msg: "Barman option not supported by Cellar: " + why, target: ErrUnknownOption}
	}
	best, bestD := "", 3
	for _, n := range known {
		if d := editDistance(k, n); d < bestD || d == bestD && best == "" && d < 3 {
			best, bestD = n, d
		}
	}
	if best != "" && bestD <= 2 {
		return &valueError{msg: fmt.Sprintf("%s (did you mean %q?)", ErrUnknownOption, best), target: ErrUnknownOption}
	}
	return ErrUnknownOption
}

// editDistance is the Levenshtein distance, bounded in cost by the short
// option names it compares.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
