package httprule

import (
	"fmt"
	"strings"
)

// segKind is what one segment of a template matches.
type segKind uint8

const (
	// segLiteral matches one request segment equal to its text, both decoded.
	segLiteral segKind = iota
	// segStar, "*", matches any one request segment.
	segStar
	// segDoubleStar, "**", matches zero or more request segments; it is
	// always a template's last segment.
	segDoubleStar
)

type segment struct {
	kind segKind
	// text is a literal's text, percent-decoded.
	text string
}

// variable binds the request segments that template segments
// [start, end) match to a field path.
type variable struct {
	fieldPath  string
	start, end int
}

// Template is a parsed google.api.http path template. It is immutable.
type Template struct {
	segs []segment
	vars []variable
	// verb is the custom verb, percent-decoded; "" when there is none.
	verb string
}

// ParseError says why a template is malformed and where.
type ParseError struct {
	Template string
	// Offset is the byte of Template where the problem was found.
	Offset int
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("path template %q: at byte %d: %s", e.Template, e.Offset, e.Reason)
}

// Parse reads a path template: "/" Segments [":" Verb], as
// google/api/http.proto defines it, or "/" alone for the root.
func Parse(s string) (*Template, error) {
	if s == "" || s[0] != '/' {
		return nil, &ParseError{s, 0, `a template starts with "/"`}
	}
	t := &Template{}
	if s == "/" {
		return t, nil
	}
	p := parser{s: s, i: 1, t: t, doubleStarAt: -1}
	if err := p.segments(); err != nil {
		return nil, err
	}
	if p.peek() == ':' {
		colon := p.i
		p.i++
		verb, err := p.literal()
		if err != nil {
			return nil, err
		}
		if verb == "" {
			return nil, p.fail(colon, "the verb after \":\" is empty")
		}
		t.verb = verb
	}
	if p.i < len(s) {
		return nil, p.fail(p.i, fmt.Sprintf("unexpected %q", s[p.i]))
	}
	return t, nil
}

// parser reads a template at s[i:] into t.
type parser struct {
	s string
	i int
	t *Template
	// inVar: a variable's segments are being read, opened at varOpen.
	inVar   bool
	varOpen int
	// doubleStarAt is where the "**" was, -1 before one: nothing but the
	// verb may follow it.
	doubleStarAt int
}

const eof = -1

func (p *parser) peek() int {
	if p.i < len(p.s) {
		return int(p.s[p.i])
	}
	return eof
}

func (p *parser) fail(at int, reason string) *ParseError {
	return &ParseError{p.s, at, reason}
}

// segments reads Segment {"/" Segment}.
func (p *parser) segments() error {
	for {
		if err := p.segment(); err != nil {
			return err
		}
		if p.peek() != '/' {
			return nil
		}
		p.i++
	}
}

// segment reads "*", "**", a variable or a literal.
func (p *parser) segment() error {
	start := p.i
	if p.doubleStarAt >= 0 {
		return p.fail(p.doubleStarAt, `"**" must be the last segment (only the verb may follow it)`)
	}
	switch p.peek() {
	case eof, '/', ':', '}':
		return p.fail(start, "empty segment")
	case '*':
		kind := segStar
		p.i++
		if p.peek() == '*' {
			kind = segDoubleStar
			p.i++
			p.doubleStarAt = start
		}
		switch p.peek() {
		case eof, '/', ':', '}':
		default:
			return p.fail(start, `"*" and "**" must be a whole segment`)
		}
		p.t.segs = append(p.t.segs, segment{kind: kind})
		return nil
	case '{':
		return p.variable()
	}
	text, err := p.literal()
	if err != nil {
		return err
	}
	p.t.segs = append(p.t.segs, segment{kind: segLiteral, text: text})
	return nil
}

// variable reads "{" FieldPath ["=" Segments] "}".
func (p *parser) variable() error {
	open := p.i
	if p.inVar {
		return p.fail(open, fmt.Sprintf("variable nested in the variable opened at byte %d", p.varOpen))
	}
	p.i++
	fieldPath, err := p.fieldPath()
	if err != nil {
		return err
	}
	for _, v := range p.t.vars {
		switch {
		case v.fieldPath == fieldPath:
			return p.fail(open+1, fmt.Sprintf("variable %s is bound twice", fieldPath))
		case strings.HasPrefix(fieldPath, v.fieldPath+"."):
			return p.fail(open+1, fmt.Sprintf("variable %s is inside variable %s", fieldPath, v.fieldPath))
		case strings.HasPrefix(v.fieldPath, fieldPath+"."):
			return p.fail(open+1, fmt.Sprintf("variable %s contains variable %s", fieldPath, v.fieldPath))
		}
	}
	first := len(p.t.segs)
	switch p.peek() {
	case '=':
		p.i++
		p.inVar, p.varOpen = true, open
		err := p.segments()
		p.inVar = false
		if err != nil {
			return err
		}
	case '}':
		// {var} is {var=*}.
		p.t.segs = append(p.t.segs, segment{kind: segStar})
	case eof:
		return p.fail(open, "variable is not closed by \"}\"")
	default:
		return p.fail(p.i, fmt.Sprintf("unexpected %q in a variable's field path", p.s[p.i]))
	}
	switch p.peek() {
	case '}':
		p.i++
	case eof:
		return p.fail(open, "variable is not closed by \"}\"")
	default:
		return p.fail(p.i, fmt.Sprintf("unexpected %q in a variable (a verb comes after the last segment)", p.s[p.i]))
	}
	p.t.vars = append(p.t.vars, variable{fieldPath: fieldPath, start: first, end: len(p.t.segs)})
	return nil
}

