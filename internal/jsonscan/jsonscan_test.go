package jsonscan

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// whole reports whether b is exactly one value, as the readers use a Scanner.
func whole[T string | []byte](b T, utf8Only bool, maxDepth int) error {
	s := Scanner[T]{B: b, UTF8: utf8Only, MaxDepth: maxDepth}
	s.Space()
	if err := s.Value(); err != nil {
		return err
	}
	s.Space()
	if s.Pos != len(b) {
		return &SyntaxError{Offset: s.Pos, What: "data after the value"}
	}
	return nil
}

// FuzzScannerMatchesEncodingJSON holds the grammar to encoding/json's: left
// alone, UTF-8 is as encoding/json reads it; checked, valid UTF-8 is also
// required. Strings and byte slices read alike.
func FuzzScannerMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `{"a":[1,-2.5e+3,true,false,null,"x\u00e9\n"]}`, ` "s" `, `0`, `-0.0E-0`,
		`01`, `1.`, `.5`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `"\x"`, `"\u12g4"`, "\"\x01\"", "\"\xff\"", `tru`, `{"a":{"b":[[]]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := json.Valid(b)
		if got := whole(b, false, 0) == nil; got != valid {
			t.Errorf("%q: scanner says %v, encoding/json %v", b, got, valid)
		}
		if got := whole(string(b), false, 0) == nil; got != valid {
			t.Errorf("%q as a string: scanner says %v, encoding/json %v", b, got, valid)
		}
		if got, want := whole(b, true, 0) == nil, valid && utf8.Valid(b); got != want {
			t.Errorf("%q with UTF-8 checked: scanner says %v, want %v", b, got, want)
		}
	})
}

func TestScannerErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int
		eof    bool
		what   string
	}{
		{`{"a":1`, 6, true, "expecting ',' or '}'"},
		{`[1 2]`, 3, false, "expecting ',' or ']'"},
		{`{1:2}`, 1, false, "expecting a member name"},
		{`{"a" 1}`, 5, false, "expecting ':'"},
		{`"ab`, 3, true, "in a string"},
		{`"\q"`, 2, false, "in a string escape"},
		{`"\u12"`, 6, true, "in a \\u escape"},
		{"\"a\x01\"", 2, false, "a control character in a string"},
		{"\"\xff\"", 1, false, "invalid UTF-8 in a string"},
		{`-x`, 1, false, "in a number"},
		{`nul`, 0, false, "expecting a value"},
	} {
		err := whole(tc.in, true, 0)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != tc.offset || se.EOF != tc.eof || se.What != tc.what {
			t.Errorf("%q: %#v, want offset %d, eof %v, %q", tc.in, err, tc.offset, tc.eof, tc.what)
		}
	}
}

func TestScannerDepth(t *testing.T) {
	if err := whole(strings.Repeat("[", 8)+strings.Repeat("]", 8), false, 8); err != nil {
		t.Errorf("8 levels under a limit of 8: %v", err)
	}
	var de *DepthError
	if err := whole(strings.Repeat("[", 9)+strings.Repeat("]", 9), false, 8); !errors.As(err, &de) || de.Max != 8 {
		t.Errorf("9 levels under a limit of 8: %v", err)
	}
	if err := whole(`[[],[1],[]]`, false, 2); err != nil {
		t.Errorf("siblings count once: %v", err)
	}
}

// A successful scan allocates nothing.
func TestScannerAllocatesNothing(t *testing.T) {
	b := []byte(`{"a":[1,-2.5e+3,true,false,null,"x\u00e9\n"],"b":{"c":"d"}}`)
	if n := testing.AllocsPerRun(100, func() { _ = whole(b, true, 8) }); n != 0 {
		t.Errorf("%v allocations a scan", n)
	}
}
