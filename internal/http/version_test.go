package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/model"
)

const catalogV1Path = "/v1/envs/prod/apps/catalog-service/versions/v1"

// catalogBody is a version registration's body; every pod of a rollout
// sends the same one.
const catalogBody = `{"network":{"internal":"catalog-service.firefly:9000"},` +
	`"methods":["/acme.catalog.v1.CatalogService/GetItem","/acme.catalog.v1.CatalogService/ListItems"],` +
	`"kernel":{"language":"Golang","version":"v0.0.1"}}`

// versionBody mirrors versionView.
type versionBody struct {
	Env        string      `json:"env"`
	AppID      string      `json:"app_id"`
	Version    string      `json:"version"`
	Namespace  string      `json:"namespace"`
	Key        string      `json:"key"`
	LeaseID    string      `json:"lease_id"`
	Keepalive  string      `json:"keepalive"`
	Service    serviceView `json:"service"`
	AliveWhile string      `json:"alive_while"`
	Alive      bool        `json:"alive"`
	Methods    []string    `json:"methods"`
	ProtoCount int         `json:"proto_count"`
	Written    *bool       `json:"written"`
}

// resourceVersion is the resourceVersion of env's ConfigMap in namespace ns.
func (wh *writeHarness) resourceVersion(ns, env string) string {
	wh.t.Helper()
	cm, err := wh.store.Store.Get(context.Background(), ns, model.ConfigMapName(env))
	if err != nil {
		wh.t.Fatal(err)
	}
	return cm.ResourceVersion
}

// appKeys lists the keys of app's entries in env's ConfigMap of ns.
func (wh *writeHarness) appKeys(ns, env, app string) []string {
	wh.t.Helper()
	cm, err := wh.store.Store.Get(context.Background(), ns, model.ConfigMapName(env))
	if err != nil {
		wh.t.Fatal(err)
	}
	var keys []string
	for k := range cm.Data {
		if strings.HasPrefix(k, app+".") {
			keys = append(keys, k)
		}
	}
	return keys
}

