package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/acme/registry-api/internal/model"
)

func TestCheckJSON(t *testing.T) {
	nest := func(depth int) string { return strings.Repeat("[", depth) + strings.Repeat("]", depth) }
	for _, tc := range []struct {
		body   string
		ok     bool
		detail string
	}{
		{body: `{"methods":["/a.B/C"],"version":"v1"}`, ok: true},
		{body: " \t\n{\"a\":{\"b\":[1,-2.5e+3,true,false,null,\"\\u00e9\\n\"]}}\r\n", ok: true},
		{body: `"just a string"`, ok: true},
		{body: nest(maxJSONDepth), ok: true},
		{body: nest(maxJSONDepth + 1), detail: "nests deeper than 8 levels"},
		{body: strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), detail: "nests deeper than 8 levels"},
		{body: `{"methods":[]}]`, detail: "data after its JSON value, at byte 14"},
		{body: `{"a":1} x`, detail: "data after its JSON value"},
		{body: `{"a":1}{"a":2}`, detail: "data after its JSON value"},
		{body: ``, detail: "request body is empty"},
		{body: `   `, detail: "request body is empty"},
		{body: `{"a":`, detail: "ends early"},
		{body: `{"a" 1}`, detail: "expecting ':'"},
		{body: `{a:1}`, detail: "expecting a member name"},
		{body: `[1,]`, detail: "expecting a value"},
		{body: `[01]`, detail: "expecting ',' or ']'"},
		{body: `[1.]`, detail: "in a number"},
		{body: "[\"\x01\"]", detail: "control character"},
		{body: `["\q"]`, detail: "string escape"},
		{body: `["\u12g4"]`, detail: `\u escape`},
		{body: "[\"\xff\"]", detail: "invalid UTF-8"},
		{body: `tru`, detail: "expecting a value"},
	} {
		err := checkJSON([]byte(tc.body), maxJSONDepth)
		switch {
		case tc.ok && err != nil:
			t.Errorf("checkJSON(%.40q) = %v, want nil", tc.body, err)
		case !tc.ok && err == nil:
			t.Errorf("checkJSON(%.40q) = nil, want %q", tc.body, tc.detail)
		case !tc.ok && (model.ErrorCode(err) != model.CodeInvalid || !strings.Contains(err.Error(), tc.detail)):
			t.Errorf("checkJSON(%.40q) = %v, want invalid_request with %q", tc.body, err, tc.detail)
		}
	}
}

// FuzzCheckJSON holds checkJSON to encoding/json's judgement: it accepts
// exactly the documents json.Valid accepts that nest at most maxJSONDepth
// and are UTF-8, as RFC 8259 requires (encoding/json replaces bad bytes).
func FuzzCheckJSON(f *testing.F) {
	for _, seed := range []string{`{"methods":["/a.B/C"]}`, `[[[[[[[[[]]]]]]]]]`, `{"a":1} x`, `"\ud800"`, `-0.0e-0`, `{"a":{"b":{}}}`, "\"\xff\""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkJSON(b, maxJSONDepth)
		want := json.Valid(b) && utf8.Valid(b) && depthOf(b) <= maxJSONDepth
		if (err == nil) != want {
			t.Fatalf("checkJSON(%q) = %v; json.Valid and depth say %v", b, err, want)
		}
	})
}

