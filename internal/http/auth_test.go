package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/model"
)

// tokens is an Authenticator over a table of tokens; "down" stands for a
// TokenReview that could not be made.
type tokens map[string]auth.Identity

func (tk tokens) Authenticate(_ context.Context, token string) (auth.Identity, error) {
	switch id, ok := tk[token]; {
	case token == "":
		return auth.Identity{}, model.Errorf(model.CodeUnauthorized, "no token")
	case token == "down":
		return auth.Identity{}, model.Errorf(model.CodeStoreUnavailable, "TokenReview failed")
	case !ok:
		return auth.Identity{}, model.Errorf(model.CodeUnauthorized, "token refused")
	default:
		return id, nil
	}
}

func serviceAccount(ns, name string) auth.Identity {
	return auth.Identity{Username: "system:serviceaccount:" + ns + ":" + name, UID: "uid-" + name, Namespace: ns, ServiceAccount: name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}}
}

var testTokens = func() tokens {
	pod := serviceAccount("firefly", "inventory")
	pod.Pod = &model.PodRef{Name: "inventory-0", UID: "pod-uid-0"}
	return tokens{
		"inventory":     serviceAccount("firefly", "inventory"),
		"inventory-pod": pod,
		"other":         serviceAccount("firefly", "other"),
		"shop":          serviceAccount("shop", "shopper"),
		"admin":         serviceAccount("ops", "registrar"),
		"human":         {Username: "jane", Groups: []string{"devs"}},
	}
}()

func newAuthHarness(t testing.TB, readAuth bool) *writeHarness {
	t.Helper()
	admins, err := auth.ParseSubjects([]string{"system:serviceaccount:ops:registrar"})
	if err != nil {
		t.Fatal(err)
	}
	return newWriteHarness(t, writeOptions{auth: testTokens, policy: auth.Policy{Admins: admins}, readAuth: readAuth})
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// wantRule requires a 403 whose detail names rule.
func wantRule(t *testing.T, rec *httptest.ResponseRecorder, rule auth.Rule) {
	t.Helper()
	wantStatus(t, rec, http.StatusForbidden, model.CodeForbidden)
	if p := problemOf(t, rec); !strings.Contains(p.Detail, string(rule)) {
		t.Errorf("detail %q does not name rule %s", p.Detail, rule)
	}
}

func TestWritesNeedAToken(t *testing.T) {
	wh := newAuthHarness(t, false)
	for _, req := range []request{
		{method: http.MethodPost, target: instancesPath, body: newInventory(5).json()},
		// Not even validated: who may not write learns nothing of the API.
		{method: http.MethodPost, target: instancesPath, body: `{"not":"a registration"}`},
		{method: http.MethodPut, target: instancesPath + "/5/heartbeat"},
		{method: http.MethodDelete, target: instancesPath + "/5"},
	} {
		for _, tc := range []struct {
			name, header, challenge string
		}{
			{"no token", "", `Bearer realm="registry-api"`},
			{"not a bearer token", "Basic dXNlcjpwdw==", `Bearer realm="registry-api"`},
			{"refused token", "Bearer forged", `Bearer realm="registry-api", error="invalid_token"`},
		} {
			req.header = nil
			if tc.header != "" {
				req.header = map[string]string{"Authorization": tc.header}
			}
			rec := wh.do(req)
			wantStatus(t, rec, http.StatusUnauthorized, model.CodeUnauthorized)
			if got := rec.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("%s %s, %s: WWW-Authenticate %q, want %q", req.method, req.target, tc.name, got, tc.challenge)
			}
		}
	}
	req := request{method: http.MethodPut, target: instancesPath + "/5/heartbeat", header: bearer("down")}
	rec := wh.do(req)
	wantStatus(t, rec, http.StatusServiceUnavailable, model.CodeStoreUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After when the TokenReview failed")
	}
	if _, ok := wh.entry("firefly", "prod", "inventory-service.5"); ok {
		t.Error("an unauthenticated write reached the store")
	}
	// Reads stay open.
	wantStatus(t, wh.get("/v1/envs/prod"), http.StatusOK, "")
}

