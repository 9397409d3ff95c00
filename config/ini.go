package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// barmanDefaultHome is Barman's barman_home default. An imported
// configuration states it explicitly so backup_directory keeps pointing at
// the existing Barman catalog instead of Cellar's default home.
const barmanDefaultHome = "/var/lib/barman"

// iniSection is one [section] of a barman.conf, keys lower-cased as Python's
// ConfigParser does (optionxform), with the line of each key.
type iniSection struct {
	name  string
	line  int
	keys  []string
	vals  map[string]string
	lines map[string]int
}

// parseINI reads the ConfigParser dialect Barman uses: [sections],
// `key = value` or `key: value`, full-line `#`/`;` comments (no inline
// comments, as Python 3's default), indented continuation lines, and
// duplicate sections/keys refused (strict mode).
func parseINI(r io.Reader, file string) ([]*iniSection, error) {
	var secs []*iniSection
	var cur *iniSection
	lastKey := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	fail := func(line int, format string, args ...any) error {
		return &Error{File: file, Line: line, Err: invalidf(format, args...)}
	}
	for n := 1; sc.Scan(); n++ {
		raw := strings.TrimRight(sc.Text(), "\r")
		t := strings.TrimSpace(raw)
		if t == "" || t[0] == '#' || t[0] == ';' {
			lastKey = ""
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if cur != nil && lastKey != "" {
				cur.vals[lastKey] += "\n" + t
				continue
			}
			return nil, fail(n, "unexpected indented line")
		}
		if t[0] == '[' {
			end := strings.IndexByte(t, ']')
			if end < 0 {
				return nil, fail(n, "unterminated section header %q", t)
			}
			name := t[1:end]
			for _, s := range secs {
				if s.name == name {
					return nil, fail(n, "section [%s] is defined twice (first at line %d)", name, s.line)
				}
			}
			cur = &iniSection{name: name, line: n, vals: map[string]string{}, lines: map[string]int{}}
			secs = append(secs, cur)
			lastKey = ""
			continue
		}
		i := strings.IndexAny(t, "=:")
		if i <= 0 {
			return nil, fail(n, "expected key = value, got %q", t)
		}
		if cur == nil {
			return nil, fail(n, "option outside a [section]")
		}
		key := strings.ToLower(strings.TrimSpace(t[:i]))
		if _, dup := cur.vals[key]; dup {
			return nil, fail(n, "option %q in [%s] is defined twice (first at line %d)", key, cur.name, cur.lines[key])
		}
		cur.keys = append(cur.keys, key)
		cur.vals[key] = strings.TrimSpace(t[i+1:])
		cur.lines[key] = n
		lastKey = key
	}
	if err := sc.Err(); err != nil {
		return nil, &Error{File: file, Err: err}
	}
	return secs, nil
}

// interpolate expands ConfigParser's %(key)s references (and %%): key is
// looked up as `name` (the section), then in the section, then in [barman].
func interpolate(v string, sec, global *iniSection, depth int) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	if depth > 10 {
		return "", invalidf("interpolation too deep in %q", v)
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		if i+1 >= len(v) || v[i+1] != '(' {
			return "", invalidf("bad %% in %q (write %%%% for a literal %%)", v)
		}
		end := strings.Index(v[i:], ")s")
		if end < 0 {
			return "", invalidf("bad interpolation in %q (expected %%(name)s)", v)
		}
		ref := strings.ToLower(v[i+2 : i+end])
		var val string
		var found bool
		switch {
		case ref == "name" && sec != global:
			val, found = sec.name, true
		default:
			if x, ok := sec.vals[ref]; ok {
				val, found = x, true
			} else if x, ok := global.vals[ref]; ok {
				val, found = x, true
			} else if ref == "barman_home" {
				val, found = barmanDefaultHome, true
			}
		}
		if !found {
			return "", invalidf("%%(%s)s in %q refers to an unknown option", ref, v)
		}
		exp, err := interpolate(val, sec, global, depth+1)
		if err != nil {
			return "", err
		}
		b.WriteString(exp)
		i += end + 1
	}
	return b.String(), nil
}

