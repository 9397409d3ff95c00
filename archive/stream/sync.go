package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// IsSynchronousStandby reports whether the server lists the receiver's
// application_name (or "*") in synchronous_standby_names, which is when
// Barman passes --synchronous to pg_receivewal. It reads the setting over
// the replication connection.
func IsSynchronousStandby(ctx context.Context, opts Options) (bool, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return false, err
	}
	c, err := connect(ctx, o)
	if err != nil {
		return false, err
	}
	defer c.Close(context.Background())
	res, err := c.PgConn().Exec(ctx, "SHOW synchronous_standby_names").ReadAll()
	if err != nil {
		return false, fmt.Errorf("server %s: SHOW synchronous_standby_names: %w", o.Server, err)
	}
	if len(res) == 0 || len(res[0].Rows) == 0 || len(res[0].Rows[0]) == 0 {
		return false, fmt.Errorf("server %s: SHOW synchronous_standby_names: no row", o.Server)
	}
	names, err := parseStandbyNames(string(res[0].Rows[0][0]))
	if err != nil {
		return false, fmt.Errorf("server %s: %w", o.Server, err)
	}
	return standbyListed(names, o.ApplicationName), nil
}

// standbyListed matches an application_name the way the server does:
// "*" matches anything, quoted names exactly, others case-insensitively.
func standbyListed(names []standbyName, app string) bool {
	for _, n := range names {
		switch {
		case !n.quoted && n.name == "*":
			return true
		case n.quoted && n.name == app:
			return true
		case !n.quoted && strings.EqualFold(n.name, app):
			return true
		}
	}
	return false
}

type standbyName struct {
	name   string
	quoted bool
}

// parseStandbyNames parses synchronous_standby_names: "", "a, b",
// "N (a, b)", "FIRST N (a, b)", "ANY N (a, b)", with "double-quoted"
// names ("" escapes a quote).
func parseStandbyNames(s string) ([]standbyName, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	// Strip an optional method and count in front of a parenthesised list.
	if i := strings.IndexByte(s, '('); i >= 0 && !strings.Contains(s[:i], `"`) {
		head := strings.Fields(s[:i])
		if len(head) > 2 {
			return nil, fmt.Errorf("synchronous_standby_names %q: unexpected %q", s, s[:i])
		}
		if !strings.HasSuffix(s, ")") {
			return nil, fmt.Errorf("synchronous_standby_names %q: missing )", s)
		}
		s = s[i+1 : len(s)-1]
	}
	var out []standbyName
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			return nil, fmt.Errorf("synchronous_standby_names: empty name")
		}
		var n standbyName
		if s[0] == '"' {
			var b strings.Builder
			i := 1
			for ; ; i++ {
				if i >= len(s) {
					return nil, errors.New("synchronous_standby_names: unterminated quoted name")
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(s[i])
			}
			n = standbyName{name: b.String(), quoted: true}
			s = s[i+1:]
		} else {
			j := strings.IndexByte(s, ',')
			if j < 0 {
				j = len(s)
			}
			n = standbyName{name: strings.TrimSpace(s[:j])}
			s = s[j:]
		}
		if n.name == "" && !n.quoted {
			return nil, errors.New("synchronous_standby_names: empty name")
		}
		out = append(out, n)
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			return out, nil
		}
		if s[0] != ',' {
			return nil, fmt.Errorf("synchronous_standby_names: unexpected %q", s)
		}
		s = s[1:]
	}
}