// registeredBy reads the members registry-api adds to an entry.
func registeredBy(t *testing.T, raw string) (model.RegisteredBy, string) {
	t.Helper()
	var v struct {
		RegisteredBy model.RegisteredBy `json:"registered_by"`
		Keepalive    string             `json:"keepalive"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatal(err)
	}
	return v.RegisteredBy, v.Keepalive
}

func TestRegistrationRecordsWhoRegistered(t *testing.T) {
	wh := newAuthHarness(t, false)
	keepalive := func(rec *httptest.ResponseRecorder) string {
		var v struct {
			Keepalive string `json:"keepalive"`
		}
		decode(t, rec, &v)
		return v.Keepalive
	}
	withKeepalive := func(lease int64, k string) string {
		b := newInventory(lease).json()
		if k == "" {
			return b
		}
		return strings.TrimSuffix(b, "}") + `,"keepalive":"` + k + `"}`
	}
	tests := []struct {
		name, token, keepalive string
		lease                  int64
		want                   string
		pod                    bool
	}{
		{"ServiceAccount token", "inventory", "", 11, model.KeepaliveClient, false},
		{"pod-bound token", "inventory-pod", "", 12, model.KeepalivePod, true},
		{"pod-bound token, opting out", "inventory-pod", model.KeepaliveClient, 13, model.KeepaliveClient, true},
		{"pod-bound token, asking for pod", "inventory-pod", model.KeepalivePod, 14, model.KeepalivePod, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := wh.do(request{method: http.MethodPost, target: instancesPath, body: withKeepalive(tt.lease, tt.keepalive), header: bearer(tt.token)})
			wantStatus(t, rec, http.StatusCreated, "")
			if got := keepalive(rec); got != tt.want {
				t.Errorf("answered keepalive %q, want %q", got, tt.want)
			}
			raw, ok := wh.entry("firefly", "prod", model.CanonicalKey("inventory-service", tt.lease))
			if !ok {
				t.Fatal("no entry")
			}
			by, ka := registeredBy(t, raw)
			id := testTokens[tt.token]
			if by.Username != id.Username || by.UID != id.UID || by.Namespace != "firefly" || ka != tt.want {
				t.Errorf("entry records %+v, keepalive %q", by, ka)
			}
			if (by.Pod != nil) != tt.pod || tt.pod && *by.Pod != (model.PodRef{Name: "inventory-0", UID: "pod-uid-0"}) {
				t.Errorf("entry records pod %+v", by.Pod)
			}
			// Still the library's format: it parses, and readers see it.
			if _, _, err := model.ParseEntry("firefly", "prod", model.CanonicalKey("inventory-service", tt.lease), []byte(raw), model.ParseOptions{}); err != nil {
				t.Errorf("the entry no longer parses: %v", err)
			}
		})
	}
	rec := wh.do(request{method: http.MethodPost, target: instancesPath, body: withKeepalive(15, model.KeepalivePod), header: bearer("inventory")})
	wantStatus(t, rec, http.StatusBadRequest, model.CodeInvalid)
	if p := problemOf(t, rec); !strings.Contains(p.Detail, "/keepalive") {
		t.Errorf("detail %q does not name /keepalive", p.Detail)
	}
	rec = wh.do(request{method: http.MethodPost, target: instancesPath, body: withKeepalive(16, "never"), header: bearer("inventory")})
	wantStatus(t, rec, http.StatusBadRequest, model.CodeInvalid)
}

func TestWritePolicy(t *testing.T) {
	wh := newAuthHarness(t, false)
	mine := instancesPath + "/21"
	wantStatus(t, wh.do(request{method: http.MethodPost, target: instancesPath, body: newInventory(21).json(), header: bearer("inventory")}), http.StatusCreated, "")

	// Someone else of the same namespace may not touch it.
	wantRule(t, wh.do(request{method: http.MethodPut, target: mine + "/heartbeat", header: bearer("other")}), auth.RuleOwner)
	wantRule(t, wh.do(request{method: http.MethodDelete, target: mine, header: bearer("other")}), auth.RuleOwner)
	wantRule(t, wh.do(request{method: http.MethodPost, target: instancesPath, body: newInventory(21).json(), header: bearer("other")}), auth.RuleOwner)
	// Nor may a ServiceAccount of another namespace, nor a user that is none.
	wantRule(t, wh.do(request{method: http.MethodPut, target: mine + "/heartbeat?namespace=firefly", header: bearer("shop")}), auth.RuleNamespace)
	wantRule(t, wh.do(request{method: http.MethodPost, target: instancesPath + "?namespace=firefly", body: newInventory(22).json(), header: bearer("shop")}), auth.RuleNamespace)
	wantRule(t, wh.do(request{method: http.MethodPost, target: instancesPath, body: newInventory(23).json(), header: bearer("human")}), auth.RuleServiceAccount)
	if _, ok := wh.entry("firefly", "prod", "inventory-service.22"); ok {
		t.Error("a refused registration was written")
	}

	// The owner may; the same pod-bound ServiceAccount is the same identity.
	wantStatus(t, wh.do(request{method: http.MethodPut, target: mine + "/heartbeat", header: bearer("inventory")}), http.StatusOK, "")
	wantStatus(t, wh.do(request{method: http.MethodPut, target: mine + "/heartbeat", header: bearer("inventory-pod")}), http.StatusOK, "")
	wantStatus(t, wh.do(request{method: http.MethodDelete, target: mine, header: bearer("inventory")}), http.StatusNoContent, "")
	if _, ok := wh.entry("firefly", "prod", "inventory-service.21"); ok {
		t.Error("the owner's deregistration did not remove the entry")
	}
	// Nothing to heartbeat, nothing to remove.
	wantStatus(t, wh.do(request{method: http.MethodPut, target: mine + "/heartbeat", header: bearer("inventory")}), http.StatusNotFound, model.CodeLeaseNotFound)
	wantStatus(t, wh.do(request{method: http.MethodDelete, target: mine, header: bearer("inventory")}), http.StatusNoContent, "")

	// Without ?namespace=, a ServiceAccount's writes go to its own namespace,
	// even for an env that another watched namespace holds.
	rec := wh.do(request{method: http.MethodPost, target: instancesPath, body: newInventory(24).json(), header: bearer("shop")})
	wantStatus(t, rec, http.StatusCreated, "")
	if _, ok := wh.entry("shop", "prod", "inventory-service.24"); !ok {
		t.Error("the shop ServiceAccount's registration is not in namespace shop")
	}
}

func TestLibraryEntriesAreReadOnlyButForAdmins(t *testing.T) {
	wh := newAuthHarness(t, false)
	const user = "/v1/envs/prod/apps/user-service/instances/1795695862709570046"
	before, ok := wh.entry("firefly", "prod", "user-service.1795695862709570046")
	if !ok {
		t.Fatal("fixture entry missing")
	}
	wantRule(t, wh.do(request{method: http.MethodPut, target: user + "/heartbeat", header: bearer("inventory")}), auth.RuleLibraryEntry)
	wantRule(t, wh.do(request{method: http.MethodDelete, target: user, header: bearer("inventory")}), auth.RuleLibraryEntry)
	if after, _ := wh.entry("firefly", "prod", "user-service.1795695862709570046"); after != before {
		t.Errorf("a refused write changed the library entry:\n %s\n %s", before, after)
	}
	// An admin, from another namespace, may.
	wantStatus(t, wh.do(request{method: http.MethodPut, target: user + "/heartbeat", header: bearer("admin")}), http.StatusOK, "")
	wantStatus(t, wh.do(request{method: http.MethodDelete, target: user, header: bearer("admin")}), http.StatusNoContent, "")
	if _, ok := wh.entry("firefly", "prod", "user-service.1795695862709570046"); ok {
		t.Error("the admin's deregistration did not remove the library entry")
	}
}

func TestReadAuth(t *testing.T) {
	wh := newAuthHarness(t, true)
	for _, target := range []string{"/v1/envs", "/v1/envs/prod", "/v1/envs/prod/apps/user-service", loginPath} {
		rec := wh.get(target)
		wantStatus(t, rec, http.StatusUnauthorized, model.CodeUnauthorized)
		if rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s: no WWW-Authenticate", target)
		}
		wantStatus(t, wh.do(request{target: target, header: bearer("human")}), http.StatusOK, "")
	}
	wantStatus(t, wh.do(request{method: http.MethodPost, target: "/v1/envs/prod/resolve", body: `{"methods":["/acme.user.v1.UserService/Login"]}`}),
		http.StatusUnauthorized, model.CodeUnauthorized)
	rec := wh.do(request{target: "/v1/envs", header: bearer("down")})
	wantStatus(t, rec, http.StatusServiceUnavailable, model.CodeStoreUnavailable)
	rec = wh.do(request{target: loginPath, header: bearer("down")})
	wantStatus(t, rec, http.StatusServiceUnavailable, model.CodeStoreUnavailable)
	// Probes, metrics and the document stay open.
	for _, target := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		if rec := wh.get(target); rec.Code != http.StatusOK {
			t.Errorf("GET %s = %d without a token", target, rec.Code)
		}
	}
}

func TestReadAuthNeedsAnAuthenticator(t *testing.T) {
	h := newHarness(t)
	if _, err := newServer(Deps{Snapshots: h.src, ReadAuth: true}); err == nil {
		t.Error("ReadAuth without Auth was accepted")
	}
}

// A write that reached its handler without authentication, on a server
// that authenticates, is refused rather than let through.
func TestGuardFailsClosed(t *testing.T) {
	wd := writeDeps{authenticated: true}
	g := wd.guard(httptest.NewRequest(http.MethodPut, "/", nil), auth.ActionHeartbeat, "firefly")
	if g == nil || model.ErrorCode(g(nil)) != model.CodeUnauthorized {
		t.Error("an unauthenticated request got through the guard")
	}
	if g := (writeDeps{}).guard(httptest.NewRequest(http.MethodPut, "/", nil), auth.ActionHeartbeat, "firefly"); g != nil {
		t.Error("a server without authentication guards writes")
	}
}
