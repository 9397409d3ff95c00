package config

import (
	"log/slog"
	"regexp"
	"strings"
	"sync"
)

// Conninfo is a libpq connection string (keyword form `host=... password=...`
// or URI `postgres://user:pw@host/db`). Every way it is printed — String,
// fmt verbs, slog (LogValue), JSON/YAML (MarshalText) — hides passwords;
// only Raw gives the real value, and only the code that connects calls it.
type Conninfo string

// redactedMark replaces secret values.
const redactedMark = "********"

// secret keywords in keyword form and URI query strings.
var (
	// A keyword value is either single-quoted (backslash escapes, possibly
	// unterminated, in which case the rest of the string is hidden) or runs
	// to the next whitespace. (ssl)password covers both libpq secrets.
	// Regexps here are compiled on first use, not at package init: every
	// cellar process (restore_command starts one per WAL segment) would
	// pay for them.
	kwSecretRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)(^|[\s])((?:ssl)?password\s*=\s*)('(?:\\.|[^'\\])*'?|(?:\\.|[^\s\\])*)`)
	})
	// In a URI query, values run to the next & or #.
	querySecretRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)([?&](?:ssl)?password=)([^&#]*)`) })
)

// Raw returns the connection string with its secrets, for connecting only.
func (c Conninfo) Raw() string { return string(c) }

// IsSet reports whether a connection string was configured.
func (c Conninfo) IsSet() bool { return strings.TrimSpace(string(c)) != "" }

// String returns the connection string with passwords replaced.
func (c Conninfo) String() string { return redactConninfo(string(c)) }

// GoString keeps %#v from printing the secret.
func (c Conninfo) GoString() string { return "config.Conninfo(" + `"` + c.String() + `"` + ")" }

// LogValue implements slog.LogValuer.
func (c Conninfo) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalText implements encoding.TextMarshaler with the redacted form, so
// encoding/json, YAML and slog's JSON handler never see the password.
func (c Conninfo) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (stores the raw value).
func (c *Conninfo) UnmarshalText(b []byte) error {
	*c = Conninfo(strings.TrimSpace(string(b)))
	return nil
}

func redactConninfo(s string) string {
	t := strings.TrimSpace(s)
	lower := strings.ToLower(t)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		return redactURI(s)
	}
	return kwSecretRe().ReplaceAllString(s, "${1}${2}"+redactedMark)
}

// redactURI hides the userinfo password and password query parameters.
// The userinfo ends at the first '@' before any '/', '?' or '#', which is
// how libpq splits a URI (fe-connect.c conninfo_uri_parse_options).
func redactURI(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	auth := rest
	if end >= 0 {
		auth = rest[:end]
	}
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		user := auth[:at]
		if colon := strings.IndexByte(user, ':'); colon >= 0 {
			rest = user[:colon+1] + redactedMark + rest[at:]
		}
	}
	out := s[:i+3] + rest
	return querySecretRe().ReplaceAllString(out, "${1}"+redactedMark)
}
