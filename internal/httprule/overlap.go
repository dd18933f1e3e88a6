package httprule

// Overlap reports whether some request path matches both a and b, whichever
// would win it: they have the same verb (in one Matcher a declared verb is
// always split off a path, so templates of different verbs never match the
// same path), and segment by segment each pair can match one segment (a
// literal matches only an equal literal), a "**" matching any rest of the
// other.
func Overlap(a, b *Template) bool {
	if a.verb != b.verb {
		return false
	}
	fixedA, restA := a.fixed()
	fixedB, restB := b.fixed()
	for i := 0; i < len(fixedA) && i < len(fixedB); i++ {
		x, y := fixedA[i], fixedB[i]
		if x.kind == segLiteral && y.kind == segLiteral && x.text != y.text {
			return false
		}
	}
	switch {
	case restA && restB:
		return true
	case restA:
		return len(fixedB) >= len(fixedA)
	case restB:
		return len(fixedA) >= len(fixedB)
	default:
		return len(fixedA) == len(fixedB)
	}
}

// fixed splits t's segments into those that match one request segment each
// and whether a "**" follows them.
func (t *Template) fixed() (segs []segment, rest bool) {
	if n := len(t.segs); n > 0 && t.segs[n-1].kind == segDoubleStar {
		return t.segs[:n-1], true
	}
	return t.segs, false
}

// Pair is two rules, by the ids given to New, the one given first first.
type Pair struct {
	A, B int
}

// Overlaps lists the pairs of rules of one method whose templates can match
// the same request (as Overlap decides), each pair once, in no particular
// order. Shadowed rules are left out: Shadowed lists them. It walks the trie
// against itself rather than comparing every two rules, so it costs in
// proportion to the overlaps, not to the square of the rules.
func (m *Matcher) Overlaps() []Pair {
	w := overlapWalk{m: m, seen: map[[2]int]bool{}}
	w.walk(&m.root, &m.root)
	return w.out
}

type overlapWalk struct {
	m    *Matcher
	seen map[[2]int]bool
	out  []Pair
}

// walk visits two nodes at the same depth that some path reaches both of.
func (w *overlapWalk) walk(x, y *node) {
	w.pairs(x.ends, y.ends)
	// A "**" matches the rest of whatever the other side goes on with.
	if x.doubleStar != nil {
		w.subtree(x.doubleStar.ends, y)
	}
	if y.doubleStar != nil {
		w.subtree(y.doubleStar.ends, x)
	}
	for k, xc := range x.literals {
		if yc := y.literals[k]; yc != nil {
			w.walk(xc, yc)
		}
		if y.star != nil {
			w.walk(xc, y.star)
		}
	}
	if x.star != nil {
		for _, yc := range y.literals {
			w.walk(x.star, yc)
		}
		if y.star != nil {
			w.walk(x.star, y.star)
		}
	}
}

// subtree pairs ends with every rule that ends at or below n.
func (w *overlapWalk) subtree(ends []end, n *node) {
	w.pairs(ends, n.ends)
	if n.doubleStar != nil {
		w.pairs(ends, n.doubleStar.ends)
	}
	for _, c := range n.literals {
		w.subtree(ends, c)
	}
	if n.star != nil {
		w.subtree(ends, n.star)
	}
}

func (w *overlapWalk) pairs(xs, ys []end) {
	for _, x := range xs {
		for _, y := range ys {
			if x.rule == y.rule || x.method != y.method || x.verb != y.verb {
				continue
			}
			a, b := min(x.rule, y.rule), max(x.rule, y.rule)
			if w.seen[[2]int{a, b}] {
				continue
			}
			w.seen[[2]int{a, b}] = true
			w.out = append(w.out, Pair{A: w.m.rules[a].id, B: w.m.rules[b].id})
		}
	}
}