func TestRegisterVersion(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	lease := model.VersionLeaseID("catalog-service", "v1")
	key := "catalog-service." + strconv.FormatInt(lease, 10)

	rec := wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody})
	wantStatus(t, rec, http.StatusCreated, "")
	if got := rec.Header().Get("Location"); got != catalogV1Path {
		t.Errorf("Location = %q, want %q", got, catalogV1Path)
	}
	var body versionBody
	decode(t, rec, &body)
	if body.Key != key || body.LeaseID != strconv.FormatInt(lease, 10) || body.Namespace != "firefly" ||
		body.Keepalive != model.KeepaliveService || body.Written == nil || !*body.Written {
		t.Errorf("answer %+v: want key %s, lease %d in firefly, keepalive service, written", body, key, lease)
	}
	if body.Service != (serviceView{Namespace: "firefly", Name: "catalog-service"}) {
		t.Errorf("service = %+v, want firefly/catalog-service", body.Service)
	}
	if !strings.Contains(body.AliveWhile, "ready endpoints") || !strings.Contains(body.AliveWhile, "version=v1") {
		t.Errorf("alive_while %q does not say that ready endpoints of version v1 keep it alive", body.AliveWhile)
	}
	raw, ok := wh.entry("firefly", "prod", key)
	if !ok {
		t.Fatalf("no entry under %s", key)
	}
	var entry map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &entry); err != nil {
		t.Fatal(err)
	}
	if string(entry[model.MemberKeepalive]) != `"service"` {
		t.Errorf("entry's keepalive = %s, want \"service\"", entry[model.MemberKeepalive])
	}
	if _, ok := entry[model.MemberRegisteredBy]; ok {
		t.Errorf("an unauthenticated registration recorded %s", entry[model.MemberRegisteredBy])
	}
	if _, _, err := model.ParseEntry("firefly", "prod", key, []byte(raw), model.ParseOptions{}); err != nil {
		t.Errorf("the entry does not parse as the library's format: %v", err)
	}

	// Every pod of the rollout sends it again: nothing is written, even
	// once the clock moved.
	rv := wh.resourceVersion("firefly", "prod")
	wh.clock.Add(3 * time.Second)
	for range 3 {
		rec = wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody})
		wantStatus(t, rec, http.StatusOK, "")
		decode(t, rec, &body)
		if body.Written == nil || *body.Written {
			t.Errorf("an unchanged registration answered written %v", body.Written)
		}
		if rec.Header().Get("Location") != "" {
			t.Errorf("a registration that created nothing answered Location %q", rec.Header().Get("Location"))
		}
	}
	if got := wh.resourceVersion("firefly", "prod"); got != rv {
		t.Errorf("unchanged registrations wrote the ConfigMap: resourceVersion %s -> %s", rv, got)
	}
	if after, _ := wh.entry("firefly", "prod", key); after != raw {
		t.Errorf("unchanged registrations changed the entry:\n%s\n%s", raw, after)
	}

	// A new method list rewrites the one entry.
	changed := strings.Replace(catalogBody, `"/acme.catalog.v1.CatalogService/ListItems"`,
		`"/acme.catalog.v1.CatalogService/ListItems","/acme.catalog.v1.CatalogService/Search"`, 1)
	rec = wh.do(request{method: http.MethodPut, target: catalogV1Path, body: changed})
	wantStatus(t, rec, http.StatusOK, "")
	decode(t, rec, &body)
	if body.Written == nil || !*body.Written || len(body.Methods) != 3 {
		t.Errorf("a changed registration answered %+v", body)
	}
	if got := wh.resourceVersion("firefly", "prod"); got == rv {
		t.Error("a changed registration wrote nothing")
	}
	if keys := wh.appKeys("firefly", "prod", "catalog-service"); len(keys) != 1 || keys[0] != key {
		t.Errorf("entries of catalog-service: %v, want only %s", keys, key)
	}

	// Read back, as the snapshot has it.
	rec = wh.get(catalogV1Path)
	wantStatus(t, rec, http.StatusOK, "")
	body = versionBody{}
	decode(t, rec, &body)
	if body.Key != key || body.Version != "v1" || body.Written != nil || len(body.Methods) != 3 {
		t.Errorf("GET answered %+v", body)
	}
	wantStatus(t, wh.get("/v1/envs/prod/apps/catalog-service/versions/v2"), http.StatusNotFound, model.CodeVersionNotFound)

	// Another version is another entry.
	wantStatus(t, wh.do(request{method: http.MethodPut, target: "/v1/envs/prod/apps/catalog-service/versions/v2", body: catalogBody}), http.StatusCreated, "")
	if keys := wh.appKeys("firefly", "prod", "catalog-service"); len(keys) != 2 {
		t.Errorf("entries of catalog-service: %v, want one per version", keys)
	}

	wantStatus(t, wh.do(request{method: http.MethodDelete, target: catalogV1Path}), http.StatusNoContent, "")
	wantStatus(t, wh.get(catalogV1Path), http.StatusNotFound, model.CodeVersionNotFound)
	if _, ok := wh.entry("firefly", "prod", key); ok {
		t.Error("the deregistered version's entry is still there")
	}
	// A preStop hook or a pipeline may run it twice.
	wantStatus(t, wh.do(request{method: http.MethodDelete, target: catalogV1Path}), http.StatusNoContent, "")
}

// An instance entry that happens to carry the version's lease id is not its
// registration.
func TestGetVersionIsNotAnInstance(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	lease := model.VersionLeaseID("inventory-service", "v1")
	wantStatus(t, wh.register(instancesPath, newInventory(lease).json()), http.StatusCreated, "")
	wantStatus(t, wh.get("/v1/envs/prod/apps/inventory-service/versions/v1"), http.StatusNotFound, model.CodeVersionNotFound)
	wantStatus(t, wh.get("/v1/envs/nowhere/apps/inventory-service/versions/v1"), http.StatusNotFound, model.CodeEnvNotFound)
	wantStatus(t, wh.get("/v1/envs/prod/apps/nobody/versions/v1"), http.StatusNotFound, model.CodeAppNotFound)
}

