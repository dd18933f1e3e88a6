package httpapi

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

func replayed(t *testing.T, h *harness) float64 {
	t.Helper()
	return metricValue(t, h.srv, "registry_api_http_answers_replayed_total", "")
}

// routeRequests sums registry_api_http_requests_total of route and method.
func routeRequests(t *testing.T, h *harness, route, method string) float64 {
	t.Helper()
	families, err := h.srv.prometheus.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "registry_api_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["method"] == method {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// sameAnswer fails unless two answers agree in status, headers and body.
func sameAnswer(t *testing.T, what string, first, again *httptest.ResponseRecorder) {
	t.Helper()
	if first.Code != again.Code {
		t.Errorf("%s: status %d, then %d", what, first.Code, again.Code)
	}
	if !maps.EqualFunc(first.Header(), again.Header(), slices.Equal) {
		t.Errorf("%s: headers\n%v\nthen\n%v", what, first.Header(), again.Header())
	}
	if !bytes.Equal(first.Body.Bytes(), again.Body.Bytes()) {
		t.Errorf("%s: body\n%s\nthen\n%s", what, first.Body, again.Body)
	}
}

// A repeated small read is answered from the answer kept for its target:
// the same status, headers and body, and HEAD the same headers without it.
func TestRepeatedReadsReplayTheirAnswer(t *testing.T) {
	h := newHarness(t)
	largeRegistry(h)
	for _, req := range []request{
		{target: "/v1/envs/prod/methods/acme.app3.v1.Service/M5"},
		{target: "/v1/envs/prod/methods/acme.app3.v1.Service/M5?version=v1"},
		{target: "/v1/envs/prod/routes"},
		{target: "/v1/envs/prod/routes", header: map[string]string{"Accept-Encoding": "gzip"}},
		{target: "/v1/envs/prod/routes?app=app-3"},
		{target: "/v1/envs/prod/routes?app=app-none"},
	} {
		what := fmt.Sprint(req.target, " ", req.header)
		first := h.do(req)
		if first.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", what, first.Code, first.Body)
		}
		before := replayed(t, h)
		sameAnswer(t, what, first, h.do(req))
		head := req
		head.method = http.MethodHead
		headRec := h.do(head)
		if headRec.Body.Len() != 0 || !maps.EqualFunc(first.Header(), headRec.Header(), slices.Equal) {
			t.Errorf("%s: HEAD answered headers %v and %d bytes; GET's headers were %v", what, headRec.Header(), headRec.Body.Len(), first.Header())
		}
		want := 2.0
		if first.Body.Len() > maxAnswerBody {
			want = 0 // served from the table's own rendering
		}
		if got := replayed(t, h) - before; got != want {
			t.Errorf("%s: %v of the GET and HEAD repeats replayed, want %v", what, got, want)
		}
	}
	// The gzip and the plain answer are kept apart.
	plain := h.get("/v1/envs/prod/routes")
	zipped := h.do(request{target: "/v1/envs/prod/routes", header: map[string]string{"Accept-Encoding": "gzip"}})
	if plain.Header().Get("Content-Encoding") != "" || zipped.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("Content-Encoding plain %q, gzip %q", plain.Header().Get("Content-Encoding"), zipped.Header().Get("Content-Encoding"))
	}
	if !bytes.Equal(gunzip(t, zipped.Body.Bytes()), plain.Body.Bytes()) {
		t.Error("the kept gzip answer does not decode to the kept plain one")
	}
	// The request log and the metrics count a replayed request under its
	// route, as any other.
	if got := routeRequests(t, h, "/v1/envs/{env}/methods/*", "GET"); got != 4 {
		t.Errorf("requests_total of the resolution's GETs = %v, want all 4 counted", got)
	}
	if !strings.Contains(h.logs.String(), `"route":"/v1/envs/{env}/routes","method":"HEAD"`) {
		t.Errorf("no request line for a replayed HEAD under its route:\n%s", h.logs.String())
	}
}

// A kept answer holds for its snapshot: a new one is read afresh.
func TestReplayEndsWithTheSnapshot(t *testing.T) {
	h := newHarness(t)
	h.get(loginPath)
	if h.get(loginPath).Code != http.StatusOK {
		t.Fatal("resolution failed")
	}
	before := replayed(t, h)
	// The same data under other instances: the user service is gone.
	h.src.Publish(buildSnapshot(t0, appNodes(2, 1)...))
	if got := h.get(loginPath); got.Code != http.StatusNotFound {
		t.Errorf("after a new snapshot without the method: %d %s", got.Code, got.Body)
	}
	if replayed(t, h) != before {
		t.Error("an answer of the old snapshot was replayed")
	}
}

