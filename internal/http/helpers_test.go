package httpapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// t0 is shortly after the fixtures' heartbeats (12:24:22), so their
// instances are alive under the 10 s TTL.
var t0 = time.Date(2026, 11, 26, 12, 24, 25, 0, time.UTC)

// syncedFirefly and syncedShop are when the fixtures' namespaces were read.
var (
	syncedFirefly = time.Date(2026, 11, 26, 12, 24, 24, 0, time.UTC)
	syncedShop    = time.Date(2026, 11, 26, 12, 24, 23, 0, time.UTC)
)

// source is a SnapshotSource that tests swap snapshots in; publish
// announces the new one as the poller does.
// source is the snapshot source the tests publish through.
type source = testkit.Source

func newSource(snap *model.Snapshot) *source { return testkit.NewSource(snap) }

// fixtureSnapshot reads the ConfigMaps in testdata as the watcher would.
func fixtureSnapshot(t testing.TB) *model.Snapshot {
	t.Helper()
	entries := map[string][]model.Entry{}
	for _, file := range []string{"configmaps-go-micro.yaml", "configmaps-extra.yaml", "configmaps-versions.yaml"} {
		raw, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if cm.Name == "" {
				continue // a comment-only document
			}
			env, ok := model.EnvFromConfigMapName(cm.Name)
			if !ok {
				t.Fatalf("%s: %s is not a registry ConfigMap", file, cm.Name)
			}
			for key, value := range cm.Data {
				e := model.Entry{Namespace: cm.Namespace, Key: key}
				node, warnings, err := model.ParseEntry(cm.Namespace, env, key, []byte(value), model.ParseOptions{})
				if err != nil {
					e.Err = err.(*model.EntryError)
				} else {
					e.Node, e.Warnings = node, warnings
				}
				entries[env] = append(entries[env], e)
			}
		}
	}
	snap := &model.Snapshot{
		Envs:              map[string]*model.EnvIndex{},
		NamespaceSyncedAt: map[string]time.Time{"firefly": syncedFirefly, "shop": syncedShop},
		Namespaces:        []string{"firefly", "shop"},
	}
	for env, es := range entries {
		snap.Envs[env] = model.BuildEnv(env, es)
		snap.EnvNames = append(snap.EnvNames, env)
	}
	slices.Sort(snap.EnvNames)
	return snap
}

// harness is a server over the fixtures with a settable clock, and whose
// every answer is checked against openapi.yaml.
type harness struct {
	t        testing.TB
	srv      *server
	src      *source
	clock    *testkit.Clock
	registry *prometheus.Registry
	logs     *testkit.Buffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		t:        t,
		src:      newSource(fixtureSnapshot(t)),
		clock:    testkit.NewClock(t0),
		registry: prometheus.NewRegistry(),
		logs:     &testkit.Buffer{},
	}
	srv, err := newServer(Deps{
		Log:        zerolog.New(h.logs).Level(zerolog.DebugLevel),
		Snapshots:  h.src,
		Now:        h.clock.Now,
		TTL:        10 * time.Second,
		Prometheus: h.registry,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	return h
}

// request is one request of a test.
type request struct {
	method string
	target string
	body   string
	header map[string]string
}

// do serves req through the real router and checks the answer against
// openapi.yaml.
func (h *harness) do(req request) *httptest.ResponseRecorder {
	h.t.Helper()
	if req.method == "" {
		req.method = http.MethodGet
	}
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r := httptest.NewRequest(req.method, req.target, body)
	if req.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, r)
	checkResponse(h.t, h.srv, httptest.NewRequest(req.method, req.target, nil), rec)
	return rec
}

func (h *harness) get(target string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do(request{target: target})
}

// responseOptions exclude nothing: undeclared statuses fail too.
var responseOptions = &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}

var headResponseOptions = &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: true}

// checkResponse validates an answer against its operation in openapi.yaml
// with kin-openapi's response validator, and checks what that validator
// skips: 304s, and problems from requests that matched no route.
// unfilteredRoutes reports whether r asks for a whole routes view, whose tag
// is its table's digest rather than its body's hash.
func unfilteredRoutes(r *http.Request) bool {
	p := r.URL.Path
	return r.URL.RawQuery == "" && (p == "/v1/routes" || strings.HasPrefix(p, "/v1/envs/") && strings.HasSuffix(p, "/routes") && strings.Count(p, "/") == 4)
}