// fieldPath reads IDENT {"." IDENT}, each IDENT a proto field name:
// [A-Za-z_][A-Za-z0-9_]*.
func (p *parser) fieldPath() (string, error) {
	start := p.i
	for {
		identStart := p.i
		for p.i < len(p.s) && isIdentByte(p.s[p.i], p.i == identStart) {
			p.i++
		}
		if p.i == identStart {
			if p.i < len(p.s) && isIdentByte(p.s[p.i], false) {
				return "", p.fail(p.i, "a field name starts with a letter or \"_\"")
			}
			return "", p.fail(p.i, "empty field name in a variable")
		}
		if p.peek() != '.' {
			return p.s[start:p.i], nil
		}
		p.i++
	}
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

// literal reads the pchars (RFC 3986) up to the next "/", ":", "}" or the
// end and returns them percent-decoded. The template's grammar gives ":"
// to the verb, so a literal holds it only percent-encoded.
func (p *parser) literal() (string, error) {
	start := p.i
	escaped := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '/' || c == ':' || c == '}':
			return decodeLiteral(p.s[start:p.i], escaped), nil
		case c == '%':
			if p.i+2 >= len(p.s) || !isHex(p.s[p.i+1]) || !isHex(p.s[p.i+2]) {
				return "", p.fail(p.i, "\"%\" is not followed by two hexadecimal digits")
			}
			escaped = true
			p.i += 3
		case isPChar(c):
			p.i++
		default:
			return "", p.fail(p.i, fmt.Sprintf("%q may not appear in a path template", c))
		}
	}
	return decodeLiteral(p.s[start:p.i], escaped), nil
}

func decodeLiteral(s string, escaped bool) string {
	if !escaped {
		return s
	}
	return unescape(s, false)
}

// isPChar reports whether c may appear unencoded in a literal: RFC 3986's
// pchar but for "%" (an escape's start) and ":" (the verb's).
func isPChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte("!$&'()*+,;=@", c) >= 0
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// String is the template's canonical form: templates that match the same
// paths and bind the same variables to the same segments have the same one.
// A variable of one "*" is written {name}, literals are percent-encoded
// exactly where they must be, with upper-case hexadecimal digits.
func (t *Template) String() string { return t.format(true) }

// Pattern is String with the variables erased: two templates with the same
// Pattern match exactly the same paths, whatever they bind.
func (t *Template) Pattern() string { return t.format(false) }

// Verb is the template's custom verb, percent-decoded; "" when it has none.
func (t *Template) Verb() string { return t.verb }

// FieldPaths are the template's variables, in the order they appear.
func (t *Template) FieldPaths() []string {
	out := make([]string, len(t.vars))
	for i, v := range t.vars {
		out[i] = v.fieldPath
	}
	return out
}

func (t *Template) format(withVars bool) string {
	if len(t.segs) == 0 {
		return "/"
	}
	var b strings.Builder
	vi := 0
	for i := 0; i < len(t.segs); {
		b.WriteByte('/')
		if withVars && vi < len(t.vars) && t.vars[vi].start == i {
			v := t.vars[vi]
			vi++
			b.WriteByte('{')
			b.WriteString(v.fieldPath)
			if v.end-v.start != 1 || t.segs[i].kind != segStar {
				b.WriteByte('=')
				for j := v.start; j < v.end; j++ {
					if j > v.start {
						b.WriteByte('/')
					}
					writeSegment(&b, t.segs[j])
				}
			}
			b.WriteByte('}')
			i = v.end
			continue
		}
		writeSegment(&b, t.segs[i])
		i++
	}
	if t.verb != "" {
		b.WriteByte(':')
		writeLiteral(&b, t.verb, false)
	}
	return b.String()
}

func writeSegment(b *strings.Builder, s segment) {
	switch s.kind {
	case segStar:
		b.WriteByte('*')
	case segDoubleStar:
		b.WriteString("**")
	default:
		writeLiteral(b, s.text, true)
	}
}

// writeLiteral percent-encodes a decoded literal: every byte but pchars,
// and a segment's leading "*", which would read as a wildcard.
func writeLiteral(b *strings.Builder, text string, segment bool) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(text); i++ {
		c := text[i]
		if isPChar(c) && !(segment && i == 0 && c == '*') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
}
