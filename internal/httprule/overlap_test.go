package httprule

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"/v1/app/type/{id}", "/v1/app/type/special", true},
		{"/v1/app/type/{id}", "/v1/app/type/{name}", true},
		{"/v1/app/type/{id}", "/v1/app/type", false},
		{"/v1/app/type/{id}", "/v1/app/kind/{id}", false},
		{"/v1/{name=messages/*}", "/v1/messages/{id}", true},
		{"/v1/{name=messages/*}", "/v1/{name=users/*}", false},
		{"/v1/a/*", "/v1/*/b", true},
		{"/v1/%61", "/v1/a", true},
		// "**" matches any rest, none included.
		{"/v1/{path=**}", "/v1", true},
		{"/v1/{path=**}", "/v1/a/b/c", true},
		{"/v1/{path=**}", "/v2/a", false},
		{"/v1/a/**", "/v1/*/b/**", true},
		{"/v1/a/**", "/v1/b/**", false},
		{"/**", "/", true},
		{"/*", "/", false},
		{"/v1/*/**", "/v1", false},
		{"/v1/*/**", "/v1/x", true},
		// Verbs must be equal: a declared verb is always split off.
		{"/v1/{name}:cancel", "/v1/{name}:cancel", true},
		{"/v1/{name}:cancel", "/v1/{name}", false},
		{"/v1/{name}:cancel", "/v1/{name}:undo", false},
		{"/v1/{x=**}:cancel", "/v1/a/b:cancel", true},
		{"/v1/{x=**}:cancel", "/v1/a/b", false},
		{"/v1/{x=**}", "/v1/a/b:cancel", false},
		{"/v1/a%3Acancel", "/v1/a:cancel", false},
	} {
		a, b := mustParse(t, tc.a), mustParse(t, tc.b)
		if got := Overlap(a, b); got != tc.want {
			t.Errorf("Overlap(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := Overlap(b, a); got != tc.want {
			t.Errorf("Overlap(%s, %s) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// Overlaps finds what comparing every two rules with Overlap finds.
func TestOverlapsAgreesWithOverlap(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 3))
	for range 3000 {
		var rules []Rule
		for i := range 1 + r.IntN(10) {
			rules = append(rules, Rule{Method: []string{"GET", "POST"}[r.IntN(2)], Template: mustParse(t, randomTemplate(r)), ID: 100 + i})
		}
		m, err := New(rules)
		if err != nil {
			t.Fatal(err)
		}
		checkOverlaps(t, rules, m)
	}
}

// checkOverlaps compares m.Overlaps with Overlap of every two rules of one
// method that m does not shadow.
func checkOverlaps(t *testing.T, rules []Rule, m *Matcher) {
	t.Helper()
	shadowed := map[int]bool{}
	for _, s := range m.Shadowed() {
		shadowed[s.ID] = true
	}
	var want []Pair
	for i, a := range rules {
		for _, b := range rules[i+1:] {
			if a.Method == b.Method && !shadowed[a.ID] && !shadowed[b.ID] && Overlap(a.Template, b.Template) {
				want = append(want, Pair{a.ID, b.ID})
			}
		}
	}
	got := m.Overlaps()
	slices.SortFunc(got, comparePairs)
	if !slices.Equal(got, want) {
		t.Fatalf("rules %v: Overlaps() = %v, want %v", rules, got, want)
	}
}

func comparePairs(a, b Pair) int { return cmp.Or(cmp.Compare(a.A, b.A), cmp.Compare(a.B, b.B)) }
