package httpapi

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"

	"github.com/acme/registry-api/internal/model"
)

// pathParamRE finds the {name} parameters of a path in openapi.yaml.
var pathParamRE = regexp.MustCompile(`\{([^}]+)\}`)

// getTargets walks the router and returns a request path for every GET
// route, its parameters filled in from their examples in openapi.yaml.
func getTargets(t *testing.T, h *harness) []string {
	t.Helper()
	exampleOf := func(p *openapi3.Parameter) (string, bool) {
		example := p.Example
		if _, ok := example.(string); !ok {
			// A YAML number reaches us as a float64, which cannot hold a
			// lease id: the schema's example is its exact string.
			example = h.srv.spec.doc.Components.Schemas["LeaseID"].Value.Example
		}
		v, ok := example.(string)
		return url.PathEscape(v), ok
	}
	examples := map[string]string{}
	params := h.srv.spec.doc.Components.Parameters
	// Two components name leaseId: LeaseId, a seeded instance's, and
	// RegisteredLeaseId, the writes' own. In name order the reads' comes first
	// and is kept.
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if p := params[name].Value; p.In == "path" {
			if _, seen := examples[p.Name]; seen {
				continue
			}
			if v, ok := exampleOf(p); ok {
				examples[p.Name] = v
			}
		}
	}
	var targets []string
	err := chi.Walk(h.srv.router, func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if method != http.MethodGet {
			return nil
		}
		var missing []string
		// An operation's own parameters first, as Swagger UI prefills them:
		// parameters of one name may differ in their examples.
		own := map[string]string{}
		if item := h.srv.spec.doc.Paths.Find(specPath(pattern)); item != nil && item.Get != nil {
			for _, ref := range item.Get.Parameters {
				if p := ref.Value; p.In == "path" {
					if v, ok := exampleOf(p); ok {
						own[p.Name] = v
					}
				}
			}
		}
		target := pathParamRE.ReplaceAllStringFunc(specPath(pattern), func(m string) string {
			name := m[1 : len(m)-1]
			v, ok := own[name]
			if !ok {
				v, ok = examples[name]
			}
			if !ok {
				missing = append(missing, name)
			}
			return v
		})
		if len(missing) > 0 {
			t.Errorf("GET %s: path parameters %v have no example in openapi.yaml", pattern, missing)
		}
		targets = append(targets, target)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) < 10 {
		t.Fatalf("only %d GET routes: %v", len(targets), targets)
	}
	return targets
}

// TestHeadAnswersAsGet checks that every GET route answers HEAD with the
// same status and headers and no body, through a real server as curl -sI
// sees it, and through the router against openapi.yaml.
func TestHeadAnswersAsGet(t *testing.T) {
	h := newHarness(t)
	ts := httptest.NewServer(h.srv)
	t.Cleanup(ts.Close)
	// Headers as sent: no transparent gzip.
	client := &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	call := func(t *testing.T, method, target string, header http.Header) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, ts.URL+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if method == http.MethodGet && resp.Header.Get("Content-Type") == "text/event-stream" {
			return resp, nil // an event stream goes on; its headers are the answer
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	for _, target := range getTargets(t, h) {
		t.Run(target, func(t *testing.T) {
			get, getBody := call(t, http.MethodGet, target, nil)
			head, headBody := call(t, http.MethodHead, target, nil)
			if get.StatusCode >= 400 {
				t.Errorf("GET %s = %d: %s", target, get.StatusCode, getBody)
			}
			if head.StatusCode != get.StatusCode {
				t.Errorf("HEAD %d, GET %d", head.StatusCode, get.StatusCode)
			}
			if len(headBody) != 0 {
				t.Errorf("HEAD answered a body: %q", headBody)
			}
			if head.ContentLength != get.ContentLength {
				t.Errorf("HEAD Content-Length %d, GET %d", head.ContentLength, get.ContentLength)
			}
			if get.ContentLength >= 0 && get.ContentLength != int64(len(getBody)) {
				t.Errorf("GET Content-Length %d for %d bytes", get.ContentLength, len(getBody))
			}
			for _, hdr := range []http.Header{get.Header, head.Header} {
				hdr.Del("Date")
			}
			if g, hd := headerString(get.Header), headerString(head.Header); g != hd {
				t.Errorf("headers differ:\nGET  %s\nHEAD %s", g, hd)
			}

			// Through the router, each answer checked against openapi.yaml.
			h.do(request{method: http.MethodHead, target: target})

			etag := get.Header.Get("ETag")
			if etag == "" {
				return
			}
			if get.Header.Get("Content-Type") != "" && strings.HasPrefix(target, "/v1/") && get.Header.Get("Content-Length") == "" {
				t.Errorf("GET %s has no Content-Length", target)
			}
			rec := h.do(request{method: http.MethodHead, target: target, header: map[string]string{"If-None-Match": etag}})
			if rec.Code != http.StatusNotModified || rec.Header().Get("ETag") != etag {
				t.Errorf("HEAD with If-None-Match %s = %d, ETag %q; want 304", etag, rec.Code, rec.Header().Get("ETag"))
			}
			resp, _ := call(t, http.MethodHead, target, http.Header{"If-None-Match": {etag}})
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("over the wire: HEAD with If-None-Match = %d, want 304", resp.StatusCode)
			}
		})
	}
}

func headerString(h http.Header) string {
	var b strings.Builder
	if err := h.Write(&b); err != nil {
		return err.Error()
	}
	return b.String()
}

// TestHeadOfProblemsAndOtherMethods: a HEAD that fails answers the GET's
// problem status and headers without the body, and Allow lists HEAD exactly
// where GET is routed.
func TestHeadOfProblemsAndOtherMethods(t *testing.T) {
	h := newHarness(t)

	rec := h.do(request{method: http.MethodHead, target: "/v1/envs/nope/apps"})
	get := h.get("/v1/envs/nope/apps")
	if rec.Code != http.StatusNotFound || rec.Body.Len() != 0 || problemOf(t, get).Code != model.CodeEnvNotFound {
		t.Errorf("HEAD of an unknown env = %d %q", rec.Code, rec.Body)
	}
	if rec.Header().Get("Content-Type") != "application/problem+json" || rec.Header().Get("Content-Length") != get.Header().Get("Content-Length") {
		t.Errorf("HEAD problem headers %v, GET %v", rec.Header(), get.Header())
	}

	for _, tt := range []struct{ method, target, allow string }{
		{http.MethodDelete, "/v1/envs", "GET, HEAD"},
		{http.MethodHead, "/v1/envs/prod/resolve", "POST"},
		{http.MethodPost, "/v1/envs/prod/methods/acme.user.v1.UserService/Login", "GET, HEAD"},
	} {
		rec := h.do(request{method: tt.method, target: tt.target})
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d, Allow %q; want 405, Allow %q", tt.method, tt.target, rec.Code, rec.Header().Get("Allow"), tt.allow)
		}
	}
}
