package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/model"
)

const (
	loginPath  = "/v1/envs/prod/methods/acme.user.v1.UserService/Login"
	refundPath = "/v1/envs/qa/methods/acme.pay.v1.PayService/Refund"
	chargePath = "/v1/envs/qa/methods/acme.pay.v1.PayService/Charge"
)

// resolution mirrors resolutionView for assertions.
type resolution struct {
	Method  string `json:"method"`
	AppID   string `json:"app_id"`
	Targets []struct {
		Internal  string   `json:"internal"`
		External  string   `json:"external"`
		Versions  []string `json:"versions"`
		Instances int      `json:"instances"`
	} `json:"targets"`
	Instances []struct {
		Key     string `json:"key"`
		LeaseID string `json:"lease_id"`
		Version string `json:"version"`
	} `json:"instances"`
	Conflict *struct {
		Claimants []struct {
			AppID          string `json:"app_id"`
			AliveInstances int    `json:"alive_instances"`
		} `json:"claimants"`
		Rule string `json:"rule"`
	} `json:"conflict"`
}

func (r resolution) targets() []string {
	var out []string
	for _, t := range r.Targets {
		out = append(out, t.Internal)
	}
	return out
}

func (r resolution) keys() []string {
	var out []string
	for _, i := range r.Instances {
		out = append(out, i.Key)
	}
	return out
}

