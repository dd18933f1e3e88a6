package httprule

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func mustParse(t testing.TB, s string) *Template {
	t.Helper()
	tmpl, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return tmpl
}

func TestParseCanonical(t *testing.T) {
	for _, tc := range []struct {
		in, canonical, pattern string
		fieldPaths             []string
		verb                   string
	}{
		{"/", "/", "/", nil, ""},
		{"/v1/app/type", "/v1/app/type", "/v1/app/type", nil, ""},
		// http.proto: {var} is {var=*}.
		{"/v1/messages/{message_id}", "/v1/messages/{message_id}", "/v1/messages/*", []string{"message_id"}, ""},
		{"/v1/messages/{message_id=*}", "/v1/messages/{message_id}", "/v1/messages/*", []string{"message_id"}, ""},
		{"/v1/{name=messages/*}", "/v1/{name=messages/*}", "/v1/messages/*", []string{"name"}, ""},
		{"/v1/users/{user_id}/messages/{message_id}", "/v1/users/{user_id}/messages/{message_id}", "/v1/users/*/messages/*", []string{"user_id", "message_id"}, ""},
		{"/v1/messages/{message_id}/{sub.subfield}", "/v1/messages/{message_id}/{sub.subfield}", "/v1/messages/*/*", []string{"message_id", "sub.subfield"}, ""},
		{"/v1/{name=projects/*/locations/**}", "/v1/{name=projects/*/locations/**}", "/v1/projects/*/locations/**", []string{"name"}, ""},
		{"/v1/{path=**}", "/v1/{path=**}", "/v1/**", []string{"path"}, ""},
		{"/**", "/**", "/**", nil, ""},
		{"/v1/*/x", "/v1/*/x", "/v1/*/x", nil, ""},
		{"/v1/{name=operations/*}:cancel", "/v1/{name=operations/*}:cancel", "/v1/operations/*:cancel", []string{"name"}, "cancel"},
		{"/v1/{x=**}:verb", "/v1/{x=**}:verb", "/v1/**:verb", []string{"x"}, "verb"},
		{"/v1:batchGet", "/v1:batchGet", "/v1:batchGet", nil, "batchGet"},
		// Percent-escapes: decoded where they need not be, upper-case where
		// they must stay.
		{"/v1/%61pp", "/v1/app", "/v1/app", nil, ""},
		{"/v1/a%2fb", "/v1/a%2Fb", "/v1/a%2Fb", nil, ""},
		{"/v1/a%3Ab", "/v1/a%3Ab", "/v1/a%3Ab", nil, ""},
		{"/v1/%2A", "/v1/%2A", "/v1/%2A", nil, ""},
		{"/v1/a*", "/v1/a*", "/v1/a*", nil, ""},
		{"/v1/%20x:do%2fit", "/v1/%20x:do%2Fit", "/v1/%20x:do%2Fit", nil, "do/it"},
		{"/v1/a=b/@x!$&'()+,;", "/v1/a=b/@x!$&'()+,;", "/v1/a=b/@x!$&'()+,;", nil, ""},
		{"/v1/{_x9=a=b}", "/v1/{_x9=a=b}", "/v1/a=b", []string{"_x9"}, ""},
	} {
		tmpl := mustParse(t, tc.in)
		if got := tmpl.String(); got != tc.canonical {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.canonical)
		}
		if got := tmpl.Pattern(); got != tc.pattern {
			t.Errorf("Parse(%q).Pattern() = %q, want %q", tc.in, got, tc.pattern)
		}
		if got := tmpl.FieldPaths(); !slices.Equal(got, tc.fieldPaths) {
			t.Errorf("Parse(%q).FieldPaths() = %q, want %q", tc.in, got, tc.fieldPaths)
		}
		if got := tmpl.Verb(); got != tc.verb {
			t.Errorf("Parse(%q).Verb() = %q, want %q", tc.in, got, tc.verb)
		}
		again := mustParse(t, tmpl.String())
		if again.String() != tmpl.String() || again.Pattern() != tmpl.Pattern() {
			t.Errorf("Parse(%q) of the canonical %q is %q", tc.in, tmpl.String(), again.String())
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int
		reason string
	}{
		{"", 0, `starts with "/"`},
		{"v1/app", 0, `starts with "/"`},
		{"//", 1, "empty segment"},
		{"/v1/", 4, "empty segment"},
		{"/v1//app", 4, "empty segment"},
		{"/v1/{x=}", 7, "empty segment"},
		{"/:verb", 1, "empty segment"},
		{"/v1/:verb", 4, "empty segment"},
		{"/v1/**/x", 4, `"**" must be the last segment`},
		{"/v1/{x=**}/y", 7, `"**" must be the last segment`},
		{"/v1/{x=**}/{y}", 7, `"**" must be the last segment`},
		{"/v1/**/**", 4, `"**" must be the last segment`},
		{"/v1/{x={y}}", 7, "nested in the variable opened at byte 4"},
		{"/v1/{a=b/{c}}", 9, "nested"},
		{"/v1/{id}/{id}", 10, "variable id is bound twice"},
		{"/v1/{a.b}/{a.b}", 11, "bound twice"},
		{"/v1/{a}/{a.b}", 9, "variable a.b is inside variable a"},
		{"/v1/{a.b}/{a}", 11, "variable a contains variable a.b"},
		{"/v1/{}", 5, "empty field name"},
		{"/v1/{=*}", 5, "empty field name"},
		{"/v1/{a.}", 7, "empty field name"},
		{"/v1/{.a}", 5, "empty field name"},
		{"/v1/{1a}", 5, "starts with a letter"},
		{"/v1/{a-b}", 6, `unexpected '-' in a variable's field path`},
		{"/v1/{id", 4, `not closed by "}"`},
		{"/v1/{id=*", 4, `not closed by "}"`},
		{"/v1/{id=a:b}", 9, "unexpected ':' in a variable"},
		{"/v1/a}", 5, "unexpected '}'"},
		{"/v1/*a", 4, `"*" and "**" must be a whole segment`},
		{"/v1/***", 4, `must be a whole segment`},
		{"/v1/a b", 5, `' ' may not appear`},
		{"/v1/a?b", 5, `'?' may not appear`},
		{"/v1/a#b", 5, `'#' may not appear`},
		{"/v1/a{b}", 5, `'{' may not appear`},
		{"/v1/é", 4, `may not appear`},
		{"/v1/a%2", 5, `"%" is not followed by two hexadecimal digits`},
		{"/v1/a%zz", 5, `hexadecimal`},
		{"/v1/app:", 7, "the verb after \":\" is empty"},
		{"/v1/app:do/it", 10, "unexpected '/'"},
		{"/v1/app:do:it", 10, "unexpected ':'"},
		{"/v1/app:d o", 9, "' ' may not appear"},
	} {
		_, err := Parse(tc.in)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v, want a *ParseError", tc.in, err)
			continue
		}
		if pe.Offset != tc.offset || !strings.Contains(pe.Reason, tc.reason) || pe.Template != tc.in {
			t.Errorf("Parse(%q): %v; want at byte %d: %s", tc.in, err, tc.offset, tc.reason)
		}
	}
}
