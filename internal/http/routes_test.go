package httpapi

import (
	"net/http"
	"slices"
	"testing"

	"github.com/go-chi/chi/v5"
)

// TestRoutesMatchSpec walks the router and openapi.yaml and fails on any
// route the document lacks and on any operation nothing routes.
func TestRoutesMatchSpec(t *testing.T) {
	h := newHarness(t)
	routed := map[string]bool{}
	err := chi.Walk(h.srv.router, func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		op := method + " " + specPath(pattern)
		routed[op] = true
		path := h.srv.spec.doc.Paths.Value(specPath(pattern))
		if path == nil || path.GetOperation(method) == nil {
			t.Errorf("route %s %s is missing from openapi.yaml", method, pattern)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range h.srv.spec.doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(documented)
	for _, op := range documented {
		if !routed[op] {
			t.Errorf("openapi.yaml operation %s is not routed", op)
		}
	}
	if len(routed) != len(documented) {
		t.Errorf("%d routes, %d documented operations", len(routed), len(documented))
	}
}
