package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
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
// option that was dropped or changed because Cellar does not implement it
// (Barman-only options such as barman_user or ssh_command, rsync backups
// switched to postgres, bzip2 compression, ...), and an error when the
// input cannot be parsed, holds a value that is invalid (every such value
// is an *Error naming the file, line, section and option, all reported at
// once, and no YAML is returned), or the converted configuration does not
// pass Load's validation (the YAML is still returned then, for the user to
// fix). Server options set in [barman] are copied into every server, as
// Barman applies them. Files in configuration_files_directory are not
// read: import each and merge.
func ImportBarmanINI(r io.Reader, name string) ([]byte, []string, error) {
	secs, err := parseINI(r, name)
	if err != nil {
		return nil, nil, err
	}
	im := &iniImport{
		name:         name,
		global:       &iniSection{name: "barman", vals: map[string]string{}, lines: map[string]int{}},
		globalFields: fieldMap(typeOfGlobal),
		serverFields: fieldMap(reflect.TypeFor[Server]()),
	}
	var servers []*iniSection
	for _, s := range secs {
		if s.name == "barman" {
			im.global = s
		} else {
			servers = append(servers, s)
		}
	}
	gout, defaults := im.convertGlobal()
	sout := map[string]any{}
	for _, sec := range servers {
		if out, ok := im.convertServer(sec, defaults); ok {
			sout[sec.name] = out
		}
	}
	if len(im.errs) > 0 {
		return nil, im.warns, errors.Join(im.errs...)
	}
	out, err := encodeImported(name, gout, sout)
	if err != nil {
		return nil, im.warns, err
	}
	if _, err := load(LoadOptions{File: name + " (converted)"}, out); err != nil {
		return out, im.warns, fmt.Errorf("%s: the converted configuration does not validate: %w", name, err)
	}
	return out, im.warns, nil
}

// iniImport is the state of one ImportBarmanINI call: the [barman]
// section (interpolation looks options up there), and the warnings and
// errors collected so far.
type iniImport struct {
	name         string
	global       *iniSection
	globalFields map[string]field
	serverFields map[string]field
	warns        []string
	errs         []error
}

func (im *iniImport) warn(sec *iniSection, key, format string, args ...any) {
	where := im.name
	if l := sec.lines[key]; l > 0 {
		where = fmt.Sprintf("%s:%d", im.name, l)
	} else if sec.line > 0 {
		where = fmt.Sprintf("%s:%d", im.name, sec.line)
	}
	im.warns = append(im.warns, fmt.Sprintf("%s: [%s] %s", where, sec.name, fmt.Sprintf(format, args...)))
}

// invalid records that option key of sec holds value v, which its parser
// refused with cause.
func (im *iniImport) invalid(sec *iniSection, key, v string, cause error) {
	im.errs = append(im.errs, &Error{
		File: im.name, Line: sec.lines[key], Server: serverLabel(sec), Key: key,
		Err: invalidf("[%s] %s = %q: %v", sec.name, key, v, cause),
	})
}

// value returns the interpolated value of key in sec; false when it is
// unset (empty or None, as Barman reads it) or does not interpolate.
func (im *iniImport) value(sec *iniSection, key string) (string, bool) {
	v, err := interpolate(sec.vals[key], sec, im.global, 0)
	if err != nil {
		im.errs = append(im.errs, &Error{File: im.name, Line: sec.lines[key], Server: serverLabel(sec), Key: key, Err: err})
		return "", false
	}
	v = strings.TrimSpace(v)
	if v == "" || v == "None" {
		return "", false
	}
	return v, true
}

// convertGlobal converts [barman]: its global options, and the server
// options it sets for every server (already converted, so an invalid one
// is reported once, at its own line, even when no server inherits it).
func (im *iniImport) convertGlobal() (gout map[string]any, defaults map[string]any) {
	gout, defaults = map[string]any{}, map[string]any{}
	g := im.global
	for _, key := range g.keys {
		v, ok := im.value(g, key)
		if !ok {
			continue
		}
		switch {
		case key == "log_format":
			var f LogFormat
			if f.UnmarshalText([]byte(v)) == nil {
				gout[key] = string(f)
			} else {
				im.warn(g, key, "log_format %q dropped: Cellar logs as text or json", v)
			}
		case key == "configuration_files_directory":
			im.warn(g, key, "configuration_files_directory %q: its *.conf files were not imported; import each of them and add its servers", v)
		case im.globalFields[key].key != "" && !im.globalFields[key].sub:
			if conv, err := convertOption(im.globalFields[key], v); err != nil {
				im.invalid(g, key, v, err)
			} else {
				gout[key] = conv
			}
		case im.serverFields[key].key != "":
			if conv, ok := im.serverValue(g, key, v); ok {
				defaults[key] = conv
			}
		case barmanOnly[key] != "":
			im.warn(g, key, "option %s ignored: %s", key, barmanOnly[key])
		default:
			im.warn(g, key, "unknown option %s ignored", key)
		}
	}
	if _, ok := gout["barman_home"]; !ok {
		gout["barman_home"] = barmanDefaultHome
	}
	return gout, defaults
}