func TestAPI(t *testing.T) {
	tests := []struct {
		name   string
		req    request
		at     time.Time // when the request is served; zero means t0
		status int
		code   model.Code // the problem's code, for errors
		golden string
		check  func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{name: "healthz", req: request{target: "/healthz"}, status: 200},
		{name: "envs", req: request{target: "/v1/envs"}, status: 200, golden: "envs"},
		{name: "env with issues and conflicts", req: request{target: "/v1/envs/qa"}, status: 200, golden: "env-qa"},
		{name: "env unknown", req: request{target: "/v1/envs/nowhere"}, status: 404, code: model.CodeEnvNotFound},
		{name: "env invalid name", req: request{target: "/v1/envs/Prod_1"}, status: 400, code: model.CodeInvalid,
			check: detailContains(`path parameter "env"`, "regular expression")},
		{name: "apps", req: request{target: "/v1/envs/qa/apps"}, status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			var v appListView
			decode(t, rec, &v)
			got := map[string]appSummaryView{}
			for _, a := range v.Apps {
				got[a.AppID] = a
			}
			pay := got["pay-service"]
			if pay.Instances != (countsView{Alive: 3, Stale: 1}) || pay.Methods != 2 || strings.Join(pay.Versions, ",") != "v1,v2" {
				t.Errorf("pay-service = %+v", pay)
			}
			if ghost := got["ghost-service"]; ghost.Instances != (countsView{Alive: 0, Stale: 1}) {
				t.Errorf("ghost-service = %+v", ghost)
			}
		}},
		{name: "app alive instances", req: request{target: "/v1/envs/qa/apps/pay-service"}, status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			var v appDetailView
			decode(t, rec, &v)
			if got := instanceKeys(v.Instances); got != "pay-service.1002 pay-service.1001 pay-service-1004" {
				t.Errorf("instances = %s", got)
			}
		}},
		{name: "app with stale instances", req: request{target: "/v1/envs/qa/apps/pay-service?include=stale"}, status: 200, golden: "app-pay-service-stale"},
		{name: "app include invalid", req: request{target: "/v1/envs/qa/apps/pay-service?include=everything"}, status: 400, code: model.CodeInvalid,
			check: detailContains(`query parameter "include"`)},
		{name: "app include undecodable", req: request{target: "/v1/envs/qa/apps/pay-service?include=%zz"}, status: 400, code: model.CodeInvalid,
			check: detailContains(`query string cannot be decoded`)},
		{name: "routes filter with a semicolon", req: request{target: "/v1/envs/qa/routes?app=pay-service;x=1"}, status: 400, code: model.CodeInvalid,
			check: detailContains(`query string cannot be decoded`)},
		{name: "app unknown", req: request{target: "/v1/envs/qa/apps/nobody"}, status: 404, code: model.CodeAppNotFound},
		{name: "app id invalid", req: request{target: "/v1/envs/qa/apps/Pay_Service"}, status: 400, code: model.CodeInvalid,
			check: detailContains(`path parameter "appId"`)},
		{name: "methods", req: request{target: "/v1/envs/qa/methods"}, status: 200, golden: "methods-qa"},
		{name: "methods of a service", req: request{target: "/v1/envs/prod/methods?service=acme.user.v1.UserService"}, status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			var v methodListView
			decode(t, rec, &v)
			var names []string
			for _, m := range v.Methods {
				names = append(names, m.Method)
				if m.AppID != "user-service" || m.Conflict {
					t.Errorf("method %+v", m)
				}
			}
			if got := strings.Join(names, " "); got != "/acme.user.v1.UserService/GetProfile /acme.user.v1.UserService/Login /acme.user.v1.UserService/UpdateProfile" {
				t.Errorf("methods = %s", got)
			}
		}},
		{name: "methods of an unknown service", req: request{target: "/v1/envs/prod/methods?service=acme.nope.v1.Nope"}, status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if !strings.Contains(rec.Body.String(), `"methods":[]`) {
				t.Errorf("body = %s", rec.Body)
			}
		}},
		{name: "methods service invalid", req: request{target: "/v1/envs/prod/methods?service=acme..v1"}, status: 400, code: model.CodeInvalid,
			check: detailContains(`query parameter "service"`)},
		{name: "methods env unknown", req: request{target: "/v1/envs/nowhere/methods"}, status: 404, code: model.CodeEnvNotFound},
		{name: "resolve", req: request{target: loginPath}, status: 200, golden: "resolve-prod-login", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			res := resolutionOf(t, rec)
			if res.AppID != "user-service" || res.Conflict != nil || len(res.Targets) != 1 || res.Targets[0].Instances != 2 {
				t.Errorf("resolution = %+v", res)
			}
			// Exact beyond 2^53.
			if res.Instances[0].LeaseID != "1795695862709570046" {
				t.Errorf("lease_id = %s", res.Instances[0].LeaseID)
			}
			if got := rec.Header().Get("X-Registry-Synced-At"); got != "2026-11-26T12:24:24Z" {
				t.Errorf("X-Registry-Synced-At = %q", got)
			}
		}},
		{name: "resolve percent-encoded", req: request{target: "/v1/envs/prod/methods/%2Facme.user.v1.UserService%2FLogin"}, status: 200, golden: "resolve-prod-login"},
		{name: "resolve percent-encoded slash", req: request{target: "/v1/envs/prod/methods/acme.user.v1.UserService%2FLogin"}, status: 200, golden: "resolve-prod-login"},
		{name: "resolve conflict", req: request{target: chargePath}, status: 200, golden: "resolve-qa-charge", check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			res := resolutionOf(t, rec)
			if res.AppID != "pay-legacy" || res.Conflict == nil || len(res.Conflict.Claimants) != 2 || res.Conflict.Claimants[1].AliveInstances != 2 {
				t.Errorf("resolution = %+v", res)
			}
		}},
		{name: "resolve conflict once the winner is stale", req: request{target: chargePath}, at: t0.Add(8 * time.Second), status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			res := resolutionOf(t, rec)
			if res.AppID != "pay-service" || res.Conflict.Claimants[0].AliveInstances != 0 {
				t.Errorf("resolution = %+v", res)
			}
		}},
		{name: "resolve targets names before IPs", req: request{target: refundPath}, status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			res := resolutionOf(t, rec)
			if got := strings.Join(res.targets(), " "); got != "pay-service.qa.svc.cluster.local:9000 10.0.0.12:9000 10.0.0.13:9000" {
				t.Errorf("targets = %s", got)
			}
			if got := strings.Join(res.keys(), " "); got != "pay-service.1002 pay-service.1001 pay-service-1004" {
				t.Errorf("instances = %s", got)
			}
			if res.Targets[1].External != "203.0.113.7:443" {
				t.Errorf("external = %q", res.Targets[1].External)
			}
		}},
		{name: "resolve version", req: request{target: refundPath + "?version=v2"}, status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			res := resolutionOf(t, rec)
			if got := strings.Join(res.keys(), " "); got != "pay-service.1002 pay-service-1004" {
				t.Errorf("instances = %s", got)
			}
			for _, tg := range res.Targets {
				if strings.Join(tg.Versions, ",") != "v2" {
					t.Errorf("target %+v", tg)
				}
			}
		}},
		// A version no instance has is not worth retrying: 404, no Retry-After.
		{name: "resolve version without instances", req: request{target: refundPath + "?version=v9"}, status: 404, code: model.CodeVersionNotFound,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				detailContains(`"v9"`, "alive or stale")(t, rec)
				if got := rec.Header().Get("Retry-After"); got != "" {
					t.Errorf("Retry-After = %q", got)
				}
			}},
		// A version whose instances are all stale exists: 503, retry.
		{name: "resolve version with only stale instances", req: request{target: "/v1/envs/qa/methods/acme.ghost.v1.GhostService/Boo?version=v1"}, status: 503, code: model.CodeNoLiveInstances,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				detailContains(`"v1"`)(t, rec)
				if got := rec.Header().Get("Retry-After"); got != "5" {
					t.Errorf("Retry-After = %q", got)
				}
			}},
		{name: "resolve stale method, unknown version", req: request{target: "/v1/envs/qa/methods/acme.ghost.v1.GhostService/Boo?version=v2"}, status: 404, code: model.CodeVersionNotFound},
		{name: "resolve version empty", req: request{target: refundPath + "?version="}, status: 400, code: model.CodeInvalid,
			check: detailContains(`query parameter "version"`)},
		{name: "resolve only stale instances", req: request{target: "/v1/envs/qa/methods/acme.ghost.v1.GhostService/Boo"}, status: 503, code: model.CodeNoLiveInstances,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if got := rec.Header().Get("Retry-After"); got != "5" {
					t.Errorf("Retry-After = %q", got)
				}
			}},
		{name: "resolve after the TTL", req: request{target: loginPath}, at: t0.Add(20 * time.Second), status: 503, code: model.CodeNoLiveInstances},
		{name: "resolve unknown method", req: request{target: "/v1/envs/prod/methods/acme.user.v1.UserService/Logout"}, status: 404, code: model.CodeMethodNotFound},
		{name: "resolve malformed method", req: request{target: "/v1/envs/prod/methods/not-a-method"}, status: 400, code: model.CodeMalformedMethod,
			check: detailContains(`path parameter "method"`)},
		{name: "resolve service without method", req: request{target: "/v1/envs/prod/methods/acme.user.v1.UserService%2F"}, status: 400, code: model.CodeMalformedMethod},
		{name: "resolve empty method", req: request{target: "/v1/envs/prod/methods/"}, status: 400, code: model.CodeMalformedMethod},
		{name: "resolve unknown env", req: request{target: "/v1/envs/nowhere/methods/acme.user.v1.UserService/Login"}, status: 404, code: model.CodeEnvNotFound,
			check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				if got := rec.Header().Get("X-Registry-Synced-At"); got != "2026-11-26T12:24:23Z" {
					t.Errorf("X-Registry-Synced-At = %q", got)
				}
			}},
		{name: "batch", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":["/acme.pay.v1.PayService/Refund","/acme.nope.v1.Nope/Missing","acme.pay.v1.PayService/Refund","/acme.ghost.v1.GhostService/Boo","/acme.pay.v1.PayService/Charge"]}`},
			status: 200, golden: "resolve-batch-qa"},
		{name: "batch version", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":["/acme.pay.v1.PayService/Refund","/acme.pay.v1.PayService/Charge"],"version":"v2"}`},
			status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				var v struct {
					Results []struct {
						Resolution *resolution `json:"resolution"`
						Error      *problem    `json:"error"`
					} `json:"results"`
				}
				decode(t, rec, &v)
				if r := v.Results[0].Resolution; r == nil || strings.Join(r.keys(), " ") != "pay-service.1002 pay-service-1004" {
					t.Errorf("Refund v2 = %+v", v.Results[0])
				}
				// The version narrows the winner's instances; it does not pick the winner.
				if e := v.Results[1].Error; e == nil || e.Code != model.CodeNoLiveInstances {
					t.Errorf("Charge v2 = %+v", v.Results[1])
				}
			}},
		{name: "batch unknown version", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":["/acme.pay.v1.PayService/Refund","/acme.ghost.v1.GhostService/Boo","/acme.nope.v1.Nope/Missing"],"version":"v9"}`},
			status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				var v struct {
					Results []struct {
						Method     string      `json:"method"`
						Resolution *resolution `json:"resolution"`
						Error      *problem    `json:"error"`
					} `json:"results"`
				}
				decode(t, rec, &v)
				want := []model.Code{model.CodeVersionNotFound, model.CodeVersionNotFound, model.CodeMethodNotFound}
				if len(v.Results) != len(want) {
					t.Fatalf("results = %+v", v.Results)
				}
				for i, code := range want {
					if e := v.Results[i].Error; e == nil || e.Code != code || e.Status != problemKinds[code].status || v.Results[i].Resolution != nil {
						t.Errorf("%s v9 = %+v, want %s", v.Results[i].Method, v.Results[i], code)
					}
				}
			}},
		{name: "batch stale version", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":["/acme.ghost.v1.GhostService/Boo"],"version":"v1"}`},
			status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
				var v struct {
					Results []struct {
						Error *problem `json:"error"`
					} `json:"results"`
				}
				decode(t, rec, &v)
				if len(v.Results) != 1 || v.Results[0].Error == nil || v.Results[0].Error.Code != model.CodeNoLiveInstances {
					t.Errorf("results = %+v", v.Results)
				}
			}},
		{name: "batch too many", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: manyMethods(1001)}, status: 400, code: model.CodeTooManyMethods},
		{name: "batch at the limit", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: manyMethods(1000)}, status: 200},
		{name: "batch empty", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":[]}`}, status: 400, code: model.CodeInvalid,
			check: detailContains("request body field /methods")},
		{name: "batch unknown field", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":["/a.B/C"],"colour":"red"}`}, status: 400, code: model.CodeInvalid,
			check: detailContains("colour")},
		{name: "batch not JSON", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":`}, status: 400, code: model.CodeInvalid},
		{name: "batch no body", req: request{method: "POST", target: "/v1/envs/qa/resolve"}, status: 400, code: model.CodeInvalid,
			check: detailContains("request body is required")},
		{name: "batch wrong media type", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":["/a.B/C"]}`, header: map[string]string{"Content-Type": "text/plain"}},
			status: 415, code: model.CodeUnsupportedMedia},
		{name: "batch too large", req: request{method: "POST", target: "/v1/envs/qa/resolve", body: `{"methods":["` + strings.Repeat("a", maxResolveBody) + `"]}`},
			status: 413, code: model.CodePayloadTooLarge},
		{name: "batch unknown env", req: request{method: "POST", target: "/v1/envs/nowhere/resolve", body: `{"methods":["/a.B/C"]}`}, status: 404, code: model.CodeEnvNotFound},
		{name: "unknown route", req: request{target: "/v2/anything"}, status: 404, code: model.CodeNotFound},
		{name: "unknown route below an env", req: request{target: "/v1/envs/prod/nothing"}, status: 404, code: model.CodeNotFound},
		{name: "wrong method", req: request{method: "DELETE", target: "/v1/envs"}, status: 405, code: model.CodeMethodNotAllowed, check: allowIs("GET, HEAD")},
		{name: "wrong method on resolve", req: request{target: "/v1/envs/qa/resolve"}, status: 405, code: model.CodeMethodNotAllowed, check: allowIs("POST")},
		{name: "wrong method on a method", req: request{method: "PUT", target: loginPath}, status: 405, code: model.CodeMethodNotAllowed, check: allowIs("GET, HEAD")},
		{name: "openapi.yaml", req: request{target: "/openapi.yaml"}, status: 200},
		{name: "openapi.json", req: request{target: "/openapi.json"}, status: 200},
		{name: "docs redirect", req: request{target: "/docs"}, status: 301, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := rec.Header().Get("Location"); got != "docs/" {
				t.Errorf("Location = %q", got)
			}
		}},
		{name: "docs", req: request{target: "/docs/"}, status: 200, check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			if !strings.Contains(rec.Body.String(), "swagger") {
				t.Errorf("no Swagger UI page: %.200s", rec.Body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if !tt.at.IsZero() {
				h.clock.Set(tt.at)
			}
			rec := h.do(tt.req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				if p := problemOf(t, rec); p.Code != tt.code {
					t.Errorf("code %q, want %q: %s", p.Code, tt.code, rec.Body)
				}
			}
			if tt.golden != "" {
				golden(t, tt.golden, rec)
			}
			if tt.check != nil {
				tt.check(t, rec)
			}
		})
	}
}

