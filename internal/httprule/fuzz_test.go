package httprule

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, refuses with a *ParseError that points
// into the template, and its canonical form is a fixed point that matches
// what the template matches.
func FuzzParse(f *testing.F) {
	for i := 1; i < len(docRules); i += 2 {
		f.Add(docRules[i])
	}
	for _, s := range []string{"/", "/**", "/v1/%61pp", "/v1/{a.b=x/*/**}:v%2F", "/v1/{x={y}}", "/a/**/b", "//", "/{id}/{id}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(s) || pe.Template != s {
				t.Fatalf("Parse(%q) = %v, want a *ParseError within the template", s, err)
			}
			return
		}
		canonical := tmpl.String()
		again, err := Parse(canonical)
		if err != nil {
			t.Fatalf("Parse(%q) of the canonical form of %q: %v", canonical, s, err)
		}
		if again.String() != canonical || again.Pattern() != tmpl.Pattern() || again.Verb() != tmpl.Verb() ||
			!slices.Equal(again.FieldPaths(), tmpl.FieldPaths()) {
			t.Fatalf("%q: canonical %q reads back as %q", s, canonical, again)
		}
		if !Overlap(tmpl, again) {
			t.Fatalf("%q does not overlap its canonical form %q", s, canonical)
		}
	})
}

// FuzzMatch: rules ("METHOD TEMPLATE" lines) and a request never panic the
// matcher, it decides as the oracle does, and Overlaps finds what Overlap
// finds for every two rules.
func FuzzMatch(f *testing.F) {
	var doc []string
	for i := 0; i < len(docRules); i += 2 {
		doc = append(doc, docRules[i]+" "+docRules[i+1])
	}
	f.Add(strings.Join(doc, "\n"), "GET", "/v1/messages/123456")
	f.Add(strings.Join(doc, "\n"), "PATCH", "/v1/messages/special")
	f.Add(strings.Join(doc, "\n"), "GET", "/v1/files/p/foo%20foo/q/bar%2Fbar+")
	f.Add("GET /{x=**}:verb\nGET /person/{id}", "GET", "/person:verb")
	f.Add("GET /v1/{name}\nPOST /v1/{name}:cancel", "GET", "/v1/x:cancel")
	f.Fuzz(func(t *testing.T, spec, method, path string) {
		var rules []Rule
		for i, line := range strings.Split(spec, "\n") {
			m, s, ok := strings.Cut(line, " ")
			if !ok || m == "" {
				continue
			}
			tmpl, err := Parse(s)
			if err != nil {
				continue
			}
			rules = append(rules, Rule{Method: m, Template: tmpl, ID: i})
			if len(rules) == 16 {
				break
			}
		}
		m, err := New(rules)
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstOracle(t, rules, m, method, path)
		checkOverlaps(t, rules, m)
	})
}
