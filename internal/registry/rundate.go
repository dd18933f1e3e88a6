package registry

// spliceRunDate replaces the value of the top-level "run_date" member of the
// JSON object raw with quoted (a JSON string), leaving every other byte as it
// is. It is the heartbeat's hot path: a heartbeat of a 500-entry batch does
// it 500 times between its Get and its Update. ok is false when raw is not an
// object with a string run_date at its top level; the caller then falls back
// to model.RefreshRunDate.
func spliceRunDate(raw, quoted string) (string, bool) {
	depth := 0
	expectKey := false // at depth 1, the next string is a member name
	// The old value's bounds. The scan goes on to the end: a repeated name
	// (readers take the last) is left to the fallback.
	start, stop := -1, -1
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '{':
			depth++
			expectKey = depth == 1
		case '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return "", false
			}
		case ',':
			expectKey = depth == 1
		case '"':
			end, ok := stringEnd(raw, i)
			if !ok {
				return "", false
			}
			if depth == 1 && expectKey && raw[i:end] == `"run_date"` {
				if start >= 0 {
					return "", false
				}
				var ok bool
				if start, ok = valueStart(raw, end); !ok || raw[start] != '"' {
					return "", false
				}
				if stop, ok = stringEnd(raw, start); !ok {
					return "", false
				}
				end = stop
			}
			expectKey = false
			i = end - 1
		}
	}
	if start < 0 || depth != 0 {
		return "", false
	}
	return raw[:start] + quoted + raw[stop:], true
}

// stringEnd returns the index just past the JSON string starting at raw[i].
func stringEnd(raw string, i int) (int, bool) {
	for j := i + 1; j < len(raw); j++ {
		switch raw[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// valueStart skips the white space and colon after a member name.
func valueStart(raw string, i int) (int, bool) {
	colon := false
	for ; i < len(raw); i++ {
		switch raw[i] {
		case ' ', '\t', '\n', '\r':
		case ':':
			if colon {
				return 0, false
			}
			colon = true
		default:
			return i, colon
		}
	}
	return 0, false
}
