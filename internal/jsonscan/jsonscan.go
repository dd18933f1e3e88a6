// Package jsonscan reads JSON's grammar (RFC 8259) without decoding it:
// where a value ends and whether it is well formed. The registry reads JSON
// by hand in three places — request bodies checked before validation, the
// library's entries decoded without reflection, a heartbeat's run_date
// spliced in place — and all three read the grammar here.
//
// A Scanner allocates nothing unless it fails, and stops at the first byte
// that breaks a rule, so a hostile input costs at most its length.
package jsonscan

import (
	"fmt"
	"unicode/utf8"
)

// Scanner reads B from Pos, which each method moves past what it read. B is
// a string or a byte slice, whichever its reader holds, so that neither is
// copied into the other.
type Scanner[T string | []byte] struct {
	B   T
	Pos int
	// MaxDepth refuses arrays and objects nested deeper within one value
	// (a *DepthError); 0 means no limit.
	MaxDepth int
	// UTF8 refuses strings that are not valid UTF-8, as RFC 8259 text must
	// be. encoding/json's scanner leaves them alone (its decoder replaces
	// the bad bytes), so a reader that must agree with it leaves UTF8 off.
	UTF8 bool

	depth int
}

// SyntaxError says where and how the input breaks the grammar.
type SyntaxError struct {
	// Offset is the byte at fault; len(B) when the input ends early.
	Offset int
	// EOF is true when the input ends before the value does.
	EOF bool
	// What is the rule broken, in a few words ("expecting a value").
	What string
}

func (e *SyntaxError) Error() string {
	if e.EOF {
		return "JSON ends early, " + e.What
	}
	return fmt.Sprintf("JSON invalid at byte %d, %s", e.Offset, e.What)
}

// DepthError is a value nested deeper than the Scanner's MaxDepth.
type DepthError struct{ Max int }

func (e *DepthError) Error() string {
	return fmt.Sprintf("JSON nests deeper than %d levels", e.Max)
}

func (s *Scanner[T]) fail(what string) error {
	if s.Pos >= len(s.B) {
		return &SyntaxError{Offset: len(s.B), EOF: true, What: what}
	}
	return &SyntaxError{Offset: s.Pos, What: what}
}

// Space skips white space.
func (s *Scanner[T]) Space() {
	for s.Pos < len(s.B) {
		switch s.B[s.Pos] {
		case ' ', '\t', '\n', '\r':
			s.Pos++
		default:
			return
		}
	}
}

// Consume reads c if it is next.
func (s *Scanner[T]) Consume(c byte) bool {
	if s.Pos < len(s.B) && s.B[s.Pos] == c {
		s.Pos++
		return true
	}
	return false
}

// Value reads one value of any kind.
func (s *Scanner[T]) Value() error {
	if s.Pos >= len(s.B) {
		return s.fail("expecting a value")
	}
	switch c := s.B[s.Pos]; {
	case c == '{' || c == '[':
		return s.container(c)
	case c == '"':
		return s.String()
	case c == '-' || '0' <= c && c <= '9':
		return s.Number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return s.fail("expecting a value")
}

// container reads an array or object. Its stack stays implicit: the depth
// is bounded, and each container is read by the loop that opened it.
func (s *Scanner[T]) container(open byte) error {
	s.depth++
	if s.MaxDepth > 0 && s.depth > s.MaxDepth {
		return &DepthError{Max: s.MaxDepth}
	}
	closer := byte(']')
	if open == '{' {
		closer = '}'
	}
	s.Pos++
	s.Space()
	if s.Consume(closer) {
		s.depth--
		return nil
	}
	for {
		if open == '{' {
			if s.Pos >= len(s.B) || s.B[s.Pos] != '"' {
				return s.fail("expecting a member name")
			}
			if err := s.String(); err != nil {
				return err
			}
			s.Space()
			if !s.Consume(':') {
				return s.fail("expecting ':'")
			}
			s.Space()
		}
		if err := s.Value(); err != nil {
			return err
		}
		s.Space()
		switch {
		case s.Consume(','):
			s.Space()
		case s.Consume(closer):
			s.depth--
			return nil
		default:
			if closer == '}' {
				return s.fail("expecting ',' or '}'")
			}
			return s.fail("expecting ',' or ']'")
		}
	}
}

// String reads a string, escapes included.
func (s *Scanner[T]) String() error {
	if !s.Consume('"') {
		return s.fail("expecting a string")
	}
	for s.Pos < len(s.B) {
		c := s.B[s.Pos]
		// Most bytes of most strings need no look beyond this.
		if c >= 0x20 && c != '"' && c != '\\' && (c < utf8.RuneSelf || !s.UTF8) {
			s.Pos++
			continue
		}
		switch {
		case c == '"':
			s.Pos++
			return nil
		case c == '\\':
			s.Pos++
			if s.Pos >= len(s.B) {
				return s.fail("in a string escape")
			}
			switch s.B[s.Pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.Pos++
			case 'u':
				if len(s.B)-s.Pos <= 4 {
					s.Pos = len(s.B)
					return s.fail("in a \\u escape")
				}
				for k := s.Pos + 1; k < s.Pos+5; k++ {
					if !isHex(s.B[k]) {
						return s.fail("in a \\u escape")
					}
				}
				s.Pos += 5
			default:
				return s.fail("in a string escape")
			}
		case c < 0x20:
			return s.fail("a control character in a string")
		case c < utf8.RuneSelf || !s.UTF8:
			s.Pos++
		default:
			r, n := decodeRune(s.B[s.Pos:])
			if r == utf8.RuneError && n == 1 {
				return s.fail("invalid UTF-8 in a string")
			}
			s.Pos += n
		}
	}
	return s.fail("in a string")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Number reads a number by the grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *Scanner[T]) Number() error {
	s.Consume('-')
	switch {
	case s.Consume('0'):
	case s.digits() == 0:
		return s.fail("in a number")
	}
	if s.Consume('.') && s.digits() == 0 {
		return s.fail("in a number")
	}
	if s.Consume('e') || s.Consume('E') {
		if !s.Consume('+') {
			s.Consume('-')
		}
		if s.digits() == 0 {
			return s.fail("in a number")
		}
	}
	return nil
}

func (s *Scanner[T]) digits() int {
	start := s.Pos
	for s.Pos < len(s.B) && '0' <= s.B[s.Pos] && s.B[s.Pos] <= '9' {
		s.Pos++
	}
	return s.Pos - start
}

func (s *Scanner[T]) literal(word string) error {
	if !s.Literal(word) {
		return s.fail("expecting a value")
	}
	return nil
}

// Literal reads word (true, false or null) if it is next.
func (s *Scanner[T]) Literal(word string) bool {
	if len(s.B)-s.Pos < len(word) || string(s.B[s.Pos:s.Pos+len(word)]) != word {
		return false
	}
	s.Pos += len(word)
	return true
}

func decodeRune[T string | []byte](b T) (rune, int) {
	switch b := any(b).(type) {
	case string:
		return utf8.DecodeRuneInString(b)
	case []byte:
		return utf8.DecodeRune(b)
	}
	panic("unreachable")
}