// ImportBarmanINI converts a barman.conf into Cellar's config.yaml. name
// labels the input in messages. It returns the YAML, warnings for every
// option that was dropped or changed (Barman-only options such as
// barman_user or ssh_command, rsync backups switched to postgres, bzip2
// compression, ...), and an error when the input cannot be parsed or the
// converted configuration does not pass Load's validation (the YAML is
// still returned then, for the user to fix). Server options set in
// [barman] are copied into every server, as Barman applies them. Files in
// configuration_files_directory are not read: import each and merge.
func ImportBarmanINI(r io.Reader, name string) ([]byte, []string, error) {
	secs, err := parseINI(r, name)
	if err != nil {
		return nil, nil, err
	}
	global := &iniSection{name: "barman", vals: map[string]string{}, lines: map[string]int{}}
	var servers []*iniSection
	for _, s := range secs {
		if s.name == "barman" {
			global = s
		} else {
			servers = append(servers, s)
		}
	}
	var warns []string
	warn := func(sec *iniSection, key, format string, args ...any) {
		where := name
		if l := sec.lines[key]; l > 0 {
			where = fmt.Sprintf("%s:%d", name, l)
		} else if sec.line > 0 {
			where = fmt.Sprintf("%s:%d", name, sec.line)
		}
		warns = append(warns, fmt.Sprintf("%s: [%s] %s", where, sec.name, fmt.Sprintf(format, args...)))
	}
	var errs []error
	value := func(sec *iniSection, key string) (string, bool) {
		v, err := interpolate(sec.vals[key], sec, global, 0)
		if err != nil {
			errs = append(errs, &Error{File: name, Line: sec.lines[key], Server: serverLabel(sec), Key: key, Err: err})
			return "", false
		}
		v = strings.TrimSpace(v)
		if v == "" || v == "None" {
			return "", false
		}
		return v, true
	}

	globalFields := fieldMap(typeOfGlobal)
	serverFields := fieldMap(reflect.TypeFor[Server]())

	gout := map[string]any{}
	serverDefaults := map[string]string{}
	for _, key := range global.keys {
		v, ok := value(global, key)
		if !ok {
			continue
		}
		switch {
		case key == "log_format":
			var f LogFormat
			if f.UnmarshalText([]byte(v)) == nil {
				gout[key] = string(f)
			} else {
				warn(global, key, "log_format %q dropped: Cellar logs as text or json", v)
			}
		case key == "configuration_files_directory":
			warn(global, key, "configuration_files_directory %q: its *.conf files were not imported; import each of them and add its servers", v)
		case globalFields[key].key != "" && !globalFields[key].sub:
			if conv, ok := convertOption(globalFields[key], v); ok {
				gout[key] = conv
			} else {
				warn(global, key, "option %s dropped: invalid value %q", key, v)
			}
		case serverFields[key].key != "":
			serverDefaults[key] = v
		case barmanOnly[key] != "":
			warn(global, key, "option %s ignored: %s", key, barmanOnly[key])
		default:
			warn(global, key, "unknown option %s ignored", key)
		}
	}
	if _, ok := gout["barman_home"]; !ok {
		gout["barman_home"] = barmanDefaultHome
	}

	sout := map[string]any{}
	for _, sec := range servers {
		if m, ok := value(sec, "model"); ok {
			if b, err := ParseBool(m); err == nil && b {
				warn(sec, "model", "configuration model skipped: models are not implemented")
				continue
			}
		}
		if err := ValidServerName(sec.name); err != nil {
			errs = append(errs, &Error{File: name, Line: sec.line, Server: sec.name, Err: err})
			continue
		}
		opts := map[string]string{}
		for k, v := range serverDefaults {
			opts[k] = v
		}
		for _, key := range sec.keys {
			v, ok := value(sec, key)
			if !ok {
				delete(opts, key)
				continue
			}
			switch {
			case serverFields[key].key != "":
				opts[key] = v
			case key == "model":
			case barmanOnly[key] != "":
				warn(sec, key, "option %s ignored: %s", key, barmanOnly[key])
			case globalFields[key].key != "":
				warn(sec, key, "global option %s ignored in a server section", key)
			default:
				warn(sec, key, "unknown option %s ignored", key)
			}
		}
		out := map[string]any{}
		fixServerOptions(opts, func(key, format string, args ...any) { warn(sec, key, format, args...) })
		for key, v := range opts {
			if conv, ok := convertOption(serverFields[key], v); ok {
				out[key] = conv
			} else {
				warn(sec, key, "option %s dropped: invalid value %q", key, v)
			}
		}
		sout[sec.name] = out
	}
	if len(errs) > 0 {
		return nil, warns, errors.Join(errs...)
	}

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Cellar configuration converted from %s.\n# Options not shown take their defaults; see config.yaml in the Cellar sources.\n", name)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"global": gout, "servers": sout}); err != nil {
		return nil, warns, fmt.Errorf("%s: encoding YAML: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, warns, fmt.Errorf("%s: encoding YAML: %w", name, err)
	}
	if _, err := load(LoadOptions{File: name + " (converted)"}, buf.Bytes()); err != nil {
		return buf.Bytes(), warns, fmt.Errorf("%s: the converted configuration does not validate: %w", name, err)
	}
	return buf.Bytes(), warns, nil
}

