package catalog

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Barman stores several backup.info fields as Python literals
// (ast.literal_eval on read, repr on write). This file holds a small,
// self-contained reader for the subset those fields use (None, booleans,
// numbers, str/bytes, tuples, lists, dicts) and the repr formatting needed to
// write them back.

// pyKind tells which Python type a pyValue holds.
type pyKind int

const (
	pyNone pyKind = iota
	pyBool
	pyInt
	pyFloat
	pyStr
	pyTuple
	pyList
	pyDict
)

// pyValue is a parsed Python literal.
type pyValue struct {
	kind  pyKind
	b     bool
	i     int64
	f     float64
	s     string
	items []pyValue // tuple, list; dict as key,value pairs
}

// errPyLiteral is wrapped by every literal syntax error.
var errPyLiteral = errors.New("invalid Python literal")

// maxPyDepth bounds nesting so hostile input cannot exhaust the stack.
const maxPyDepth = 64

type pyParser struct {
	s   string
	pos int
}

// parsePyLiteral parses a whole string as one Python literal.
func parsePyLiteral(s string) (pyValue, error) {
	p := &pyParser{s: s}
	v, err := p.value(0)
	if err != nil {
		return pyValue{}, err
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return pyValue{}, p.errorf("trailing characters")
	}
	return v, nil
}

func (p *pyParser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", errPyLiteral, p.pos, fmt.Sprintf(format, args...))
}

func (p *pyParser) skipSpace() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			p.pos++
		default:
			return
		}
	}
}

func (p *pyParser) value(depth int) (pyValue, error) {
	if depth > maxPyDepth {
		return pyValue{}, p.errorf("nesting too deep")
	}
	p.skipSpace()
	if p.pos >= len(p.s) {
		return pyValue{}, p.errorf("unexpected end")
	}
	c := p.s[p.pos]
	switch {
	case c == '[':
		p.pos++
		items, err := p.sequence(']', depth)
		return pyValue{kind: pyList, items: items}, err
	case c == '(':
		p.pos++
		items, err := p.sequence(')', depth)
		return pyValue{kind: pyTuple, items: items}, err
	case c == '{':
		p.pos++
		return p.dict(depth)
	case c == '\'' || c == '"':
		s, err := p.str(false)
		return pyValue{kind: pyStr, s: s}, err
	case (c == 'b' || c == 'B') && p.pos+1 < len(p.s) && (p.s[p.pos+1] == '\'' || p.s[p.pos+1] == '"'):
		p.pos++
		s, err := p.str(true)
		return pyValue{kind: pyStr, s: s}, err
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		return p.number()
	}
	for _, kw := range []struct {
		word string
		v    pyValue
	}{
		{"None", pyValue{kind: pyNone}},
		{"True", pyValue{kind: pyBool, b: true}},
		{"False", pyValue{kind: pyBool, b: false}},
	} {
		if strings.HasPrefix(p.s[p.pos:], kw.word) {
			end := p.pos + len(kw.word)
			if end == len(p.s) || !isIdentByte(p.s[end]) {
				p.pos = end
				return kw.v, nil
			}
		}
	}
	return pyValue{}, p.errorf("unexpected character %q", c)
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func (p *pyParser) sequence(closer byte, depth int) ([]pyValue, error) {
	var items []pyValue
	for {
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] == closer {
			p.pos++
			return items, nil
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		p.skipSpace()
		if p.pos >= len(p.s) {
			return nil, p.errorf("unterminated sequence")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case closer:
		default:
			return nil, p.errorf("expected ',' or %q", closer)
		}
	}
}

func (p *pyParser) dict(depth int) (pyValue, error) {
	var items []pyValue
	for {
		p.skipSpace()
		if p.pos < len(p.s) && p.s[p.pos] == '}' {
			p.pos++
			return pyValue{kind: pyDict, items: items}, nil
		}
		k, err := p.value(depth + 1)
		if err != nil {
			return pyValue{}, err
		}
		p.skipSpace()
		if p.pos >= len(p.s) || p.s[p.pos] != ':' {
			return pyValue{}, p.errorf("expected ':' in dict")
		}
		p.pos++
		v, err := p.value(depth + 1)
		if err != nil {
			return pyValue{}, err
		}
		items = append(items, k, v)
		p.skipSpace()
		if p.pos >= len(p.s) {
			return pyValue{}, p.errorf("unterminated dict")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case '}':
		default:
			return pyValue{}, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *pyParser) number() (pyValue, error) {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '_' ||
			c == '-' || c == '+' || c == 'x' || c == 'X' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' {
			// A sign is only part of the number at the start or after an exponent.
			if (c == '-' || c == '+') && p.pos > start && p.s[p.pos-1] != 'e' && p.s[p.pos-1] != 'E' {
				break
			}
			p.pos++
			continue
		}
		break
	}
	lit := p.s[start:p.pos]
	if i, err := strconv.ParseInt(lit, 0, 64); err == nil {
		return pyValue{kind: pyInt, i: i}, nil
	}
	if strings.ContainsAny(lit, "xX") {
		return pyValue{}, p.errorf("invalid number %q", lit)
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(lit, "_", ""), 64)
	if err != nil {
		return pyValue{}, p.errorf("invalid number %q", lit)
	}
	return pyValue{kind: pyFloat, f: f}, nil
}

// str reads a quoted string (the opening quote is at p.pos). Escapes follow
// Python; bytes literals are decoded byte-wise.
func (p *pyParser) str(isBytes bool) (string, error) {
	q := p.s[p.pos]
	p.pos++
	var sb strings.Builder
	for {
		if p.pos >= len(p.s) {
			return "", p.errorf("unterminated string")
		}
		c := p.s[p.pos]
		if c == q {
			p.pos++
			return sb.String(), nil
		}
		if c == '\n' {
			return "", p.errorf("newline in string")
		}
		if c != '\\' {
			if isBytes {
				// Bytes are kept as Latin-1 runes so the string stays
				// valid UTF-8 and repr reads back the same.
				sb.WriteRune(rune(c))
			} else {
				sb.WriteByte(c)
			}
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(p.s) {
			return "", p.errorf("unterminated escape")
		}
		e := p.s[p.pos]
		p.pos++
		switch e {
		case '\\', '\'', '"':
			sb.WriteByte(e)
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'a':
			sb.WriteByte('\a')
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'v':
			sb.WriteByte('\v')
		case '\n':
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if isBytes && e != 'x' {
				sb.WriteByte('\\')
				sb.WriteByte(e)
				continue
			}
			if p.pos+n > len(p.s) {
				return "", p.errorf("short \\%c escape", e)
			}
			v, err := strconv.ParseUint(p.s[p.pos:p.pos+n], 16, 32)
			if err != nil {
				return "", p.errorf("bad \\%c escape", e)
			}
			p.pos += n
			if isBytes {
				sb.WriteRune(rune(byte(v)))
			} else {
				if v > unicode.MaxRune {
					return "", p.errorf("escape beyond Unicode")
				}
				sb.WriteRune(rune(v))
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(e - '0')
			for k := 0; k < 2 && p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '7'; k++ {
				v = v*8 + int(p.s[p.pos]-'0')
				p.pos++
			}
			if isBytes {
				v &= 0xff
			}
			sb.WriteRune(rune(v))
		default:
			// Python keeps unknown escapes verbatim.
			sb.WriteByte('\\')
			sb.WriteByte(e)
		}
	}
}

// pyReprStr formats s like Python 3 repr(str).
func pyReprStr(s string) string {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	var sb strings.Builder
	sb.Grow(len(s) + 2)
	sb.WriteByte(quote)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Not valid UTF-8: Barman could not have written it; keep the
			// byte recoverable.
			fmt.Fprintf(&sb, "\\x%02x", s[i])
			i++
			continue
		}
		i += size
		switch {
		case r == rune(quote) || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, "\\x%02x", r)
		case r < 0x7f:
			sb.WriteRune(r)
		case unicode.IsPrint(r):
			sb.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&sb, "\\x%02x", r)
		case r <= 0xffff:
			fmt.Fprintf(&sb, "\\u%04x", r)
		default:
			fmt.Fprintf(&sb, "\\U%08x", r)
		}
	}
	sb.WriteByte(quote)
	return sb.String()
}