func TestRegisterVersionValidation(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	withInternal := func(addr string) string {
		return strings.Replace(catalogBody, "catalog-service.firefly:9000", addr, 1)
	}
	for _, tc := range []struct {
		name, target, body, detail string
	}{
		{"IPv4 literal", catalogV1Path, withInternal("10.0.0.7:9000"), "IP address"},
		{"IPv6 literal", catalogV1Path, withInternal("[fd00::7]:9000"), "IP address"},
		{"host outside the cluster", catalogV1Path, withInternal("catalog.example.com:443"), "not the DNS name of a Kubernetes Service"},
		{"no port", catalogV1Path, withInternal("catalog-service"), "not host:port"},
		{"port zero", catalogV1Path, withInternal("catalog-service:0"), "port"},
		{"not a Service name", catalogV1Path, withInternal("Catalog_Service:9000"), "Service name"},
		{"lease id", catalogV1Path, strings.Replace(catalogBody, "{", `{"lease_id":"5",`, 1), "lease_id"},
		{"version in the body", catalogV1Path, strings.Replace(catalogBody, "{", `{"version":"v1",`, 1), "version"},
		{"keepalive", catalogV1Path, strings.Replace(catalogBody, "{", `{"keepalive":"client",`, 1), "keepalive"},
		{"malformed method", catalogV1Path, strings.Replace(catalogBody, "/acme.catalog.v1.CatalogService/GetItem", "GetItem", 1), ""},
		{"version not a label value", "/v1/envs/prod/apps/catalog-service/versions/v1%21", catalogBody, "version"},
		{"app not a label", "/v1/envs/prod/apps/Catalog/versions/v1", catalogBody, "appId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := wh.do(request{method: http.MethodPut, target: tc.target, body: tc.body})
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
			}
			if p := problemOf(t, rec); !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not say %q", p.Detail, tc.detail)
			}
		})
	}
	for _, addr := range []string{"catalog-service:9000", "catalog-service.firefly:9000", "catalog-service.firefly.svc:9000", "catalog-service.firefly.svc.cluster.local:9000"} {
		wantStatus(t, wh.do(request{method: http.MethodPut, target: catalogV1Path, body: withInternal(addr)}), http.StatusCreated, "")
		wantStatus(t, wh.do(request{method: http.MethodDelete, target: catalogV1Path}), http.StatusNoContent, "")
	}
	if keys := wh.appKeys("firefly", "prod", "catalog-service"); len(keys) != 0 {
		t.Errorf("refused registrations left entries %v", keys)
	}
}

func TestRegisterVersionPolicy(t *testing.T) {
	wh := newAuthHarness(t, false)
	// A pod's init container registers with the pod-bound token of the
	// Deployment's ServiceAccount.
	rec := wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody, header: bearer("inventory-pod")})
	wantStatus(t, rec, http.StatusCreated, "")
	key := "catalog-service." + strconv.FormatInt(model.VersionLeaseID("catalog-service", "v1"), 10)
	raw, _ := wh.entry("firefly", "prod", key)
	own, err := model.ReadOwnership([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if own.RegisteredBy == nil || own.RegisteredBy.Username != "system:serviceaccount:firefly:inventory" || own.RegisteredBy.Pod != nil {
		t.Errorf("registered_by = %+v: want the ServiceAccount, without the pod", own.RegisteredBy)
	}
	if !own.ServiceKept() || own.PodBound() {
		t.Errorf("ownership %+v: want service-kept, not pod-bound", own)
	}

	// The next pod of the rollout, the same ServiceAccount without a pod:
	// the same entry, nothing written.
	rv := wh.resourceVersion("firefly", "prod")
	wantStatus(t, wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody, header: bearer("inventory")}), http.StatusOK, "")
	if got := wh.resourceVersion("firefly", "prod"); got != rv {
		t.Errorf("the same registration by the next pod wrote: resourceVersion %s -> %s", rv, got)
	}

	wantRule(t, wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody, header: bearer("other")}), auth.RuleOwner)
	wantRule(t, wh.do(request{method: http.MethodDelete, target: catalogV1Path, header: bearer("other")}), auth.RuleOwner)
	wantRule(t, wh.do(request{method: http.MethodPut, target: catalogV1Path + "?namespace=firefly", body: catalogBody, header: bearer("shop")}), auth.RuleNamespace)
	wantRule(t, wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody, header: bearer("human")}), auth.RuleServiceAccount)
	wantStatus(t, wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody}), http.StatusUnauthorized, model.CodeUnauthorized)
	wantStatus(t, wh.do(request{method: http.MethodDelete, target: catalogV1Path, header: bearer("inventory")}), http.StatusNoContent, "")
}