// convertServer converts one server section on top of the [barman]
// defaults; false when the section is skipped (a configuration model) or
// its name is invalid.
func (im *iniImport) convertServer(sec *iniSection, defaults map[string]any) (map[string]any, bool) {
	if m, ok := im.value(sec, "model"); ok {
		b, err := ParseBool(m)
		if err != nil {
			im.invalid(sec, "model", m, err)
			return nil, false
		}
		if b {
			im.warn(sec, "model", "configuration model skipped: models are not implemented")
			return nil, false
		}
	}
	if err := ValidServerName(sec.name); err != nil {
		im.errs = append(im.errs, &Error{File: im.name, Line: sec.line, Server: sec.name, Err: err})
		return nil, false
	}
	out := maps.Clone(defaults)
	for _, key := range sec.keys {
		v, ok := im.value(sec, key)
		if !ok {
			delete(out, key)
			continue
		}
		switch {
		case im.serverFields[key].key != "":
			if conv, ok := im.serverValue(sec, key, v); ok {
				out[key] = conv
			} else {
				delete(out, key)
			}
		case key == "model":
		case barmanOnly[key] != "":
			im.warn(sec, key, "option %s ignored: %s", key, barmanOnly[key])
		case im.globalFields[key].key != "":
			im.warn(sec, key, "global option %s ignored in a server section", key)
		default:
			im.warn(sec, key, "unknown option %s ignored", key)
		}
	}
	if _, ok := out["backup_method"]; !ok {
		im.warn(sec, "backup_method", "backup_method not set: Barman's default is rsync, Cellar takes backups with the postgres method")
		out["backup_method"] = string(BackupMethodPostgres)
	}
	return out, true
}

// serverValue converts server option key = v of sec. Barman values Cellar
// cannot honour are rewritten to the nearest supported one, or dropped,
// with a warning; a value Barman itself would refuse is an error. false
// means the option is not written.
func (im *iniImport) serverValue(sec *iniSection, key, v string) (any, bool) {
	switch key {
	case "backup_method":
		return im.backupMethod(sec, v)
	case "compression":
		return im.compression(sec, v)
	}
	conv, err := convertOption(im.serverFields[key], v)
	if err != nil {
		im.invalid(sec, key, v, err)
		return nil, false
	}
	return conv, true
}

func (im *iniImport) backupMethod(sec *iniSection, v string) (any, bool) {
	var m BackupMethod
	err := m.UnmarshalText([]byte(v))
	switch {
	case err == nil:
		return string(m), true
	case errors.Is(err, ErrUnsupported):
		im.warn(sec, "backup_method", "backup_method %s is not supported by Cellar; changed to postgres (needs streaming_conninfo with replication rights)", strings.ToLower(v))
		return string(BackupMethodPostgres), true
	}
	im.invalid(sec, "backup_method", v, err)
	return nil, false
}

func (im *iniImport) compression(sec *iniSection, v string) (any, bool) {
	var c Compression
	err := c.UnmarshalText([]byte(v))
	lc := strings.ToLower(v)
	switch {
	case err == nil && c != CompressionBzip2:
		return string(c), true
	case c == CompressionBzip2 || lc == "pybzip2":
		im.warn(sec, "compression", "compression %s changed to gzip: Cellar reads existing bzip2 WALs but writes new ones with gzip", lc)
		return string(CompressionGzip), true
	case lc == "pigz" || lc == "pygzip":
		im.warn(sec, "compression", "compression %s changed to gzip (same file format)", lc)
		return string(CompressionGzip), true
	case errors.Is(err, ErrUnsupported):
		im.warn(sec, "compression", "compression %s dropped: Cellar cannot write it, and cannot read WALs already stored with it", lc)
		return nil, false
	}
	im.invalid(sec, "compression", v, err)
	return nil, false
}

// encodeImported renders the converted sections as config.yaml.
func encodeImported(name string, gout, sout map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Cellar configuration converted from %s.\n# Options not shown take their defaults; see config.yaml in the Cellar sources.\n", name)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"global": gout, "servers": sout}); err != nil {
		return nil, fmt.Errorf("%s: encoding YAML: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%s: encoding YAML: %w", name, err)
	}
	return buf.Bytes(), nil
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

// convertOption checks v against the field's parser and returns the
// value to write in YAML: booleans and integers typed, the rest as
// strings; or the parser's error.
func convertOption(f field, v string) (any, error) {
	if f.key == "" || f.sub {
		return nil, fmt.Errorf("config: internal: %q is not an option", f.key)
	}
	dst := reflect.New(f.typ).Elem()
	if err := decodeValue(dst, v); err != nil {
		return nil, err
	}
	switch x := dst.Interface().(type) {
	case time.Duration:
		return formatDuration(x), nil
	case RetentionPolicy:
		return x.String(), nil
	}
	switch dst.Kind() {
	case reflect.Bool:
		return dst.Bool(), nil
	case reflect.Int:
		return int(dst.Int()), nil
	}
	if slices.Contains([]string{"backup_method", "compression", "backup_compression", "reuse_backup", "create_slot", "log_level"}, f.key) {
		return fmt.Sprint(dst.Interface()), nil // canonical spelling
	}
	return v, nil
}