func detailContains(parts ...string) func(*testing.T, *httptest.ResponseRecorder) {
	return func(t *testing.T, rec *httptest.ResponseRecorder) {
		t.Helper()
		p := problemOf(t, rec)
		for _, part := range parts {
			if !strings.Contains(p.Detail, part) {
				t.Errorf("detail %q lacks %q", p.Detail, part)
			}
		}
		if strings.Contains(p.Detail, "\n") {
			t.Errorf("detail spans lines: %q", p.Detail)
		}
	}
}

func allowIs(want string) func(*testing.T, *httptest.ResponseRecorder) {
	return func(t *testing.T, rec *httptest.ResponseRecorder) {
		t.Helper()
		if got := rec.Header().Get("Allow"); got != want {
			t.Errorf("Allow = %q, want %q", got, want)
		}
	}
}

func resolutionOf(t *testing.T, rec *httptest.ResponseRecorder) resolution {
	t.Helper()
	var r resolution
	decode(t, rec, &r)
	return r
}

func instanceKeys(is []instanceView) string {
	var keys []string
	for _, i := range is {
		keys = append(keys, i.Key)
	}
	return strings.Join(keys, " ")
}

func manyMethods(n int) string {
	methods := make([]string, n)
	for i := range methods {
		methods[i] = "/acme.pay.v1.PayService/Refund"
	}
	b, _ := json.Marshal(resolveRequest{Methods: methods})
	return string(b)
}

