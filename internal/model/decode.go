package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// serviceNodeIn is ServiceNode as read: the same fields, but methods decoded
// straight into a list. A full rebuild parses every entry of every env, and
// reflecting each method into a map[string]bool was most of its cost.
type serviceNodeIn struct {
	ProtoCount int        `json:"proto_count"`
	LeaseID    int64      `json:"lease_id"`
	RunDate    string     `json:"run_date"`
	Methods    methodList `json:"methods"`
	Network    Network    `json:"network"`
	Kernel     Kernel     `json:"kernel"`
	Meta       Meta       `json:"meta"`
}

// methodList decodes the wire's {"/pkg.Svc/M": true, ...} into the names
// mapped to true, with the library's semantics: a later duplicate key wins,
// and a value that is not a boolean makes the entry invalid.
type methodList struct {
	names  []string
	intern *Interner
}

func (l *methodList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		l.names = nil
		return nil
	}
	// encoding/json has already checked that b is valid JSON.
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errors.New("methods: not a JSON object")
	}
	out := make([]string, 0, 16)
	var off []string // keys set to false, to honour "last duplicate wins"
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != '}' {
		key, next, err := readString(b, i, l.intern)
		if err != nil {
			return err
		}
		i = skipSpace(b, next)
		i = skipSpace(b, i+1) // the ':'
		switch {
		case hasPrefixAt(b, i, "true"):
			out = append(out, key)
			off = removeString(off, key)
			i += 4
		case hasPrefixAt(b, i, "false"), hasPrefixAt(b, i, "null"):
			// null decodes to false in the library's map[string]bool.
			out = removeString(out, key)
			off = append(off, key)
			i += len("null")
			if b[i-len("null")] == 'f' {
				i++
			}
		default:
			return fmt.Errorf("methods: value of %q is not a boolean", key)
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	l.names = out
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefixAt(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// readString reads the JSON string starting at b[i] == '"'; escapes and
// invalid UTF-8, never in valid method names, go through encoding/json.
func readString(b []byte, i int, intern *Interner) (string, int, error) {
	if i >= len(b) || b[i] != '"' {
		return "", i, errors.New("methods: expected a string key")
	}
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			if !escaped && utf8.Valid(b[i+1:j]) {
				return intern.String(b[i+1 : j]), j + 1, nil
			}
			var s string
			if err := json.Unmarshal(b[i:j+1], &s); err != nil {
				return "", j + 1, fmt.Errorf("methods: %w", err)
			}
			return s, j + 1, nil
		}
	}
	return "", len(b), errors.New("methods: unterminated string")
}

func removeString(list []string, s string) []string {
	for k := 0; k < len(list); k++ {
		if list[k] == s {
			list = append(list[:k], list[k+1:]...)
			k--
		}
	}
	return list
}

// Interner hands out one shared copy of equal strings. Every instance of an
// app repeats the same method names: sharing them saves most of a rebuild's
// allocations and most of the index's memory. It is not safe for concurrent
// use; a nil Interner copies every string.
type Interner struct {
	m map[string]string
}

// maxInterned bounds the table; past it, it starts afresh (strings already
// handed out stay valid).
const maxInterned = 1 << 16

// NewInterner returns an empty Interner.
func NewInterner() *Interner { return &Interner{m: make(map[string]string)} }

// String returns the shared copy of string(b).
func (in *Interner) String(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	if len(in.m) >= maxInterned {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	return s
}
