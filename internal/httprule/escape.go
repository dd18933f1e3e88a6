package httprule

import "strings"

// unescape percent-decodes s. With keepSlash, "%2F" and "%2f" stay as they
// are, as google.api.http decodes a multi-segment variable. A "%" not
// followed by two hexadecimal digits stays too, as Envoy's transcoder
// leaves it. s is returned itself when it has nothing to decode.
func unescape(s string, keepSlash bool) string {
	first := strings.IndexByte(s, '%')
	if first < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:first]...)
	for i := first; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			d := unhex(s[i+1])<<4 | unhex(s[i+2])
			if !(keepSlash && d == '/') {
				b = append(b, d)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}
