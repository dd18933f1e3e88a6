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