// A kept answer holds until the first of its env's alive instances dies.
func TestReplayEndsWhenAnInstanceDies(t *testing.T) {
	h := newHarness(t)
	alive := h.get(loginPath)
	if alive.Code != http.StatusOK {
		t.Fatalf("resolution: %d", alive.Code)
	}
	next := h.src.Snapshot().Envs["prod"].NextExpiry(t0, 10*time.Second)
	h.clock.Set(next.Add(-time.Nanosecond))
	before := replayed(t, h)
	h.get(loginPath)
	if replayed(t, h) != before+1 {
		t.Error("not replayed while every instance was still alive")
	}
	// Past every heartbeat's TTL: what was kept says they are alive.
	h.clock.Set(t0.Add(20 * time.Second))
	if got := h.get(loginPath); got.Code != http.StatusServiceUnavailable {
		t.Errorf("after the TTL: %d %s", got.Code, got.Body)
	}
	if replayed(t, h) != before+1 {
		t.Error("an answer was replayed after an instance it counted died")
	}
}

// Requests with a header their operation reads, conditional and blocking
// ones, are judged afresh; so are answers other than 200.
func TestReadsThatDependOnMoreAreNotReplayed(t *testing.T) {
	h := newHarness(t)
	etag := h.get(loginPath).Header().Get("ETag")
	before := replayed(t, h)
	for range 2 {
		if got := h.do(request{target: loginPath, header: map[string]string{"If-None-Match": etag}}); got.Code != http.StatusNotModified {
			t.Errorf("If-None-Match with the tag: %d", got.Code)
		}
		if got := h.do(request{target: loginPath, header: map[string]string{"If-None-Match": `"other"`}}); got.Code != http.StatusOK {
			t.Errorf("If-None-Match with another tag: %d", got.Code)
		}
		if got := h.get("/v1/envs/prod/methods/acme.user.v1.UserService/Logout"); got.Code != http.StatusNotFound {
			t.Errorf("unknown method: %d", got.Code)
		}
		if got := h.get("/v1/envs/qa/methods"); got.Code != http.StatusOK {
			t.Errorf("methods: %d", got.Code)
		}
	}
	if got := replayed(t, h); got != before {
		t.Errorf("%v such requests replayed", got-before)
	}
	if !slices.Contains(h.srv.answers.reads, "If-None-Match") || !slices.Contains(h.srv.answers.reads, "Prefer") {
		t.Errorf("headers read by the kept routes = %v, want If-None-Match and Prefer among them", h.srv.answers.reads)
	}
}

// Targets are the client's to choose: a scan of made-up app names keeps at
// most maxAnswers answers.
func TestKeptAnswersAreBounded(t *testing.T) {
	h := newHarness(t)
	for i := range maxAnswers + 50 {
		if got := h.srv.answers; i%1000 == 0 && got.cur.Load() != nil && got.cur.Load().count.Load() > maxAnswers {
			t.Fatal("over the bound")
		}
		r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/envs/prod/routes?app=ghost-%d", i), nil)
		rec := httptest.NewRecorder()
		h.srv.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", r.URL, rec.Code)
		}
	}
	if got := h.srv.answers.cur.Load().count.Load(); got != maxAnswers {
		t.Errorf("kept %d answers, want the bound %d", got, maxAnswers)
	}
	// Their targets count against the bytes bound as well as their bodies.
	set := h.srv.answers.cur.Load()
	var least int64
	set.plain.Range(func(k, v any) bool {
		kept := v.(*answer)
		least += int64(len(k.(string)) + len(kept.body))
		for _, f := range kept.header {
			least += int64(len(f.name) + len(strings.Join(f.values, "")))
		}
		return true
	})
	if got := set.bytes.Load(); got != least {
		t.Errorf("kept answers count %d bytes; their targets, headers and bodies are %d", got, least)
	}
}

