package model

import (
	"encoding/json"
	"slices"
	"sort"
	"testing"
)

// The fast methods decoder must agree with decoding into the library's
// map[string]bool on every input the library accepts, and reject what it rejects.
func FuzzMethodListMatchesMap(f *testing.F) {
	for _, s := range []string{
		`{"/a.B/C":true,"/a.B/D":false}`, `{}`, `null`, `{"x":true,"x":false}`, `{"x":false,"x":true}`,
		`{ "/a\u002fB/C" : true , "q\"uote": true }`, `{"a":1}`, `{"a":"true"}`, `[]`, `{"a":null}`, `{"\\":true}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var m map[string]bool
		mapErr := json.Unmarshal([]byte(s), &m)
		var l methodList
		listErr := json.Unmarshal([]byte(s), &l)
		if (mapErr == nil) != (listErr == nil) {
			t.Fatalf("%s: map decoding says %v, list decoding %v", s, mapErr, listErr)
		}
		if mapErr != nil {
			return
		}
		var want []string
		for k, on := range m {
			if on {
				want = append(want, k)
			}
		}
		sort.Strings(want)
		got := slices.Clone(l.names)
		sort.Strings(got)
		got = slices.Compact(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: list %q, map %q", s, got, want)
		}
	})
}
