package httprule

import (
	"fmt"
	"slices"
	"strings"
)

// Rule is one binding to compile: an HTTP method and a template, and the
// caller's id for it, which Match returns.
type Rule struct {
	Method   string
	Template *Template
	ID       int
}

// Var is a variable bound by a match: its field path and its decoded value.
type Var struct {
	FieldPath string
	Value     string
}

// Status is what a match found.
type Status uint8

const (
	// NoMatch: no rule's template matches the path.
	NoMatch Status = iota
	// Matched: a rule of the request's method matches.
	Matched
	// MethodNotAllowed: the path matches rules of other methods only
	// (Allow lists them).
	MethodNotAllowed
)

func (s Status) String() string {
	switch s {
	case Matched:
		return "matched"
	case MethodNotAllowed:
		return "method not allowed"
	default:
		return "no match"
	}
}

// Shadow is a rule that can never match: an earlier rule has the same method
// and the same Pattern.
type Shadow struct {
	ID, By int
}

// Matcher finds the rule that wins a request among many. It is built once
// and is safe for concurrent use.
type Matcher struct {
	root  node
	rules []compiled
	// verbs holds every rule's verb: only these are split off a path.
	verbs    map[string]struct{}
	shadowed []Shadow
}

type compiled struct {
	id   int
	vars []capture
}

// capture is a variable as a match reads it: request segments
// [start, end), or [start, the last) when toEnd (a "**" variable).
type capture struct {
	fieldPath  string
	start, end int
	// multi: the variable may span several segments, which decides how
	// its value is decoded.
	multi, toEnd bool
}

// node is a trie node: the rules whose templates end here, and the
// children by what the next segment of a template is.
type node struct {
	literals map[string]*node
	star     *node
	// doubleStar is a "**" child; it is always a leaf.
	doubleStar *node
	ends       []end
}

// end is a rule that ends at a node, under its method and verb.
type end struct {
	method, verb string
	rule         int
}

// New compiles rules. Of rules with the same method and Pattern, the first
// wins and the others are reported by Shadowed.
func New(rules []Rule) (*Matcher, error) {
	m := &Matcher{rules: make([]compiled, 0, len(rules)), verbs: map[string]struct{}{}}
	for i, r := range rules {
		if r.Template == nil {
			return nil, fmt.Errorf("httprule: rule %d (id %d) has no template", i, r.ID)
		}
		if r.Method == "" {
			return nil, fmt.Errorf("httprule: rule %d (id %d) has no method", i, r.ID)
		}
		t := r.Template
		n := &m.root
		for _, s := range t.segs {
			n = n.child(s)
		}
		if j := slices.IndexFunc(n.ends, func(e end) bool { return e.method == r.Method && e.verb == t.verb }); j >= 0 {
			m.shadowed = append(m.shadowed, Shadow{ID: r.ID, By: m.rules[n.ends[j].rule].id})
			continue
		}
		c := compiled{id: r.ID, vars: make([]capture, len(t.vars))}
		for k, v := range t.vars {
			toEnd := t.segs[v.end-1].kind == segDoubleStar
			c.vars[k] = capture{fieldPath: v.fieldPath, start: v.start, end: v.end, multi: toEnd || v.end-v.start > 1, toEnd: toEnd}
		}
		n.ends = append(n.ends, end{method: r.Method, verb: t.verb, rule: len(m.rules)})
		m.rules = append(m.rules, c)
		if t.verb != "" {
			m.verbs[t.verb] = struct{}{}
		}
	}
	return m, nil
}

// Shadowed lists the rules that can never match, in the order given to New.
func (m *Matcher) Shadowed() []Shadow { return slices.Clone(m.shadowed) }

func (n *node) child(s segment) *node {
	switch s.kind {
	case segStar:
		if n.star == nil {
			n.star = &node{}
		}
		return n.star
	case segDoubleStar:
		if n.doubleStar == nil {
			n.doubleStar = &node{}
		}
		return n.doubleStar
	}
	if n.literals == nil {
		n.literals = map[string]*node{}
	}
	c := n.literals[s.text]
	if c == nil {
		c = &node{}
		n.literals[s.text] = c
	}
	return c
}

// maxStackSegments is how many segments a path may have before a match
// allocates to hold them.
const maxStackSegments = 32

// span is a request segment's bytes in the path.
type span struct{ start, end int }

// request is a path split for a lookup.
type request struct {
	// keys are the segments decoded, as literals are compared.
	keys  []string
	spans []span
	verb  string
	// method is the method looked for; anyMethod takes any.
	method    string
	anyMethod bool
}