// A version registration's instances in every view are its Service's ready
// endpoints, and their number is its live count.
func TestVersionInstancesAreReadyEndpoints(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	wantStatus(t, wh.do(request{method: http.MethodPut, target: catalogV1Path, body: catalogBody}), http.StatusCreated, "")
	var body versionBody
	decode(t, wh.get(catalogV1Path), &body)
	if body.Alive {
		t.Errorf("alive without a ready endpoint: %+v", body)
	}
	svc := model.ServiceRef{Namespace: "firefly", Name: "catalog-service"}
	wh.poller.SetEndpoints(model.Endpoints{svc: {Labelled: true, Ready: []model.Endpoint{
		{Pod: "catalog-7d9-a", Node: "node-1", Zone: "zone-a", Version: "v1"},
		{Pod: "catalog-7d9-b", Version: "v1"},
		{Pod: "catalog-8e1-c", Version: "v2"},
	}}})

	rec := wh.get(catalogV1Path)
	wantStatus(t, rec, http.StatusOK, "")
	var got struct {
		Alive     bool                `json:"alive"`
		Endpoints []readyEndpointView `json:"endpoints"`
	}
	decode(t, rec, &got)
	if !got.Alive || len(got.Endpoints) != 2 || got.Endpoints[0] != (readyEndpointView{Pod: "catalog-7d9-a", NodeName: "node-1", Zone: "zone-a"}) {
		t.Errorf("GET answered %+v: want alive by the two v1 endpoints", got)
	}

	var app struct {
		Instances []struct {
			Pod       string `json:"pod"`
			Keepalive string `json:"keepalive"`
			Alive     bool   `json:"alive"`
		} `json:"instances"`
	}
	decode(t, wh.get("/v1/envs/prod/apps/catalog-service"), &app)
	if len(app.Instances) != 2 || app.Instances[0].Pod != "catalog-7d9-a" || !app.Instances[1].Alive || app.Instances[1].Keepalive != "service" {
		t.Errorf("app instances %+v: want the two ready v1 endpoints", app.Instances)
	}
	var routes struct {
		Routes []struct {
			Method  string `json:"method"`
			Targets []struct {
				Instances int `json:"instances"`
			} `json:"targets"`
		} `json:"routes"`
	}
	decode(t, wh.get("/v1/envs/prod/routes?app=catalog-service"), &routes)
	if len(routes.Routes) != 2 || len(routes.Routes[0].Targets) != 1 || routes.Routes[0].Targets[0].Instances != 2 {
		t.Errorf("routes %+v: want 2 instances behind each method", routes)
	}
	wantStatus(t, wh.get("/v1/envs/prod/methods/acme.catalog.v1.CatalogService/GetItem"), http.StatusOK, "")

	// The pods go unready: the version stays registered, not alive.
	wh.poller.SetEndpoints(model.Endpoints{})
	decode(t, wh.get(catalogV1Path), &got)
	if got.Alive || len(got.Endpoints) != 0 {
		t.Errorf("GET answered %+v after the endpoints went", got)
	}
	wantStatus(t, wh.get("/v1/envs/prod/methods/acme.catalog.v1.CatalogService/GetItem"), http.StatusServiceUnavailable, model.CodeNoLiveInstances)
}