// depthOf is the nesting depth of a valid JSON document, by encoding/json.
func depthOf(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

func TestRequestLimits(t *testing.T) {
	h := newHarness(t)
	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	for _, tc := range []struct {
		name   string
		req    request
		status int
		code   model.Code
		detail string
	}{
		{name: "long path", req: request{target: "/v1/envs/" + strings.Repeat("a", maxPathBytes)}, status: 414, code: model.CodeURITooLong, detail: "path is"},
		{name: "long query", req: request{target: "/v1/envs?x=" + strings.Repeat("a", maxQueryBytes)}, status: 414, code: model.CodeURITooLong, detail: "query string is"},
		{name: "many parameters", req: request{target: "/v1/envs?" + strings.Repeat("a=1&", maxQueryParams) + "a=1"}, status: 414, code: model.CodeURITooLong, detail: "17 parameters"},
		{name: "at the parameter limit", req: request{target: "/v1/envs/prod/apps?" + strings.TrimSuffix(strings.Repeat("x=1&", maxQueryParams), "&")}, status: 200},
		{name: "deep batch", req: request{method: "POST", target: "/v1/envs/prod/resolve", body: deep}, status: 400, code: model.CodeInvalid, detail: "nests deeper than 8 levels"},
		{name: "trailing data", req: request{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":["/acme.user.v1.UserService/Login"]}]`}, status: 400, code: model.CodeInvalid, detail: "data after its JSON value"},
		{name: "two values", req: request{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":["/a.B/C"]} {"methods":["/a.B/C"]}`}, status: 400, code: model.CodeInvalid, detail: "data after its JSON value"},
		{name: "batch over its limit", req: request{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":["` + strings.Repeat("a", maxResolveBody) + `"]}`}, status: 413, code: model.CodePayloadTooLarge, detail: "262144 bytes"},
		{name: "unknown Swagger UI file", req: request{target: "/docs/nope"}, status: 404, code: model.CodeNotFound, detail: "/docs/nope"},
		{name: "unknown method on an unknown path", req: request{method: "BREW", target: "/coffee"}, status: 404, code: model.CodeNotFound},
		{name: "known method on an unknown path", req: request{method: "DELETE", target: "/coffee"}, status: 404, code: model.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := h.do(tc.req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code == "" {
				return
			}
			p := problemOf(t, rec)
			if p.Code != tc.code || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("problem %s %q, want %s with %q", p.Code, p.Detail, tc.code, tc.detail)
			}
			if len(p.Detail) > 2*maxDetail {
				t.Errorf("detail of %d bytes", len(p.Detail))
			}
		})
	}
}

// TestHostileBodiesCostLittle holds the cost of refusing hostile bodies to
// bytes allocated and logged, which do not depend on the machine's speed.
// Before the bounds, a depth-5000 body allocated hundreds of MiB and logged
// a 50 MB line.
func TestHostileBodiesCostLittle(t *testing.T) {
	h := newHarness(t)
	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	wide := `{"methods":["/a.B/C"],"` + strings.Repeat("k", 60<<10) + `":1}`
	for name, body := range map[string]string{"depth 5000": deep, "60 KiB member name": wide} {
		t.Run(name, func(t *testing.T) {
			for _, target := range []string{"/v1/envs/prod/resolve", "/v1/envs/prod/apps/x/instances"} {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				rec := h.do(request{method: "POST", target: target, body: body})
				runtime.ReadMemStats(&after)
				if rec.Code != 400 && rec.Code != 405 {
					t.Errorf("POST %s = %d: %.200s", target, rec.Code, rec.Body)
				}
				// The body itself, the recorder and the answer's validation
				// in this test: a few times the body's size at most.
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
					t.Errorf("POST %s allocated %d bytes", target, alloc)
				}
			}
			for _, line := range strings.Split(h.logs.String(), "\n") {
				if len(line) > 2048 {
					t.Errorf("log line of %d bytes: %.200s…", len(line), line)
				}
			}
		})
	}
}

// BenchmarkRefuseDeepBody is the cost of refusing a depth-5000 body
// through the full handler, beside encoding/json only checking its syntax.
func BenchmarkRefuseDeepBody(b *testing.B) {
	deep := []byte(strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000))
	b.Run("registry-api", func(b *testing.B) {
		h := benchServer(b)
		w := httptest.NewRecorder()
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, "/v1/envs/prod/resolve", bytes.NewReader(deep))
			r.Header.Set("Content-Type", "application/json")
			w.Body.Reset()
			h.ServeHTTP(w, r)
		}
		if w.Code != http.StatusBadRequest {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	})
	b.Run("encoding-json-valid", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = json.Valid(deep)
		}
	})
}

// TestBodyBudget holds the bytes of request bodies a replica keeps at once
// to Deps.MaxBodyBytes: a body that would take it past the budget is
// answered 503 overloaded at once, and the budget is free again once the
// bodies holding it are answered.
func TestBodyBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		srv, err := newServer(Deps{Log: zerolog.New(h.logs), Snapshots: h.src, Now: h.clock.Now, Prometheus: prometheus.NewRegistry(), MaxBodyBytes: 1024})
		if err != nil {
			t.Fatal(err)
		}
		h.srv = srv
		const resolvePath = "/v1/envs/prod/resolve"

		// A body that arrives slowly holds 600 bytes of the budget.
		pr, pw := io.Pipe()
		slow := httptest.NewRequest(http.MethodPost, resolvePath, pr)
		slow.Header.Set("Content-Type", "application/json")
		slowRec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeHTTP(slowRec, slow)
		}()
		start := `{"methods":["/acme.user.v1.UserService/Login"]` + strings.Repeat(" ", 600-46)
		if _, err := io.WriteString(pw, start); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		// 500 more bytes would hold 1100.
		body := `{"methods":["/acme.user.v1.UserService/Login"]` + strings.Repeat(" ", 500-47) + "}"
		rec := h.do(request{method: http.MethodPost, target: resolvePath, body: body})
		if rec.Code != http.StatusServiceUnavailable || problemOf(t, rec).Code != model.CodeOverloaded || rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("over the budget: %d %v %s", rec.Code, rec.Header(), rec.Body)
		}
		// A body within what is left is read.
		if rec := h.do(request{method: http.MethodPost, target: resolvePath, body: `{"methods":["/acme.user.v1.UserService/Login"]}`}); rec.Code != http.StatusOK {
			t.Fatalf("within the budget: %d %s", rec.Code, rec.Body)
		}

		// The slow body ends and is answered; its bytes are free again.
		if _, err := io.WriteString(pw, "}"); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		<-done
		if slowRec.Code != http.StatusOK {
			t.Fatalf("slow body: %d %s", slowRec.Code, slowRec.Body)
		}
		checkResponse(t, srv, httptest.NewRequest(http.MethodPost, resolvePath, nil), slowRec)
		if rec := h.do(request{method: http.MethodPost, target: resolvePath, body: body}); rec.Code != http.StatusOK {
			t.Fatalf("after the slow body: %d %s", rec.Code, rec.Body)
		}
		if held := srv.admission.bodyBytes.Load(); held != 0 {
			t.Errorf("%d bytes still held with no request in flight", held)
		}
	})
}