// split reads path into q's keys, spans and verb, appending to the
// slices q holds: the query is dropped, a verb that some rule declares is
// split off the last segment, trailing empty segments are dropped. ok is
// false when path does not start with "/". q is passed and returned by
// value so that its slices may stay on the caller's stack.
func (m *Matcher) split(path string, q request) (_ request, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if path == "" || path[0] != '/' {
		return q, false
	}
	if c := strings.LastIndexByte(path, ':'); c > strings.LastIndexByte(path, '/') && len(m.verbs) > 0 {
		verb := unescape(path[c+1:], false)
		if _, ok := m.verbs[verb]; ok {
			q.verb = verb
			path = path[:c]
		}
	}
	escaped := strings.IndexByte(path, '%') >= 0
	for start := 1; start <= len(path); {
		stop := strings.IndexByte(path[start:], '/')
		if stop < 0 {
			stop = len(path)
		} else {
			stop += start
		}
		key := path[start:stop]
		if escaped {
			key = unescape(key, false)
		}
		q.spans = append(q.spans, span{start, stop})
		q.keys = append(q.keys, key)
		start = stop + 1
	}
	n := len(q.spans)
	for n > 0 && q.spans[n-1].start == q.spans[n-1].end {
		n--
	}
	q.keys, q.spans = q.keys[:n], q.spans[:n]
	return q, true
}

// Match finds the rule that wins method and path (a URL path, raw as sent;
// a query is ignored). It appends the winner's variables to buf[:0] and
// allocates nothing when buf has room for them and the path has no
// percent-escapes and at most 32 segments. id and vars are meaningful only
// when status is Matched.
func (m *Matcher) Match(method, path string, buf []Var) (id int, vars []Var, status Status) {
	var keys [maxStackSegments]string
	var spans [maxStackSegments]span
	vars = buf[:0]
	q, ok := m.split(path, request{keys: keys[:0], spans: spans[:0], method: method})
	if !ok {
		return -1, vars, NoMatch
	}
	r := q.find(&m.root, 0)
	if r < 0 {
		q.anyMethod = true
		if q.find(&m.root, 0) >= 0 {
			return -1, vars, MethodNotAllowed
		}
		return -1, vars, NoMatch
	}
	c := &m.rules[r]
	for _, v := range c.vars {
		vars = append(vars, Var{FieldPath: v.fieldPath, Value: q.value(path, v)})
	}
	return c.id, vars, Matched
}

// Allow appends to dst the methods under which path matches some rule,
// sorted: a 405 answer's Allow.
func (m *Matcher) Allow(path string, dst []string) []string {
	var keys [maxStackSegments]string
	var spans [maxStackSegments]span
	q, ok := m.split(path, request{keys: keys[:0], spans: spans[:0]})
	if !ok {
		return dst
	}
	from := len(dst)
	dst = q.collect(&m.root, 0, dst, from)
	slices.Sort(dst[from:])
	return dst
}

// find is the lookup of Envoy's gRPC-JSON transcoder: depth first, at each
// segment a literal before "*" before "**", backtracking when a branch has
// no rule for the method and verb. It returns the rule's index or -1.
func (q *request) find(n *node, i int) int {
	if i == len(q.keys) {
		if r := q.endAt(n); r >= 0 {
			return r
		}
		if n.doubleStar != nil {
			return q.endAt(n.doubleStar)
		}
		return -1
	}
	if c := n.literals[q.keys[i]]; c != nil {
		if r := q.find(c, i+1); r >= 0 {
			return r
		}
	}
	if n.star != nil {
		if r := q.find(n.star, i+1); r >= 0 {
			return r
		}
	}
	if n.doubleStar != nil {
		return q.endAt(n.doubleStar)
	}
	return -1
}

func (q *request) endAt(n *node) int {
	for _, e := range n.ends {
		if e.verb == q.verb && (q.anyMethod || e.method == q.method) {
			return e.rule
		}
	}
	return -1
}

// collect appends to dst the methods of every rule that matches, once each
// from dst[from:].
func (q *request) collect(n *node, i int, dst []string, from int) []string {
	if n.doubleStar != nil {
		dst = q.methodsAt(n.doubleStar, dst, from)
	}
	if i == len(q.keys) {
		return q.methodsAt(n, dst, from)
	}
	if c := n.literals[q.keys[i]]; c != nil {
		dst = q.collect(c, i+1, dst, from)
	}
	if n.star != nil {
		dst = q.collect(n.star, i+1, dst, from)
	}
	return dst
}

func (q *request) methodsAt(n *node, dst []string, from int) []string {
	for _, e := range n.ends {
		if e.verb == q.verb && !slices.Contains(dst[from:], e.method) {
			dst = append(dst, e.method)
		}
	}
	return dst
}

// value is what a matched variable binds: its segments of the path,
// decoded whole when it is one segment, and but for "%2F" when it may span
// several, as google.api.http says.
func (q *request) value(path string, v capture) string {
	stop := v.end
	if v.toEnd {
		stop = len(q.spans)
	}
	if stop <= v.start {
		return ""
	}
	if !v.multi {
		return q.keys[v.start]
	}
	return unescape(path[q.spans[v.start].start:q.spans[stop-1].end], true)
}
