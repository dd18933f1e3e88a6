package httprule

import (
	"fmt"
	"slices"
	"testing"
)

func mustMatcher(t testing.TB, rules ...string) *Matcher {
	t.Helper()
	var rs []Rule
	for i := 0; i < len(rules); i += 2 {
		rs = append(rs, Rule{Method: rules[i], Template: mustParse(t, rules[i+1]), ID: i/2 + 1})
	}
	m, err := New(rs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// docRules are the bindings of google/api/http.proto's examples, and the
// cases around them that the precedence rules decide.
var docRules = []string{
	"GET", "/v1/messages/{message_id}", // 1
	"GET", "/v1/users/{user_id}/messages/{message_id}", // 2
	"PATCH", "/v1/messages/{message_id}", // 3
	"GET", "/v1/messages/{message_id}/{sub.subfield}", // 4
	"GET", "/v1/{name=shelves/*/books/*}", // 5
	"GET", "/v1/{name=projects/*/files/**}", // 6
	"POST", "/v1/{name=operations/*}:cancel", // 7
	"GET", "/v1/operations/{name}", // 8
	"GET", "/v1/messages/special", // 9
	"GET", "/v1/files/{path=**}", // 10
	"GET", "/v1/files/readme", // 11
	"GET", "/v1/{x=**}:verb", // 12
	"GET", "/", // 13
	"POST", "/v1/messages:batchGet", // 14
}

func TestMatchDocumentedExamples(t *testing.T) {
	m := mustMatcher(t, docRules...)
	type v = []Var
	for _, tc := range []struct {
		method, path string
		status       Status
		id           int
		vars         []Var
	}{
		// http.proto's examples.
		{"GET", "/v1/messages/123456", Matched, 1, v{{"message_id", "123456"}}},
		{"GET", "/v1/messages/123456?revision=2&sub.subfield=foo", Matched, 1, v{{"message_id", "123456"}}},
		{"GET", "/v1/users/me/messages/123456", Matched, 2, v{{"user_id", "me"}, {"message_id", "123456"}}},
		{"PATCH", "/v1/messages/123456", Matched, 3, v{{"message_id", "123456"}}},
		{"GET", "/v1/messages/123456/foo", Matched, 4, v{{"message_id", "123456"}, {"sub.subfield", "foo"}}},
		{"GET", "/v1/shelves/s1/books/b1", Matched, 5, v{{"name", "shelves/s1/books/b1"}}},
		// Multi-segment "**": any rest, none included.
		{"GET", "/v1/projects/p/files/a/b/c", Matched, 6, v{{"name", "projects/p/files/a/b/c"}}},
		{"GET", "/v1/projects/p/files", Matched, 6, v{{"name", "projects/p/files"}}},
		{"GET", "/v1/projects/p/files/", Matched, 6, v{{"name", "projects/p/files"}}},
		{"GET", "/v1/files/a/b", Matched, 10, v{{"path", "a/b"}}},
		{"GET", "/v1/files", Matched, 10, v{{"path", ""}}},
		// Literal beats variable; a branch without the method is left.
		{"GET", "/v1/messages/special", Matched, 9, nil},
		{"PATCH", "/v1/messages/special", Matched, 3, v{{"message_id", "special"}}},
		{"GET", "/v1/files/readme", Matched, 11, nil},
		{"GET", "/v1/files/readme/x", Matched, 10, v{{"path", "readme/x"}}},
		// Verbs.
		{"POST", "/v1/operations/op1:cancel", Matched, 7, v{{"name", "operations/op1"}}},
		{"GET", "/v1/operations/op1", Matched, 8, v{{"name", "op1"}}},
		{"GET", "/v1/operations/op1:cancel", MethodNotAllowed, 0, nil},
		{"GET", "/v1/operations/op1:other", Matched, 8, v{{"name", "op1:other"}}},
		{"GET", "/v1/operations/op1%3Acancel", Matched, 8, v{{"name", "op1:cancel"}}},
		{"GET", "/v1/operations/op1:cancel/", Matched, 8, v{{"name", "op1:cancel"}}},
		{"GET", "/v1/messages/1:verb", Matched, 12, v{{"x", "messages/1"}}},
		{"GET", "/v1:verb", Matched, 12, v{{"x", ""}}},
		{"POST", "/v1/messages:batchGet", Matched, 14, nil},
		{"GET", "/v1/messages:batchGet", MethodNotAllowed, 0, nil},
		{"POST", "/v1/messages/x:batchGet", NoMatch, 0, nil},
		{"GET", "/v1/messages/x:cancel/y", Matched, 4, v{{"message_id", "x:cancel"}, {"sub.subfield", "y"}}},
		// Escaped segments: a single-segment variable decodes fully, a
		// multi-segment one keeps %2F; literals compare decoded.
		{"GET", "/v1/messages/p%20q%2Fr+", Matched, 1, v{{"message_id", "p q/r+"}}},
		{"GET", "/v1/files/p/foo%20foo/q/bar%2Fbar+", Matched, 10, v{{"path", "p/foo foo/q/bar%2Fbar+"}}},
		{"GET", "/v1/files/a%2fb%zz", Matched, 10, v{{"path", "a%2fb%zz"}}},
		{"GET", "/v1/shelves/s%2F1/books/%62", Matched, 5, v{{"name", "shelves/s%2F1/books/b"}}},
		{"GET", "/v1/messages/%73pecial", Matched, 9, nil},
		{"GET", "/v1/%6Dessages/1", Matched, 1, v{{"message_id", "1"}}},
		{"GET", "/v1/messages/%", Matched, 1, v{{"message_id", "%"}}},
		// Empty segments inside a path are segments; trailing ones go.
		{"GET", "/v1/messages//foo", Matched, 4, v{{"message_id", ""}, {"sub.subfield", "foo"}}},
		{"GET", "/v1/messages/1//", Matched, 1, v{{"message_id", "1"}}},
		{"GET", "/", Matched, 13, nil},
		{"GET", "//", Matched, 13, nil},
		{"GET", "/?q=1", Matched, 13, nil},
		// Nothing.
		{"DELETE", "/v1/messages/1", MethodNotAllowed, 0, nil},
		{"GET", "/v2/messages/1", NoMatch, 0, nil},
		{"GET", "/v1/messages/1/2/3", NoMatch, 0, nil},
		{"GET", "", NoMatch, 0, nil},
		{"GET", "v1/messages/1", NoMatch, 0, nil},
		{"get", "/v1/messages/1", MethodNotAllowed, 0, nil},
	} {
		id, vars, status := m.Match(tc.method, tc.path, nil)
		if status != tc.status || status == Matched && (id != tc.id || !slices.Equal(vars, tc.vars)) {
			t.Errorf("Match(%s %s) = %d %q %v, want %d %q %v", tc.method, tc.path, id, vars, status, tc.id, tc.vars, tc.status)
		}
	}
}

func TestAllow(t *testing.T) {
	m := mustMatcher(t, docRules...)
	for _, tc := range []struct {
		path  string
		allow []string
	}{
		{"/v1/messages/1", []string{"GET", "PATCH"}},
		{"/v1/messages/special", []string{"GET", "PATCH"}},
		{"/v1/operations/op1:cancel", []string{"POST"}},
		{"/v1/messages:batchGet", []string{"POST"}},
		{"/v2", nil},
		{"v2", nil},
	} {
		got := m.Allow(tc.path, []string{"HEAD"})
		if want := append([]string{"HEAD"}, tc.allow...); !slices.Equal(got, want) {
			t.Errorf("Allow(%s) = %q, want %q", tc.path, got, want)
		}
	}
}

// A literal wins over a variable whatever the order of the rules.
func TestMatchPrecedenceIgnoresOrder(t *testing.T) {
	rules := []string{
		"GET", "/v1/app/type/{id}",
		"GET", "/v1/app/type/special",
		"GET", "/v1/app/{rest=**}",
		"GET", "/v1/app/*/x",
	}
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}} {
		var rs []Rule
		for _, i := range order {
			rs = append(rs, Rule{Method: rules[2*i], Template: mustParse(t, rules[2*i+1]), ID: i})
		}
		m, err := New(rs)
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]int{
			"/v1/app/type/special": 1,
			"/v1/app/type/42":      0,
			"/v1/app/type":         2,
			"/v1/app/type/x":       0,
			"/v1/app/kind/x":       3,
			"/v1/app/kind/y":       2,
			"/v1/app":              2,
		} {
			if id, _, st := m.Match("GET", path, nil); st != Matched || id != want {
				t.Errorf("order %v: Match(GET %s) = %d %v, want %d", order, path, id, st, want)
			}
		}
	}
}