// PyFloat formats f like Python 3 repr(float) / str(float): the shortest
// digits that round-trip, always with a decimal point or exponent, and
// scientific notation only below 1e-4 or from 1e16 up.
func PyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // e.g. "-1.2345e+09"
	neg := strings.HasPrefix(e, "-")
	if neg {
		e = e[1:]
	}
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1 // value = 0.digits * 10^decpt
	var sb strings.Builder
	if neg {
		sb.WriteByte('-')
	}
	if f == 0 {
		sb.WriteString("0.0")
		return sb.String()
	}
	if decpt <= -4 || decpt > 16 {
		sb.WriteByte(digits[0])
		if len(digits) > 1 {
			sb.WriteByte('.')
			sb.WriteString(digits[1:])
		}
		sb.WriteByte('e')
		x := decpt - 1
		if x < 0 {
			sb.WriteByte('-')
			x = -x
		} else {
			sb.WriteByte('+')
		}
		if x < 10 {
			sb.WriteByte('0')
		}
		sb.WriteString(strconv.Itoa(x))
		return sb.String()
	}
	switch {
	case decpt <= 0:
		sb.WriteString("0.")
		sb.WriteString(strings.Repeat("0", -decpt))
		sb.WriteString(digits)
	case decpt >= len(digits):
		sb.WriteString(digits)
		sb.WriteString(strings.Repeat("0", decpt-len(digits)))
		sb.WriteString(".0")
	default:
		sb.WriteString(digits[:decpt])
		sb.WriteByte('.')
		sb.WriteString(digits[decpt:])
	}
	return sb.String()
}

// repr formats v like Python repr.
func (v pyValue) repr() string {
	switch v.kind {
	case pyNone:
		return "None"
	case pyBool:
		if v.b {
			return "True"
		}
		return "False"
	case pyInt:
		return strconv.FormatInt(v.i, 10)
	case pyFloat:
		return PyFloat(v.f)
	case pyStr:
		return pyReprStr(v.s)
	case pyTuple, pyList:
		parts := make([]string, len(v.items))
		for i, it := range v.items {
			parts[i] = it.repr()
		}
		if v.kind == pyList {
			return "[" + strings.Join(parts, ", ") + "]"
		}
		if len(parts) == 1 {
			return "(" + parts[0] + ",)"
		}
		return "(" + strings.Join(parts, ", ") + ")"
	case pyDict:
		parts := make([]string, 0, len(v.items)/2)
		for i := 0; i+1 < len(v.items); i += 2 {
			parts = append(parts, v.items[i].repr()+": "+v.items[i+1].repr())
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return "None"
}
