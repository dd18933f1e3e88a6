package httpapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// routeTarget fills a chi route pattern with values that pass validation.
func routeTarget(pattern string) string {
	return strings.NewReplacer(
		"{env}", "prod",
		"{appId}", "user-service",
		"{leaseId}", "1795695862709570046",
		"*", "acme.user.v1.UserService/Login",
	).Replace(pattern)
}

// TestEveryAnswerIsInTheContract walks the router: every route is an
// operation of openapi.yaml, and every route is sent what any route may be
// sent — a malformed query, a query over the limit, no token or one the
// token review cannot judge on a server that authenticates reads and
// writes. Each answer is checked against its operation (checkResponse), so
// a status an operation does not document fails. Statuses that the
// middleware answers without being provoked here are checked on the
// document: the recovery's 500 everywhere, the admission's 503 on every
// route it caps.
func TestEveryAnswerIsInTheContract(t *testing.T) {
	for _, readAuth := range []bool{false, true} {
		t.Run("read auth "+strconv.FormatBool(readAuth), func(t *testing.T) {
			wh := newAuthHarness(t, readAuth)
			walked := 0
			served := map[string]bool{}
			err := chi.Walk(wh.srv.router, func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
				if method == http.MethodHead {
					return nil
				}
				walked++
				docPath := strings.TrimSuffix(pattern, "*")
				if docPath != pattern {
					docPath += "{method}"
				}
				if pattern == "/docs/*" {
					docPath = "/docs/"
				}
				item := wh.srv.spec.doc.Paths.Value(docPath)
				if item == nil || item.GetOperation(method) == nil {
					t.Errorf("%s %s is served but not in openapi.yaml (as %s)", method, pattern, docPath)
					return nil
				}
				op := item.GetOperation(method)
				served[method+" "+docPath] = true
				for _, status := range []int{http.StatusInternalServerError} {
					if op.Responses.Status(status) == nil {
						t.Errorf("%s %s: openapi.yaml does not list %d, which the recovery answers", method, docPath, status)
					}
				}
				target := routeTarget(pattern)
				if !exemptFromCap(httptest.NewRequest(method, target, nil)) && op.Responses.Status(http.StatusServiceUnavailable) == nil {
					t.Errorf("%s %s: openapi.yaml does not list 503, which the admission answers", method, docPath)
				}
				probe := func(req request) {
					if strings.HasPrefix(pattern, "/docs") {
						// Static assets are not validated: the query is ignored.
						req.target = strings.SplitN(req.target, "?", 2)[0] + "?x=1"
					}
					wh.do(req)
				}
				probe(request{method: method, target: target + "?%zz=1"})
				probe(request{method: method, target: target + "?x=" + strings.Repeat("a", maxQueryBytes)})
				probe(request{method: method, target: target + "?" + strings.Repeat("x&", maxQueryParams)})
				if method != http.MethodGet || readAuth {
					// Otherwise a stream would open and never end.
					for _, token := range []map[string]string{nil, bearer("forged"), bearer("down")} {
						probe(request{method: method, target: target, header: token, body: bodyFor(method)})
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if walked < 20 {
				t.Fatalf("walked %d routes: the walk no longer finds them", walked)
			}
			for path, item := range wh.srv.spec.doc.Paths.Map() {
				for method := range item.Operations() {
					if !served[method+" "+path] {
						t.Errorf("openapi.yaml has %s %s, which no route serves", method, path)
					}
				}
			}
		})
	}
}

// bodyFor is a body that passes validation for the operations that take one.
func bodyFor(method string) string {
	if slices.Contains([]string{http.MethodPost}, method) {
		return `{"methods":["/acme.user.v1.UserService/Login"],"version":"v1","network":{"internal":"user-service:8080"}}`
	}
	return ""
}
