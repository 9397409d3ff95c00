package postgres

import (
	"regexp"
	"strings"
	"sync"
)

// redacted replaces secret values in conninfo strings and error messages.
const redacted = "********"

var (
	// Keyword form: password / sslpassword followed by a quoted value
	// (backslash escapes, possibly unterminated, hiding the rest) or a bare
	// value running to the next whitespace.
	// Regexps here are compiled on first use, not at package init: every
	// cellar process (restore_command starts one per WAL segment) would
	// pay for them.
	kwPasswordRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)(^|[\s'"` + "`" + `(])((?:ssl)?password\s*=\s*)('(?:\\.|[^'\\])*'?|(?:\\.|[^\s\\'"` + "`" + `)])*)`)
	})
	// URI query parameters.
	uriQueryPasswordRe = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`(?i)([?&](?:ssl)?password=)([^&#\s'"` + "`" + `)]*)`)
	})
	// URI userinfo: scheme://user:secret@host (the secret ends at the last
	// '@' before the host part).
	uriUserinfoRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)(postgres(?:ql)?://[^:/?#@\s]*:)([^/?#\s]*)(@)`) })
)

// RedactConninfo returns s (a conninfo in keyword or URI form, or any text
// that embeds one, such as an error message) with every password value
// replaced by "********". It is best effort for malformed input but errs on
// the side of hiding too much.
func RedactConninfo(s string) string {
	if !strings.Contains(strings.ToLower(s), "password") && !strings.Contains(s, "://") {
		return s
	}
	s = uriUserinfoRe().ReplaceAllString(s, "${1}"+redacted+"${3}")
	s = uriQueryPasswordRe().ReplaceAllString(s, "${1}"+redacted)
	return kwPasswordRe().ReplaceAllString(s, "${1}${2}"+redacted)
}

// redactError hides passwords in an error's text while keeping the chain
// intact for errors.Is/As (e.g. *pgconn.PgError, context.DeadlineExceeded).
type redactError struct {
	msg string
	err error
}

func (e *redactError) Error() string { return e.msg }
func (e *redactError) Unwrap() error { return e.err }

// redactErr wraps err so that neither conninfo passwords nor the literal
// password (which pgconn may have read from a passfile) can appear in it.
func redactErr(err error, password string) error {
	if err == nil {
		return nil
	}
	msg := RedactConninfo(err.Error())
	// Very short passwords would mangle unrelated words; they are also
	// what the regexps above already catch when they came from conninfo.
	if len(password) >= 4 {
		msg = strings.ReplaceAll(msg, password, redacted)
	}
	return &redactError{msg: msg, err: err}
}
