package httpapi

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/go-chi/chi/v5"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acme/registry-api/internal/model"
)

// TestValidationAgreesWithKin checks the server's per-parameter validation
// against openapi3filter.ValidateRequest over whole operations: both accept
// a request or both reject it, with the same code.
func TestValidationAgreesWithKin(t *testing.T) {
	h := newHarness(t)
	spec := h.srv.spec
	var ours, kin error
	rejected := 0
	router := chi.NewRouter()
	for key, op := range spec.ops {
		router.Method(key.method, key.pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in, err := spec.input(r, op)
			if err == nil {
				if err = openapi3filter.ValidateRequest(r.Context(), in); err != nil {
					err = requestError(err)
				}
			}
			kin = err
			// ValidateRequest puts the body it read back in place.
			ours = spec.validateRequest(w, r)
		}))
	}
	for _, req := range []request{
		{target: "/v1/envs"},
		{target: "/v1/envs/prod"},
		{target: "/v1/envs/Prod"},
		{target: "/v1/envs/" + strings.Repeat("a", 242)},
		{target: "/v1/envs/pr%6Fd/apps"},
		{target: "/v1/envs/prod/apps/user-service"},
		{target: "/v1/envs/prod/apps/user-service?include=stale"},
		{target: "/v1/envs/prod/apps/user-service?include=all"},
		{target: "/v1/envs/prod/apps/User"},
		{target: "/v1/envs/prod/methods?service=acme.user.v1.UserService"},
		{target: "/v1/envs/prod/routes?app=user-service"},
		{target: "/v1/envs/prod/routes?app=User"},
		{target: "/v1/envs/prod/routes?app=a&app=b"},
		{target: "/v1/envs/prod/routes?app=&service=a.B"},
		{target: "/v1/envs/prod/routes?app"},
		{target: "/v1/envs/prod/routes?&&app=user-service&"},
		{target: "/v1/envs/prod/routes?=x&app=-a"},
		{target: "/v1/envs/prod/routes?app=%75ser"},
		{target: "/v1/envs/prod/routes?app=a+b"},
		{target: "/v1/envs/prod/routes?app=" + strings.Repeat("a", 64)},
		{target: "/v1/envs/prod/routes?service=acme.user.v1.UserService&version=v1"},
		{target: "/v1/envs/prod/routes?service=acme.user.v1.UserService.&version=v1"},
		{target: "/v1/envs/prod/methods?service=acme..UserService"},
		{target: "/v1/envs/prod/methods?service="},
		{target: loginPath},
		{target: loginPath + "?version=v1"},
		{target: loginPath + "?version="},
		{target: loginPath + "?version=" + strings.Repeat("v", 254)},
		{target: loginPath + "?unknown=1"},
		{target: loginPath, header: map[string]string{"If-None-Match": `"0123456789abcdef"`}},
		{target: loginPath, header: map[string]string{"If-None-Match": strings.Repeat("x", 4097)}},
		{target: "/v1/envs/prod/methods/%2Facme.user.v1.UserService%2FLogin"},
		{target: "/v1/envs/prod/methods/acme.user.v1.UserService"},
		{target: "/v1/envs/prod/methods/acme.user.v1.UserService/Login/Extra"},
		{target: "/v1/envs/prod/methods/1acme.UserService/Login"},
		{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":["/a.B/C"]}`},
		{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":["/a.B/C"],"version":"v2"}`},
		{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":[]}`},
		{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":[1]}`},
		{method: "POST", target: "/v1/envs/prod/resolve", body: `{"version":"v2"}`},
		{method: "POST", target: "/v1/envs/prod/resolve", body: manyMethods(1001)},
		{method: "POST", target: "/v1/envs/PROD/resolve", body: `{"methods":["/a.B/C"]}`},
		{method: "POST", target: instancesPath, body: newInventory(bigLease).json()},
		{method: "POST", target: instancesPath + "?namespace=shop", body: newInventory(0).json()},
		{method: "POST", target: instancesPath + "?namespace=Shop", body: newInventory(0).json()},
		{method: "POST", target: instancesPath, body: `{"version":"v1","network":{"internal":"a:1"},"methods":{"/a.B/C":true},"kernel":{"language":"Go","version":"1"},"proto_count":1}`},
		{method: "POST", target: instancesPath, body: `{"version":"v1","network":{"internal":"a:1"},"methods":"/a.B/C","kernel":{"language":"Go","version":"1"},"proto_count":1}`},
		{method: "POST", target: instancesPath, body: `{"version":"v1","network":{"internal":"a:1"},"methods":[],"kernel":{"language":"Go","version":"1"},"proto_count":1,"extra":1}`},
		{method: "POST", target: instancesPath, body: `{"lease_id":0,"version":"v1","network":{"internal":"a:1"},"methods":[],"kernel":{"language":"Go","version":"1"},"proto_count":1}`},
		{method: "POST", target: instancesPath, body: `{"network":{"internal":"a:1"},"methods":[],"kernel":{"language":"Go","version":"1"},"proto_count":1}`},
		{method: "PUT", target: instancesPath + "/9223372036854775807/heartbeat"},
		{method: "PUT", target: instancesPath + "/9223372036854775808/heartbeat"},
		{method: "PUT", target: instancesPath + "/0/heartbeat"},
		{method: "PUT", target: instancesPath + "/abc/heartbeat"},
		{method: "DELETE", target: instancesPath + "/1795695862709570047"},
		{method: "DELETE", target: instancesPath + "/1795695862709570047?namespace=firefly"},
		{target: instancesPath + "/1795695862709570047"},
		{target: instancesPath + "/-1"},
		{target: "/healthz"},
		{target: "/readyz"},
		{target: "/metrics"},
		{target: "/openapi.json"},
	} {
		if req.method == "" {
			req.method = http.MethodGet
		}
		r := httptest.NewRequest(req.method, req.target, strings.NewReader(req.body))
		if req.body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		for k, v := range req.header {
			r.Header.Set(k, v)
		}
		ours, kin = nil, nil
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, r)
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
			t.Fatalf("%s %s: not routed", req.method, req.target)
		}
		if (ours == nil) != (kin == nil) || model.ErrorCode(ours) != model.ErrorCode(kin) {
			t.Errorf("%s %.80s: server says %v; openapi3filter says %v", req.method, req.target, ours, kin)
		}
		if kin != nil {
			rejected++
		}
	}
	if rejected < 15 {
		t.Errorf("only %d requests rejected: the cases no longer probe validation", rejected)
	}
}

// TestCheckResponseCatchesDrift makes sure the response check every test
// relies on is not vacuous.
func TestCheckResponseCatchesDrift(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name   string
		target string
		status int
		ct     string
		body   string
	}{
		{"undeclared field", loginPath, 200, "application/json", `{"method":"/a.B/C","app_id":"a","targets":[],"instances":[],"extra":1}`},
		{"missing field", loginPath, 200, "application/json", `{"method":"/a.B/C","targets":[],"instances":[]}`},
		{"undeclared status", loginPath, 418, "application/problem+json", `{"type":"t","title":"t","status":418,"detail":"d","code":"internal"}`},
		{"unknown code", loginPath, 404, "application/problem+json", `{"type":"t","title":"t","status":404,"detail":"d","code":"gone"}`},
		{"wrong content type", "/v1/envs", 200, "text/plain", `{"envs":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Type", tc.ct)
			rec.Header().Set("ETag", bodyETag([]byte(tc.body)))
			rec.WriteHeader(tc.status)
			rec.WriteString(tc.body)
			spy := &spyTB{TB: t}
			checkResponse(spy, h.srv, httptest.NewRequest(http.MethodGet, tc.target, nil), rec)
			if !spy.failed {
				t.Error("checkResponse accepted it")
			}
		})
	}
}

// spyTB records failures instead of failing.
type spyTB struct {
	testing.TB
	failed bool
}

func (s *spyTB) Errorf(string, ...any) { s.failed = true }
func (s *spyTB) Fatalf(string, ...any) { s.failed = true }
func (s *spyTB) Helper()               {}

// TestSpecPatternsMatchModel keeps the document's parameter patterns and the
// model's validators in step.
func TestSpecPatternsMatchModel(t *testing.T) {
	h := newHarness(t)
	params := h.srv.spec.doc.Components.Parameters
	samples := []string{
		"", "prod", "Prod", "prod-1", "-prod", "prod-", "a.b", "a..b", "a.-b", ".a", "a.", "a_b",
		"user-service", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 241), strings.Repeat("a", 242),
		"/acme.user.v1.UserService/Login", "acme.user.v1.UserService/Login", "/acme.user.v1.UserService",
		"/acme..v1.UserService/Login", "/1acme.UserService/Login", "/_a.B/_c", "/a/b/c", "/a.B/C ", "/a.B/C\n",
		"1", "0", "01", "-1", "+1", "1e3", "0x1f", " 1", "1\n", "1795695862709570046",
		"999999999999999999", "1000000000000000000", "9223372036854775807", "9223372036854775808",
		"9300000000000000000", "9999999999999999999", "10000000000000000000",
	}
	for _, tc := range []struct {
		param string
		valid func(string) bool
	}{
		{"Env", model.ValidEnv},
		{"AppId", model.ValidAppID},
		// With or without the leading slash, which the server adds.
		{"Method", func(s string) bool { return model.ValidMethodName(s) || model.ValidMethodName("/"+s) }},
		{"WriteNamespace", func(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }},
		// The pattern lets 19-digit values above the int64 maximum through,
		// as openapi.yaml says, and parseLeaseID refuses them with the same
		// answer: a pattern exact to the maximum would be 300 characters
		// for readers and for kin's regexp on every heartbeat.
		{"LeaseId", func(s string) bool { _, err := parseLeaseID(s); return err == nil || aboveInt64(s) }},
	} {
		schema := params[tc.param].Value.Schema.Value
		for _, s := range samples {
			if spec, model := schema.VisitJSONString(s) == nil, tc.valid(s); spec != model {
				t.Errorf("%s %q: openapi.yaml says valid=%v, model says %v", tc.param, s, spec, model)
			}
		}
	}
}

// aboveInt64 reports whether s is 19 digits of a number past math.MaxInt64.
func aboveInt64(s string) bool {
	const largest = "9223372036854775807"
	return len(s) == len(largest) && s > largest && strings.Trim(s, "0123456789") == ""
}

// TestPatternMatchers checks each hand-written pattern matcher against the
// regexp of its pattern, on every string of up to five characters over an
// alphabet that each pattern treats differently, and on longer samples.
func TestPatternMatchers(t *testing.T) {
	alphabet := []string{"a", "Z", "0", "_", "-", ".", "/", "é"}
	var corpus []string
	var grow func(prefix string, n int)
	grow = func(prefix string, n int) {
		corpus = append(corpus, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			grow(prefix+c, n-1)
		}
	}
	grow("", 5)
	corpus = append(corpus, "/acme.user.v1.UserService/Login", "acme.user.v1.UserService", "/a.B/C\n", "a\n", "user-service",
		"/1acme.UserService/Login", "/a.b.c/d", "/a/b/c", "a.b.c", "a..b", "prod.eu-1.x", strings.Repeat("a", 300))
	for pattern, match := range patternMatchers {
		re := regexp.MustCompile(pattern)
		for _, s := range corpus {
			if got, want := match(s), re.MatchString(s); got != want {
				t.Errorf("pattern %s, %q: matcher says %v, regexp %v", pattern, s, got, want)
			}
		}
	}
}

// TestFastAcceptAgreesWithKin checks every parameter check that skips kin:
// it accepts only what kin's schema validation accepts, and for ASCII
// values exactly that, lengths at their limits included.
func TestFastAcceptAgreesWithKin(t *testing.T) {
	h := newHarness(t)
	samples := []string{
		"", "prod", "Prod", "a.b", "a..b", "-a", "user-service", "v2", "wait=60", `"0123456789abcdef"`, "café",
		"/acme.user.v1.UserService/Login", "acme.user.v1.UserService", "/a.B/C ", "a\x00b", "\xff",
	}
	for _, n := range []int{1, 62, 63, 64, 240, 241, 242, 252, 253, 254, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 4096, 4097} {
		samples = append(samples, strings.Repeat("a", n), "/a.B/"+strings.Repeat("c", n-min(n, 5)), strings.Repeat("é", n/2))
	}
	checked := 0
	for key, op := range h.srv.spec.ops {
		for _, pc := range op.params {
			if pc.accept == nil {
				continue
			}
			checked++
			for _, s := range samples {
				fast, kin := pc.accept(s), pc.str.VisitJSONString(s) == nil
				if fast && !kin || isASCII(s) && fast != kin {
					t.Errorf("%s %s, %s %q, %.20q (%d bytes): fast path says %v, kin %v", key.method, key.pattern, pc.param.In, pc.param.Name, s, len(s), fast, kin)
				}
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d parameters have a fast check: the test no longer probes it", checked)
	}
}

// TestSchemasTypeForGenerators keeps every schema of openapi.yaml usable by
// client generators: an object names its members or the type of its values
// (a bare `type: object` is Record<string, never> in TypeScript), and each
// branch of a oneOf or anyOf is a type of its own, not a bare constraint (a
// branch of only `required` becomes `unknown`).
func TestSchemasTypeForGenerators(t *testing.T) {
	doc := newHarness(t).srv.spec.doc
	seen := map[*openapi3.Schema]bool{}
	var walk func(where string, ref *openapi3.SchemaRef)
	walk = func(where string, ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if s.Type.Is(openapi3.TypeObject) && len(s.Properties) == 0 && s.AdditionalProperties.Schema == nil && s.AdditionalProperties.Has == nil {
			t.Errorf("%s: an object with neither properties nor additionalProperties", where)
		}
		for _, branches := range []openapi3.SchemaRefs{s.OneOf, s.AnyOf} {
			for i, b := range branches {
				if b.Ref == "" && (b.Value == nil || b.Value.Type == nil) {
					t.Errorf("%s: branch %d of a oneOf/anyOf has no type of its own", where, i)
				}
			}
		}
		for name, p := range s.Properties {
			walk(where+"."+name, p)
		}
		walk(where+"[]", s.Items)
		walk(where+"{}", s.AdditionalProperties.Schema)
		for i, b := range slices.Concat(s.OneOf, s.AnyOf, s.AllOf) {
			walk(fmt.Sprintf("%s|%d", where, i), b)
		}
	}
	for name, ref := range doc.Components.Schemas {
		walk(name, ref)
	}
	for name, ref := range doc.Components.Parameters {
		if ref.Value.Schema != nil {
			walk("parameter "+name, ref.Value.Schema)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.RequestBody != nil {
				for mt, c := range op.RequestBody.Value.Content {
					walk(fmt.Sprintf("%s %s body %s", method, path, mt), c.Schema)
				}
			}
			for status, r := range op.Responses.Map() {
				for mt, c := range r.Value.Content {
					walk(fmt.Sprintf("%s %s %s %s", method, path, status, mt), c.Schema)
				}
			}
		}
	}
	if len(seen) < 50 {
		t.Errorf("only %d schemas walked: the walk no longer finds them", len(seen))
	}
}