func checkResponse(t testing.TB, srv *server, r *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	rctx := chi.NewRouteContext()
	if !srv.router.Match(rctx, routeMethod(r.Method), path) {
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s matched no route but answered %d", r.Method, r.URL, rec.Code)
		}
		if r.Method != http.MethodHead {
			checkProblem(t, srv, rec)
		}
		return
	}
	op := srv.spec.ops[routeKey{r.Method, rctx.RoutePattern()}]
	if op == nil {
		t.Fatalf("%s %s: route %s is not bound to openapi.yaml", r.Method, r.URL, rctx.RoutePattern())
	}
	if op.route.Operation.Responses.Status(rec.Code) == nil {
		t.Errorf("%s %s: status %d is not declared in openapi.yaml", r.Method, r.URL, rec.Code)
	}
	if rec.Code == http.StatusNotModified {
		if rec.Body.Len() != 0 {
			t.Errorf("%s %s: 304 with a body", r.Method, r.URL)
		}
		if rec.Header().Get("ETag") == "" {
			t.Errorf("%s %s: 304 without ETag", r.Method, r.URL)
		}
		return
	}
	body := rec.Body.Bytes()
	gzipped := rec.Header().Get("Content-Encoding") == "gzip"
	if gzipped && r.Method != http.MethodHead {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s %s: a gzip answer that is not gzip: %v", r.Method, r.URL, err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatalf("%s %s: a gzip answer that is not gzip: %v", r.Method, r.URL, err)
		}
	}
	if rec.Code < 300 && r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/docs") && r.URL.Path != "/metrics" {
		// A weak tag (a resolution's) follows the route, not the body;
		// TestResolutionTagFollowsRoute checks it. An unfiltered routes
		// view's is its table's digest; TestRoutesTagIsTableDigest checks it.
		// A compressed answer's is derived from its plain form's.
		want := bodyETag(body)
		if gzipped {
			want = gzipTag(want)
		}
		if got := rec.Header().Get("ETag"); got != want && !strings.HasPrefix(got, "W/") && rec.Header().Get("Content-Type") != "text/event-stream" && !unfilteredRoutes(r) {
			t.Errorf("%s %s: ETag %s, want %s (the body's hash)", r.Method, r.URL, got, want)
		}
	}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") && r.Method != http.MethodHead {
		checkProblem(t, srv, rec)
	}
	opts := responseOptions
	if r.Method == http.MethodHead {
		// HEAD answers with the GET operation's status and headers only.
		opts = headResponseOptions
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r,
			Route:   op.route,
			Options: opts,
		},
		Status:  rec.Code,
		Header:  rec.Header(),
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: answer %d does not match openapi.yaml: %v\nbody: %.2000s", r.Method, r.URL, rec.Code, err, body)
	}
}

// checkProblem validates a problem body against the Problem schema.
func checkProblem(t testing.TB, srv *server, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("problem answered as %q", ct)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("problem body is not JSON: %v: %s", err, rec.Body)
	}
	schema := srv.spec.doc.Components.Schemas["Problem"].Value
	if err := schema.VisitJSON(v, openapi3.MultiErrors(), openapi3.VisitAsResponse()); err != nil {
		t.Errorf("problem does not match the Problem schema: %v\nbody: %s", err, rec.Body)
	}
	if status, _ := v["status"].(float64); int(status) != rec.Code {
		t.Errorf("problem status %v, answered %d", v["status"], rec.Code)
	}
	code, _ := v["code"].(string)
	retry := rec.Header().Get("Retry-After")
	switch problemKinds[model.Code(code)].retry {
	case noRetry:
		if retry != "" {
			t.Errorf("%s answered with Retry-After %s; its kind says no retry helps", code, retry)
		}
	default:
		if n, err := strconv.Atoi(retry); err != nil || n < 1 {
			t.Errorf("%s answered with Retry-After %q; its kind says when to retry", code, retry)
		}
	}
}

// problemOf decodes a problem answer.
func problemOf(t testing.TB, rec *httptest.ResponseRecorder) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("not a problem: %v: %s", err, rec.Body)
	}
	return p
}

// decode decodes a JSON answer into v, keeping numbers exact.
func decode(t testing.TB, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
}

// golden compares an answer's body with testdata/golden/name.json, or
// rewrites that file with -update.
func golden(t *testing.T, name string, rec *httptest.ResponseRecorder) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, rec.Body.Bytes(), "", "  "); err != nil {
		t.Fatalf("%s: body is not JSON: %v", name, err)
	}
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("%s differs from %s (run go test -update after checking):\n%s", name, path, pretty.String())
	}
}