func TestReadyz(t *testing.T) {
	h := newHarness(t)
	h.src.Swap(model.EmptySnapshot([]string{"firefly", "shop"}))
	rec := h.get("/readyz")
	if rec.Code != http.StatusServiceUnavailable || problemOf(t, rec).Code != model.CodeNotReady {
		t.Fatalf("before the first sync: %d %s", rec.Code, rec.Body)
	}

	// One namespace read is not enough.
	snap := model.EmptySnapshot([]string{"firefly", "shop"})
	snap.NamespaceSyncedAt["firefly"] = syncedFirefly
	h.src.Swap(snap)
	if rec := h.get("/readyz"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("with one of two namespaces read: %d %s", rec.Code, rec.Body)
	}

	h.src.Swap(fixtureSnapshot(t))
	rec = h.get("/readyz")
	if rec.Code != http.StatusOK {
		t.Fatalf("after the sync: %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("X-Registry-Synced-At"); got != "2026-11-26T12:24:23Z" {
		t.Errorf("X-Registry-Synced-At = %q", got)
	}

	// Staying ready while the API server fails: the snapshot just ages.
	h.clock.Add(time.Hour)
	if rec := h.get("/readyz"); rec.Code != http.StatusOK {
		t.Errorf("an hour later: %d", rec.Code)
	}
}

func TestEmptyRegistry(t *testing.T) {
	h := newHarness(t)
	h.src.Swap(nil)
	rec := h.get("/v1/envs")
	if rec.Code != http.StatusOK || rec.Body.String() != "{\"envs\":[]}\n" {
		t.Errorf("envs without a snapshot: %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("X-Registry-Synced-At"); got != "" {
		t.Errorf("X-Registry-Synced-At = %q before any read", got)
	}
}

func TestConditionalGet(t *testing.T) {
	h := newHarness(t)
	first := h.get(loginPath)
	etag := first.Header().Get("ETag")
	if first.Code != http.StatusOK || etag == "" {
		t.Fatalf("%d, ETag %q", first.Code, etag)
	}
	for _, tc := range []struct {
		ifNoneMatch string
		status      int
	}{
		{etag, http.StatusNotModified},
		// A resolution's tag is weak already; the weak comparison ignores W/.
		{"W/" + strings.TrimPrefix(etag, "W/"), http.StatusNotModified},
		{`"0000000000000000", ` + etag, http.StatusNotModified},
		{"*", http.StatusNotModified},
		{`"0000000000000000"`, http.StatusOK},
		{"garbage", http.StatusOK},
	} {
		rec := h.do(request{target: loginPath, header: map[string]string{"If-None-Match": tc.ifNoneMatch}})
		if rec.Code != tc.status {
			t.Errorf("If-None-Match %s: %d, want %d", tc.ifNoneMatch, rec.Code, tc.status)
		}
		if rec.Header().Get("ETag") != etag {
			t.Errorf("If-None-Match %s: ETag %q, want %q", tc.ifNoneMatch, rec.Header().Get("ETag"), etag)
		}
		if rec.Code == http.StatusNotModified && rec.Header().Get("X-Registry-Synced-At") == "" {
			t.Errorf("304 without X-Registry-Synced-At")
		}
	}

	// Every GET answers conditionally, the computed ones too.
	for _, target := range []string{"/v1/envs", "/v1/envs/qa", "/v1/envs/qa/apps", "/v1/envs/qa/apps/pay-service", "/v1/envs/qa/methods", "/openapi.yaml", "/openapi.json", "/healthz", "/readyz"} {
		rec := h.get(target)
		rec = h.do(request{target: target, header: map[string]string{"If-None-Match": rec.Header().Get("ETag")}})
		if rec.Code != http.StatusNotModified {
			t.Errorf("%s: %d, want 304", target, rec.Code)
		}
	}
}

// TestResolveETagFollowsLiveness checks the memoized rendering: the body
// stays put while time passes, and changes exactly when an instance dies.
func TestResolveETagFollowsLiveness(t *testing.T) {
	h := newHarness(t)
	first := h.get(refundPath)

	h.clock.Set(t0.Add(time.Second))
	if rec := h.get(refundPath); rec.Header().Get("ETag") != first.Header().Get("ETag") || rec.Body.String() != first.Body.String() {
		t.Errorf("the answer changed while liveness did not:\n%s\n%s", first.Body, rec.Body)
	}

	// pay-service-1004's heartbeat (12:24:21) is now older than the TTL.
	h.clock.Set(t0.Add(7 * time.Second))
	later := h.get(refundPath)
	if later.Header().Get("ETag") == first.Header().Get("ETag") {
		t.Fatal("the answer did not change when an instance died")
	}
	if got := strings.Join(resolutionOf(t, later).keys(), " "); got != "pay-service.1002 pay-service.1001" {
		t.Errorf("instances = %s", got)
	}

	h.clock.Set(t0)
	if rec := h.get(refundPath); rec.Body.String() != first.Body.String() {
		t.Errorf("back at t0 the answer differs:\n%s\n%s", first.Body, rec.Body)
	}
}

// TestBatchMatchesSingle checks that a batch answers each method as the
// single-method route does.
func TestBatchMatchesSingle(t *testing.T) {
	h := newHarness(t)
	methods := []string{"/acme.pay.v1.PayService/Refund", "/acme.pay.v1.PayService/Charge", "/acme.ghost.v1.GhostService/Boo", "/acme.nope.v1.Nope/Missing", "bogus"}
	body, _ := json.Marshal(resolveRequest{Methods: methods})
	rec := h.do(request{method: "POST", target: "/v1/envs/qa/resolve", body: string(body)})
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var batch struct {
		Results []struct {
			Method     string          `json:"method"`
			Resolution json.RawMessage `json:"resolution"`
			Error      *problem        `json:"error"`
		} `json:"results"`
	}
	decode(t, rec, &batch)
	if len(batch.Results) != len(methods) {
		t.Fatalf("%d results for %d methods", len(batch.Results), len(methods))
	}
	for i, res := range batch.Results {
		if res.Method != methods[i] {
			t.Errorf("result %d is for %s, want %s", i, res.Method, methods[i])
		}
		single := h.get("/v1/envs/qa/methods/" + strings.TrimPrefix(methods[i], "/"))
		if res.Error != nil {
			if single.Code != res.Error.Status || problemOf(t, single).Code != res.Error.Code {
				t.Errorf("%s: batch error %+v, single %d %s", methods[i], res.Error, single.Code, single.Body)
			}
			continue
		}
		if got, want := string(res.Resolution), strings.TrimSpace(single.Body.String()); got != want {
			t.Errorf("%s: batch %s, single %s", methods[i], got, want)
		}
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	h.get(loginPath)
	h.get("/nowhere")
	rec := h.get("/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	for _, want := range []string{
		`registry_api_http_requests_total{code="200",method="GET",route="/v1/envs/{env}/methods/*"} 1`,
		`registry_api_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`registry_api_http_request_duration_seconds_bucket{method="GET",route="/v1/envs/{env}/methods/*",le=`,
		`registry_api_http_request_duration_seconds_count{method="GET",route="/v1/envs/{env}/methods/*"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRequestLog(t *testing.T) {
	h := newHarness(t)
	h.get(loginPath)
	h.get("/healthz")
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2: %s", len(lines), h.logs)
	}
	if l := lines[0]; l["level"] != "info" || l["route"] != "/v1/envs/{env}/methods/*" || l["method"] != "GET" || l["status"] != float64(200) || l["bytes"].(float64) <= 0 || l["duration"] == nil {
		t.Errorf("resolve log line: %v", l)
	}
	if l := lines[1]; l["level"] != "debug" || l["route"] != "/healthz" {
		t.Errorf("healthz log line: %v", l)
	}
}

// panicking is a snapshot source that fails the way a bug would.
type panicking struct{}

func (panicking) Snapshot() *model.Snapshot { panic("snapshot source is broken: secret detail") }

func TestInternalErrorsStayInTheLog(t *testing.T) {
	h := newHarness(t)
	srv, err := newServer(Deps{Log: h.srv.log, Snapshots: panicking{}, Prometheus: h.registry})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	rec := h.get(loginPath)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	p := problemOf(t, rec)
	if p.Code != model.CodeInternal || p.Detail != "internal error" || strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("problem leaks or is wrong: %s", rec.Body)
	}
	if !strings.Contains(h.logs.String(), "secret detail") {
		t.Errorf("the panic is not logged: %s", h.logs)
	}
}

func TestNewServerRequiresSnapshots(t *testing.T) {
	if _, err := NewServer(Deps{}); err == nil {
		t.Error("NewServer without Snapshots succeeded")
	}
}

// TestConcurrentResolve resolves one method from many goroutines while
// liveness flips, for the race detector to watch the memoized rendering.
func TestConcurrentResolve(t *testing.T) {
	h := newHarness(t)
	alive := h.get(refundPath).Body.String()
	h.clock.Set(t0.Add(7 * time.Second))
	fewer := h.get(refundPath).Body.String()

	const workers, requests = 8, 100
	var wg sync.WaitGroup
	errs := make(chan string, workers*requests)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range requests {
				if w == 0 && i%10 == 0 {
					h.clock.Set(t0.Add(time.Duration(i/10%2*7) * time.Second))
				}
				r := httptest.NewRequest(http.MethodGet, refundPath, nil)
				rec := httptest.NewRecorder()
				h.srv.ServeHTTP(rec, r)
				checkResponse(t, h.srv, r, rec)
				if body := rec.Body.String(); rec.Code != http.StatusOK || (body != alive && body != fewer) {
					errs <- fmt.Sprintf("%d %s", rec.Code, body)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestRequestLogLevels: what a client caused, or what describes the data, is
// logged below error; error is for the service's own failures.
func TestRequestLogLevels(t *testing.T) {
	stale := model.EmptySnapshot([]string{"firefly"})
	for _, tt := range []struct {
		name  string
		deps  func(h *harness) Deps
		req   request
		code  model.Code
		level string
	}{
		{name: "unknown env", req: request{target: "/v1/envs/nowhere"}, code: model.CodeEnvNotFound, level: "warn"},
		{name: "unknown version", req: request{target: refundPath + "?version=v9"}, code: model.CodeVersionNotFound, level: "warn"},
		{name: "invalid request", req: request{target: "/v1/envs/prod/apps/-x"}, code: model.CodeInvalid, level: "warn"},
		{name: "no route", req: request{target: "/nowhere"}, code: model.CodeNotFound, level: "warn"},
		{name: "no live instances", req: request{target: "/v1/envs/qa/methods/acme.ghost.v1.GhostService/Boo"}, code: model.CodeNoLiveInstances, level: "warn"},
		{name: "not ready", req: request{target: "/readyz"}, code: model.CodeNotReady, level: "warn",
			deps: func(h *harness) Deps { h.src.Swap(stale); return Deps{Snapshots: h.src} }},
		{name: "store unavailable", req: request{method: http.MethodPut, target: instancesPath + "/5/heartbeat"}, code: model.CodeStoreUnavailable, level: "error",
			deps: func(h *harness) Deps { return Deps{Snapshots: h.src, Writer: stubWriter{context.DeadlineExceeded}} }},
		{name: "internal", req: request{target: loginPath}, code: model.CodeInternal, level: "error",
			deps: func(h *harness) Deps { return Deps{Snapshots: panicking{}} }},
		{name: "overloaded", req: request{target: loginPath}, code: model.CodeOverloaded, level: "warn",
			deps: func(h *harness) Deps { return Deps{Snapshots: h.src, MaxInFlight: 1} }},
		{name: "resolved", req: request{target: loginPath}, level: "info"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.deps != nil {
				deps := tt.deps(h)
				deps.Log, deps.Prometheus, deps.Now = h.srv.log, prometheus.NewRegistry(), h.clock.Now
				srv, err := newServer(deps)
				if err != nil {
					t.Fatal(err)
				}
				h.srv = srv
			}
			if tt.code == model.CodeOverloaded {
				h.srv.admission.inFlight.Store(1) // one request already being answered
			}
			rec := h.do(tt.req)
			if tt.code != "" && problemOf(t, rec).Code != tt.code {
				t.Fatalf("answer %d %s, want code %s", rec.Code, rec.Body, tt.code)
			}
			var line map[string]any
			for _, l := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("log line %q: %v", l, err)
				}
				if m["message"] == "request" {
					line = m
				}
			}
			if line == nil || line["level"] != tt.level || line["status"] != float64(rec.Code) {
				t.Errorf("request log line %v, want level %s for %d", line, tt.level, rec.Code)
			}
		})
	}
}