// Behind read authentication nothing is replayed: every request shows its
// token.
func TestNoReplayBehindReadAuth(t *testing.T) {
	src := newSource(fixtureSnapshot(t))
	srv, err := newServer(Deps{
		Log:        zerolog.Nop(),
		Snapshots:  src,
		Now:        testkit.NewClock(t0).Now,
		Prometheus: prometheus.NewRegistry(),
		Auth:       tokens{"good": auth.Identity{Username: "system:serviceaccount:firefly:gateway"}},
		ReadAuth:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(token string) int {
		r := httptest.NewRequest(http.MethodGet, loginPath, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		return rec.Code
	}
	if got := serve("good"); got != http.StatusOK {
		t.Fatalf("with a token: %d", got)
	}
	if got := serve(""); got != http.StatusUnauthorized {
		t.Errorf("the same read without a token: %d, want 401", got)
	}
}

// An answer that expired gives way to the fresh one, which is replayed in
// turn; the bound counts it once.
func TestExpiredAnswerIsReplaced(t *testing.T) {
	h := newHarness(t)
	nodes := appNodes(1, 2)
	nodes[1].runDate = t0.Add(-5 * time.Second)
	h.src.Publish(buildSnapshot(t0, nodes...))
	const target = "/v1/envs/prod/methods/acme.app0.v1.Service/M1"
	both := h.get(target)
	// One of the two instances has died: the kept answer has expired.
	h.clock.Set(t0.Add(6 * time.Second))
	one := h.get(target)
	if bytes.Equal(both.Body.Bytes(), one.Body.Bytes()) {
		t.Fatal("the answer did not change when an instance died")
	}
	before := replayed(t, h)
	sameAnswer(t, "after the refill", one, h.get(target))
	if replayed(t, h) != before+1 {
		t.Error("the fresh answer was not kept in place of the expired one")
	}
	if got := h.srv.answers.cur.Load().count.Load(); got != 1 {
		t.Errorf("%d answers counted for one target", got)
	}
}

// The first instant an instance is dead, its answer is not replayed.
func TestReplayEndsAtTheDeath(t *testing.T) {
	h := newHarness(t)
	h.get(loginPath)
	next := h.src.Snapshot().Envs["prod"].NextExpiry(t0, 10*time.Second)
	h.clock.Set(next)
	before := replayed(t, h)
	h.get(loginPath)
	if replayed(t, h) != before {
		t.Error("replayed at the instant an instance it counted died")
	}
}

// Only origin-form GETs and HEADs of the kept routes' paths are looked at;
// an absolute-form target (whose host is the client's to choose) and
// everything else go the whole way.
func TestWhatIsKept(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		method, target string
		header         map[string]string
		keeps          bool
	}{
		{"GET", loginPath, nil, true},
		{"HEAD", loginPath, nil, true},
		{"GET", "/v1/envs/prod/routes?app=user-service", nil, true},
		{"GET", "http://example.com" + loginPath, nil, false},
		{"POST", "/v1/envs/prod/routes", nil, false},
		{"GET", "/v1/envs/prod/routes/events", nil, false},
		{"GET", "/v1/routes/events", nil, false},
		{"GET", "/v1/envs/prod/export/istio", nil, false},
		{"GET", "/metrics", nil, false},
		{"GET", loginPath, map[string]string{"Prefer": "wait=1"}, false},
		{"GET", loginPath, map[string]string{"If-None-Match": `"x"`}, false},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		if got := h.srv.answers.keeps(r); got != tc.keeps {
			t.Errorf("keeps(%s %s %v) = %v", tc.method, tc.target, tc.header, got)
		}
	}
	before := replayed(t, h)
	for range 2 {
		r := httptest.NewRequest(http.MethodGet, "http://example.com"+loginPath, nil)
		rec := httptest.NewRecorder()
		h.srv.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Fatalf("absolute form: %d", rec.Code)
		}
	}
	if replayed(t, h) != before {
		t.Error("an absolute-form target was replayed")
	}
}

// panicky is a snapshot source that fails as a bug would.
type panicky struct{ *source }

func (panicky) Snapshot() *model.Snapshot { panic("broken source") }

// A handler that panics is logged and counted under its route.
func TestPanicCountedUnderItsRoute(t *testing.T) {
	logs := &testkit.Buffer{}
	srv, err := newServer(Deps{Log: zerolog.New(logs), Snapshots: panicky{newSource(fixtureSnapshot(t))},
		Now: testkit.NewClock(t0).Now, Prometheus: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/envs/prod/apps", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", rec.Code)
	}
	if !strings.Contains(logs.String(), `"route":"/v1/envs/{env}/apps"`) {
		t.Errorf("the panic's request line does not name its route:\n%s", logs)
	}
}
