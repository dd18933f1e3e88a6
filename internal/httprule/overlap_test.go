package httprule

import "testing"

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