func serverLabel(sec *iniSection) string {
	if sec.name == "barman" {
		return ""
	}
	return sec.name
}

func fieldMap(t reflect.Type) map[string]field {
	m := map[string]field{}
	for _, f := range structFields(t) {
		m[f.key] = f
	}
	return m
}

// fixServerOptions rewrites Barman values Cellar cannot honour into the
// nearest supported ones, warning about each change.
func fixServerOptions(opts map[string]string, warn func(key, format string, args ...any)) {
	switch m := strings.ToLower(opts["backup_method"]); m {
	case "postgres":
	case "":
		warn("backup_method", "backup_method not set: Barman's default is rsync, Cellar takes backups with the postgres method")
		opts["backup_method"] = "postgres"
	default:
		warn("backup_method", "backup_method %s is not supported by Cellar; changed to postgres (needs streaming_conninfo with replication rights)", m)
		opts["backup_method"] = "postgres"
	}
	if c, ok := opts["compression"]; ok {
		switch lc := strings.ToLower(c); lc {
		case "gzip", "lz4", "zstd", "none":
		case "pigz", "pygzip":
			warn("compression", "compression %s changed to gzip (same file format)", lc)
			opts["compression"] = "gzip"
		case "bzip2", "pybzip2":
			warn("compression", "compression %s changed to gzip: Cellar reads existing bzip2 WALs but writes new ones with gzip", lc)
			opts["compression"] = "gzip"
		default:
			warn("compression", "compression %s dropped: Cellar cannot write it, and cannot read WALs already stored with it", lc)
			delete(opts, "compression")
		}
	}
	if c, ok := opts["backup_compression"]; ok {
		var bc BackupCompression
		if bc.UnmarshalText([]byte(c)) != nil {
			warn("backup_compression", "backup_compression %s dropped: Cellar supports gzip, lz4 and zstd", c)
			delete(opts, "backup_compression")
			delete(opts, "backup_compression_level")
		}
	}
}

// convertOption checks v against the field's parser and returns the
// value to write in YAML: booleans and integers typed, the rest as
// strings.
func convertOption(f field, v string) (any, bool) {
	if f.key == "" || f.sub {
		return nil, false
	}
	dst := reflect.New(f.typ).Elem()
	if err := decodeValue(dst, v); err != nil {
		return nil, false
	}
	switch x := dst.Interface().(type) {
	case time.Duration:
		return formatDuration(x), true
	case RetentionPolicy:
		return x.String(), true
	}
	switch dst.Kind() {
	case reflect.Bool:
		return dst.Bool(), true
	case reflect.Int:
		return int(dst.Int()), true
	}
	if slices.Contains([]string{"backup_method", "compression", "backup_compression", "reuse_backup", "create_slot", "log_level"}, f.key) {
		return fmt.Sprint(dst.Interface()), true // canonical spelling
	}
	return v, true
}
