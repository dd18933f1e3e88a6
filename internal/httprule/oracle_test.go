package httprule

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// oracle decides a request the slow way, from the rules' definition rather
// than the trie: every rule that matches is a candidate, and of those of
// the method the one whose segments are first in the order
// end < literal < "*" < "**" (position by position) wins, the first given
// on a tie. allow lists the candidates' methods.
func oracle(rules []Rule, method, path string) (id int, vars []Var, status Status, allow []string) {
	path, _, _ = strings.Cut(path, "?")
	if !strings.HasPrefix(path, "/") {
		return -1, nil, NoMatch, nil
	}
	verbs := map[string]bool{}
	for _, r := range rules {
		if r.Template.verb != "" {
			verbs[r.Template.verb] = true
		}
	}
	verb := ""
	if c := strings.LastIndex(path, ":"); c > strings.LastIndex(path, "/") && verbs[unescape(path[c+1:], false)] {
		verb, path = unescape(path[c+1:], false), path[:c]
	}
	raw := strings.Split(path[1:], "/")
	for len(raw) > 0 && raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}
	keys := make([]string, len(raw))
	for i, s := range raw {
		keys[i] = unescape(s, false)
	}
	best := -1
	for i, r := range rules {
		t := r.Template
		if t.verb != verb || !oracleMatches(t.segs, keys) {
			continue
		}
		if !slices.Contains(allow, r.Method) {
			allow = append(allow, r.Method)
		}
		if r.Method == method && (best < 0 || slices.Compare(ranks(t), ranks(rules[best].Template)) < 0) {
			best = i
		}
	}
	slices.Sort(allow)
	if best < 0 {
		if len(allow) > 0 {
			return -1, nil, MethodNotAllowed, allow
		}
		return -1, nil, NoMatch, nil
	}
	t := rules[best].Template
	for _, v := range t.vars {
		end, multi := v.end, v.end-v.start > 1
		if t.segs[v.end-1].kind == segDoubleStar {
			end, multi = len(raw), true
		}
		var value string
		switch {
		case end <= v.start:
		case multi:
			value = unescape(strings.Join(raw[v.start:end], "/"), true)
		default:
			value = keys[v.start]
		}
		vars = append(vars, Var{v.fieldPath, value})
	}
	return rules[best].ID, vars, Matched, allow
}

func oracleMatches(segs []segment, keys []string) bool {
	for i, s := range segs {
		switch {
		case s.kind == segDoubleStar:
			return true
		case i >= len(keys):
			return false
		case s.kind == segLiteral && s.text != keys[i]:
			return false
		}
	}
	return len(segs) == len(keys)
}

// ranks orders templates that match one path: what each segment is, and
// how the template ends.
func ranks(t *Template) []int {
	var out []int
	for _, s := range t.segs {
		out = append(out, int(s.kind))
	}
	if n := len(t.segs); n == 0 || t.segs[n-1].kind != segDoubleStar {
		out = append(out, -1)
	}
	return out
}

// randomTemplate builds a template of the few literals, wildcards,
// variables and verbs that make rules collide.
func randomTemplate(r *rand.Rand) string {
	n := r.IntN(4)
	if n == 0 {
		return []string{"/", "/**", "/{rest=**}"}[r.IntN(3)]
	}
	var b strings.Builder
	for i := range n {
		last := i == n-1
		pieces := []string{"a", "b", "%61", "*", "{v%d}", "{v%d=*}", "{v%d=a/*}"}
		if last {
			pieces = append(pieces, "**", "{v%d=**}", "{v%d=b/**}")
		}
		p := pieces[r.IntN(len(pieces))]
		if strings.Contains(p, "%d") {
			p = fmt.Sprintf(p, i)
		}
		b.WriteString("/" + p)
	}
	b.WriteString([]string{"", "", ":v", ":w"}[r.IntN(4)])
	return b.String()
}

func randomPath(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(5) {
		b.WriteString("/" + []string{"a", "b", "%61", "c", "", "%2F", "a%2fb", "x:y"}[r.IntN(8)])
	}
	if b.Len() == 0 || r.IntN(4) == 0 {
		b.WriteString("/")
	}
	b.WriteString([]string{"", "", ":v", ":w", ":z", "/", "?q=1"}[r.IntN(7)])
	return b.String()
}

func checkAgainstOracle(t *testing.T, rules []Rule, m *Matcher, method, path string) {
	t.Helper()
	wantID, wantVars, wantStatus, wantAllow := oracle(rules, method, path)
	id, vars, status := m.Match(method, path, nil)
	if status != wantStatus || status == Matched && (id != wantID || !slices.Equal(vars, wantVars)) {
		t.Fatalf("rules %v: Match(%s %s) = %d %q %v, want %d %q %v", rules, method, path, id, vars, status, wantID, wantVars, wantStatus)
	}
	if allow := m.Allow(path, nil); !slices.Equal(allow, wantAllow) {
		t.Fatalf("rules %v: Allow(%s) = %q, want %q", rules, path, allow, wantAllow)
	}
}

func TestMatchAgreesWithOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 1))
	for range 2000 {
		var rules []Rule
		for i := range 1 + r.IntN(8) {
			rules = append(rules, Rule{Method: []string{"GET", "POST"}[r.IntN(2)], Template: mustParse(t, randomTemplate(r)), ID: i})
		}
		m, err := New(rules)
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			checkAgainstOracle(t, rules, m, []string{"GET", "POST", "PUT"}[r.IntN(3)], randomPath(r))
		}
	}
}

// Overlap is true exactly when some path matches both templates: when it
// is, a path built from the two matches both.
func TestOverlapAgreesWithOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 2))
	for range 20000 {
		a, b := mustParse(t, randomTemplate(r)), mustParse(t, randomTemplate(r))
		rules := []Rule{{Method: "GET", Template: a, ID: 1}, {Method: "POST", Template: b, ID: 2}}
		_, _, _, allow := oracle(rules, "GET", witness(a, b))
		both := len(allow) == 2
		if got := Overlap(a, b); got != both {
			t.Fatalf("Overlap(%s, %s) = %v, but the path %s matches %q", a, b, got, witness(a, b), allow)
		}
	}
}

// witness is a path that matches both a and b if any does: a literal where
// either has one, "x" where both take anything, as long as the longer one
// needs, and their verb.
func witness(a, b *Template) string {
	fa, _ := a.fixed()
	fb, _ := b.fixed()
	var w strings.Builder
	for i := range max(len(fa), len(fb)) {
		seg := "x"
		for _, f := range [][]segment{fa, fb} {
			if i < len(f) && f[i].kind == segLiteral {
				seg = f[i].text
			}
		}
		w.WriteString("/" + strings.ReplaceAll(seg, "%", "%25"))
	}
	if w.Len() == 0 {
		w.WriteString("/")
	}
	if v := cmp.Or(a.verb, b.verb); v != "" {
		w.WriteString(":" + v)
	}
	return w.String()
}