// A verb no rule declares stays part of the last segment.
func TestMatchUndeclaredVerb(t *testing.T) {
	m := mustMatcher(t, "GET", "/v1/{name}")
	if _, vars, st := m.Match("GET", "/v1/x:cancel", nil); st != Matched || vars[0].Value != "x:cancel" {
		t.Errorf("Match = %q %v, want name x:cancel", vars, st)
	}
	m = mustMatcher(t, "GET", "/v1/{name}", "POST", "/v2/{name}:cancel")
	if _, _, st := m.Match("GET", "/v1/x:cancel", nil); st != NoMatch {
		t.Errorf("with cancel declared, Match = %v, want no match", st)
	}
}

func TestDoubleStarMatchesRoot(t *testing.T) {
	m := mustMatcher(t, "GET", "/{path=**}")
	for path, want := range map[string]string{"/": "", "/a": "a", "/a/": "a", "/a/b": "a/b"} {
		if _, vars, st := m.Match("GET", path, nil); st != Matched || len(vars) != 1 || vars[0].Value != want {
			t.Errorf("Match(%s) = %q %v, want %q", path, vars, st, want)
		}
	}
}

func TestShadowed(t *testing.T) {
	m := mustMatcher(t,
		"GET", "/v1/{id}",
		"GET", "/v1/{name=*}",
		"GET", "/v1/{x}:v",
		"POST", "/v1/{id}",
		"GET", "/v1/%2A",
		"GET", "/v1/*",
		"GET", "/v1/{p=**}",
		"GET", "/v1/**",
	)
	want := []Shadow{{ID: 2, By: 1}, {ID: 6, By: 1}, {ID: 8, By: 7}}
	if got := m.Shadowed(); !slices.Equal(got, want) {
		t.Errorf("Shadowed() = %v, want %v", got, want)
	}
	if id, vars, _ := m.Match("GET", "/v1/a", nil); id != 1 || vars[0].FieldPath != "id" {
		t.Errorf("Match = %d %q, want the first rule", id, vars)
	}
	if id, _, _ := m.Match("GET", "/v1/*", nil); id != 5 {
		t.Errorf("Match(/v1/*) = %d, want the literal *", id)
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New([]Rule{{Method: "GET"}}); err == nil {
		t.Error("New accepted a rule without a template")
	}
	if _, err := New([]Rule{{Template: mustParse(t, "/")}}); err == nil {
		t.Error("New accepted a rule without a method")
	}
}

func TestMatchManySegments(t *testing.T) {
	m := mustMatcher(t, "GET", "/a/{rest=**}")
	path := "/a"
	want := ""
	for i := range 100 {
		path += fmt.Sprintf("/%d", i)
		if i > 0 {
			want += "/"
		}
		want += fmt.Sprint(i)
	}
	if _, vars, st := m.Match("GET", path, nil); st != Matched || vars[0].Value != want {
		t.Errorf("Match of 101 segments = %v %q", st, vars)
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	m := mustMatcher(t, docRules...)
	buf := make([]Var, 0, 4)
	for _, tc := range []struct {
		method, path string
		status       Status
	}{
		{"GET", "/v1/users/me/messages/123456", Matched},
		{"POST", "/v1/operations/op1:cancel", Matched},
		{"GET", "/v1/projects/p/files/a/b/c", Matched},
		{"PATCH", "/v1/messages/special", Matched},
		{"DELETE", "/v1/messages/1", MethodNotAllowed},
		{"GET", "/v2/x", NoMatch},
	} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, st := m.Match(tc.method, tc.path, buf); st != tc.status {
				t.Fatalf("Match(%s %s) = %v, want %v", tc.method, tc.path, st, tc.status)
			}
		})
		if allocs != 0 {
			t.Errorf("Match(%s %s) allocates %v times", tc.method, tc.path, allocs)
		}
	}
	allow := make([]string, 0, 4)
	if allocs := testing.AllocsPerRun(100, func() { m.Allow("/v1/messages/1", allow) }); allocs != 0 {
		t.Errorf("Allow into a buffer allocates %v times", allocs)
	}
}

func TestUnescape(t *testing.T) {
	for _, tc := range []struct {
		in, keepSlash, all string
	}{
		{"plain", "plain", "plain"},
		{"a%20b", "a b", "a b"},
		{"a%2Fb%2fc", "a%2Fb%2fc", "a/b/c"},
		{"%41%7e%7E", "A~~", "A~~"},
		{"%", "%", "%"},
		{"%4", "%4", "%4"},
		{"%zz%41", "%zzA", "%zzA"},
		{"%%41", "%A", "%A"},
		{"%E2%82%AC", "€", "€"},
	} {
		if got := unescape(tc.in, true); got != tc.keepSlash {
			t.Errorf("unescape(%q, keep slash) = %q, want %q", tc.in, got, tc.keepSlash)
		}
		if got := unescape(tc.in, false); got != tc.all {
			t.Errorf("unescape(%q) = %q, want %q", tc.in, got, tc.all)
		}
	}
}
