package model

import (
	"regexp"
	"testing"
)

// methodOracle is the rule as openapi.yaml states it.
var methodOracle = regexp.MustCompile(`^/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/[A-Za-z_][A-Za-z0-9_]*$`)

func FuzzValidMethodNameMatchesPattern(f *testing.F) {
	for _, s := range []string{"/a.B/C", "/acme.user.v1.UserService/Login", "/a/b", "//", "/a./b", "/.a/b", "/a/b/c", "/a/b.c", "/1a/b", "/a/1b", "/a_1/_b", "", "/", "a/b", "/a/", "/ä/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidMethodName(s), methodOracle.MatchString(s); got != want {
			t.Fatalf("ValidMethodName(%q) = %v, pattern says %v", s, got, want)
		}
	})
}
