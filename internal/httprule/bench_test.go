package httprule

import (
	"fmt"
	"strings"
	"testing"
)

// appBindings are one app's twenty bindings, as a service's protos declare
// them; %[1]d is the app.
var appBindings = []string{
	"GET", "/v1/app%[1]d/items",
	"POST", "/v1/app%[1]d/items",
	"GET", "/v1/app%[1]d/items/{id}",
	"PUT", "/v1/app%[1]d/items/{id}",
	"PATCH", "/v1/app%[1]d/items/{item.id}",
	"DELETE", "/v1/app%[1]d/items/{id}",
	"POST", "/v1/app%[1]d/items/{id}:archive",
	"GET", "/v1/app%[1]d/items/{item_id}/parts",
	"GET", "/v1/app%[1]d/items/{item_id}/parts/{part_id}",
	"POST", "/v1/app%[1]d/items/{item_id}/parts",
	"GET", "/v1/{name=projects/*/app%[1]d/*}",
	"GET", "/v1/app%[1]d/files/{path=**}",
	"GET", "/v1/app%[1]d/types",
	"GET", "/v1/app%[1]d/types/{type}",
	"POST", "/v1/app%[1]d/types/{type}:validate",
	"GET", "/v2/app%[1]d/items/{id}",
	"GET", "/v1/app%[1]d/items/{id}/history",
	"POST", "/v1/app%[1]d:batchGet",
	"GET", "/v1/app%[1]d/settings",
	"PUT", "/v1/app%[1]d/settings",
}

const benchApps = 500

func benchRules(b *testing.B) []Rule {
	var rules []Rule
	for app := range benchApps {
		for i := 0; i < len(appBindings); i += 2 {
			tmpl, err := Parse(fmt.Sprintf(appBindings[i+1], app))
			if err != nil {
				b.Fatal(err)
			}
			rules = append(rules, Rule{Method: appBindings[i], Template: tmpl, ID: len(rules)})
		}
	}
	return rules
}

type benchRequest struct{ method, path string }

// benchRequests are requests for every app, hitting deep and shallow
// bindings, variables, "**" and verbs.
func benchRequests() []benchRequest {
	var out []benchRequest
	for app := 0; app < benchApps; app += 7 {
		p := fmt.Sprintf("/v1/app%d", app)
		out = append(out,
			benchRequest{"GET", p + "/items/42/parts/7"},
			benchRequest{"PATCH", p + "/items/42"},
			benchRequest{"POST", p + "/items/42:archive"},
			benchRequest{"GET", fmt.Sprintf("/v1/projects/acme/app%d/x", app)},
			benchRequest{"GET", p + "/files/a/b/c.txt"},
			benchRequest{"GET", p + "/settings"},
		)
	}
	return out
}

func BenchmarkMatch(b *testing.B) {
	rules := benchRules(b)
	m, err := New(rules)
	if err != nil {
		b.Fatal(err)
	}
	if len(rules) != 10000 {
		b.Fatalf("%d rules", len(rules))
	}
	reqs := benchRequests()
	buf := make([]Var, 0, 4)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r := reqs[i%len(reqs)]
			if _, _, st := m.Match(r.method, r.path, buf); st != Matched {
				b.Fatalf("%s %s: %v", r.method, r.path, st)
			}
		}
	})
	b.Run("method-not-allowed", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r := reqs[i%len(reqs)]
			if _, _, st := m.Match("OPTIONS", r.path, buf); st != MethodNotAllowed {
				b.Fatalf("%s: %v", r.path, st)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		var misses []benchRequest
		for _, r := range reqs {
			misses = append(misses, benchRequest{r.method, "/v3" + r.path})
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r := misses[i%len(misses)]
			if _, _, st := m.Match(r.method, r.path, buf); st != NoMatch {
				b.Fatalf("%s: %v", r.path, st)
			}
		}
	})
}

// BenchmarkMatchBaseline is the floor: a map from every request as sent to
// its binding, which knows no templates.
func BenchmarkMatchBaseline(b *testing.B) {
	reqs := benchRequests()
	exact := map[benchRequest]int{}
	for app := range benchApps {
		for i := 0; i < len(appBindings); i += 2 {
			path := strings.NewReplacer("{id}", "42", "{item.id}", "42", "{item_id}", "42", "{part_id}", "7", "{type}", "t",
				"{name=projects/*/", "projects/acme/", "/*}", "/x", "{path=**}", "a/b/c.txt").Replace(fmt.Sprintf(appBindings[i+1], app))
			exact[benchRequest{appBindings[i], path}] = len(exact)
		}
	}
	for _, r := range reqs {
		if _, ok := exact[r]; !ok {
			b.Fatalf("%v is not in the map", r)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := exact[reqs[i%len(reqs)]]; !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkNew(b *testing.B) {
	rules := benchRules(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(rules); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOverlaps(b *testing.B) {
	m, err := New(benchRules(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(m.Overlaps())
	}
	b.ReportMetric(float64(n), "pairs")
}
