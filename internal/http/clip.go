package httpapi

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// quoteValue quotes at most maxDetailValue bytes of a client's value, for a
// problem's detail or a log line.
func quoteValue[T ~string | ~[]byte](v T) string {
	s := string(v[:min(len(v), maxDetailValue)])
	q := strconv.Quote(s)
	if len(v) > maxDetailValue {
		q += fmt.Sprintf(" (%d more bytes)", len(v)-maxDetailValue)
	}
	return q
}

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d bytes cut)", len(s)-cut)
}
