package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/testkit"
	"github.com/acme/registry-api/internal/watch"
	"github.com/acme/registry-api/internal/write"
)

// bigLease exceeds 2^53 and is odd, so a float64 anywhere on its way changes it.
const bigLease int64 = 1795695862709570047

const instancesPath = "/v1/envs/prod/apps/inventory-service/instances"

// faultyStore fails as an unreachable API server does while down, and
// answers every Update with 409 while conflicting.
type faultyStore struct {
	store.Store
	down, conflicting atomic.Bool
}

func (s *faultyStore) unreachable(op, ns, name string) error {
	return fmt.Errorf("%s configmap %s/%s: %w", op, ns, name,
		&net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}})
}

func (s *faultyStore) List(ctx context.Context, ns string) (*corev1.ConfigMapList, error) {
	if s.down.Load() {
		return nil, s.unreachable("list", ns, "")
	}
	return s.Store.List(ctx, ns)
}

func (s *faultyStore) Get(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if s.down.Load() {
		return nil, s.unreachable("get", ns, name)
	}
	return s.Store.Get(ctx, ns, name)
}

func (s *faultyStore) Create(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	if s.down.Load() {
		return nil, s.unreachable("create", cm.Namespace, cm.Name)
	}
	return s.Store.Create(ctx, cm)
}

func (s *faultyStore) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	switch {
	case s.down.Load():
		return nil, s.unreachable("update", cm.Namespace, cm.Name)
	case s.conflicting.Load():
		return nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, cm.Name, fmt.Errorf("the object has been modified"))
	}
	return s.Store.Update(ctx, cm)
}

// writeOptions vary the write harness.
type writeOptions struct {
	maxBytes int
	readOnly bool
	noWriter bool
	// namespace is the write namespace, firefly unless set or noNamespace.
	namespace   string
	noNamespace bool
	// auth, policy and readAuth are Deps' Auth, Policy and ReadAuth.
	auth     Authenticator
	policy   auth.Policy
	readAuth bool
}

// writeHarness is a server over a memory store holding the fixtures, with a
// real write.Writer and a watch.Poller over that store, wired as serve
// wires them: the poller reads the Writer's writes at once.
type writeHarness struct {
	*harness
	store  *faultyStore
	poller *watch.Poller
}

func newWriteHarness(t testing.TB, opts writeOptions) *writeHarness {
	t.Helper()
	var seed []corev1.ConfigMap
	for _, file := range []string{"configmaps-go-micro.yaml", "configmaps-extra.yaml"} {
		cms, err := store.LoadSeedFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		seed = append(seed, cms...)
	}
	mem, err := store.NewMemory(seed...)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clock: testkit.NewClock(t0), registry: prometheus.NewRegistry(), logs: &testkit.Buffer{}}
	wh := &writeHarness{harness: h, store: &faultyStore{Store: mem}}
	wh.poller, err = watch.New(wh.store, watch.Options{Namespaces: []string{"firefly", "shop"}, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	wh.poller.Poll(t.Context())
	if !wh.poller.Snapshot().Ready() {
		t.Fatal("the poller did not read the fixtures")
	}
	deps := Deps{
		Log:            zerolog.New(h.logs).Level(zerolog.DebugLevel),
		Snapshots:      wh.poller,
		Now:            h.clock.Now,
		TTL:            10 * time.Second,
		Prometheus:     h.registry,
		ReadOnly:       opts.readOnly,
		WriteNamespace: opts.namespace,
		Auth:           opts.auth,
		Policy:         opts.policy,
		ReadAuth:       opts.readAuth,
	}
	if deps.WriteNamespace == "" && !opts.noNamespace {
		deps.WriteNamespace = "firefly"
	}
	if !opts.noWriter {
		w, err := write.New(write.Options{
			Store:             wh.store,
			TTL:               10 * time.Second,
			MaxConfigMapBytes: opts.maxBytes,
			Backoff:           wait.Backoff{Steps: 3, Duration: time.Millisecond},
			Now:               h.clock.Now,
			OnWritten:         wh.poller.Apply,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		deps.Writer = w
	}
	h.srv, err = newServer(deps)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

// entry returns the raw value under key in env's ConfigMap of namespace ns.
func (wh *writeHarness) entry(ns, env, key string) (string, bool) {
	wh.t.Helper()
	cm, err := wh.store.Store.Get(context.Background(), ns, model.ConfigMapName(env))
	if apierrors.IsNotFound(err) {
		return "", false
	}
	if err != nil {
		wh.t.Fatal(err)
	}
	v, ok := cm.Data[key]
	return v, ok
}

func (wh *writeHarness) register(target, body string) *httptest.ResponseRecorder {
	wh.t.Helper()
	return wh.do(request{method: http.MethodPost, target: target, body: body})
}

// inventory is a registration body of an example non-Go app.
type inventory struct {
	LeaseID    int64          `json:"lease_id,omitempty"`
	Version    string         `json:"version"`
	Network    map[string]any `json:"network"`
	Methods    any            `json:"methods"`
	Kernel     map[string]any `json:"kernel"`
	ProtoCount int            `json:"proto_count"`
}

func newInventory(lease int64) inventory {
	return inventory{
		LeaseID: lease,
		Version: "v1",
		Network: map[string]any{"sn": "firefly-main-network", "internal": "inventory-service.firefly.svc.cluster.local:9000", "external": "203.0.113.9:443"},
		Methods: []string{"/acme.inventory.v1.InventoryService/Reserve", "/acme.inventory.v1.InventoryService/GetStock"},
		Kernel:  map[string]any{"language": "Java", "version": "21"},
		// Given, so kept: derived from the methods it would be 1.
		ProtoCount: 2,
	}
}

func (b inventory) json() string {
	out, err := json.Marshal(b)
	if err != nil {
		panic(err)
	}
	return string(out)
}

// registrationBody mirrors registrationView; lease ids are strings on the
// wire, and decoding one sent as a number fails.
type registrationBody struct {
	LeaseID                  string `json:"lease_id"`
	Key                      string `json:"key"`
	TTLSeconds               int    `json:"ttl_seconds"`
	HeartbeatIntervalSeconds int    `json:"heartbeat_interval_seconds"`
	Instance                 struct {
		Key        string      `json:"key"`
		LeaseID    string      `json:"lease_id"`
		Namespace  string      `json:"namespace"`
		Version    string      `json:"version"`
		RunDate    string      `json:"run_date"`
		AgeSeconds int         `json:"age_seconds"`
		Alive      bool        `json:"alive"`
		Network    networkView `json:"network"`
		Kernel     kernelView  `json:"kernel"`
		Methods    []string    `json:"methods"`
		ProtoCount int         `json:"proto_count"`
	} `json:"instance"`
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, status int, code model.Code) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if code != "" {
		if p := problemOf(t, rec); p.Code != code {
			t.Fatalf("code %q, want %q: %s", p.Code, code, rec.Body)
		}
	}
}

func TestRegister(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	rec := wh.register(instancesPath, newInventory(bigLease).json())
	wantStatus(t, rec, http.StatusCreated, "")

	key := "inventory-service.1795695862709570047"
	if got, want := rec.Header().Get("Location"), instancesPath+"/1795695862709570047"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	var body registrationBody
	decode(t, rec, &body)
	in := body.Instance
	if body.LeaseID != "1795695862709570047" || body.Key != key || body.TTLSeconds != 10 || body.HeartbeatIntervalSeconds != 5 {
		t.Errorf("registration = %+v", body)
	}
	if in.Key != key || in.LeaseID != "1795695862709570047" || in.Namespace != "firefly" || in.Version != "v1" ||
		in.RunDate != "2026-11-26T12:24:25Z" || in.AgeSeconds != 0 || !in.Alive || in.ProtoCount != 2 ||
		in.Network != (networkView{SN: "firefly-main-network", Internal: "inventory-service.firefly.svc.cluster.local:9000", External: "203.0.113.9:443"}) ||
		in.Kernel != (kernelView{Language: "Java", Version: "21"}) ||
		strings.Join(in.Methods, " ") != "/acme.inventory.v1.InventoryService/GetStock /acme.inventory.v1.InventoryService/Reserve" {
		t.Errorf("instance = %+v", in)
	}

	// The stored entry is the library's, field by field and byte for byte.
	raw, ok := wh.entry("firefly", "prod", key)
	if !ok {
		t.Fatalf("no entry %s in firefly/ff-registry-prod", key)
	}
	var sn libServiceNode
	if err := json.Unmarshal([]byte(raw), &sn); err != nil {
		t.Fatalf("entry %s: %v", raw, err)
	}
	want := libServiceNode{
		ProtoCount: 2,
		LeaseID:    bigLease,
		RunDate:    "2026-11-26 12:24:25",
		Methods:    map[string]bool{"/acme.inventory.v1.InventoryService/GetStock": true, "/acme.inventory.v1.InventoryService/Reserve": true},
		Network:    libNetwork{SN: "firefly-main-network", Internal: "inventory-service.firefly.svc.cluster.local:9000", External: "203.0.113.9:443"},
		Kernel:     libKernel{Language: "Java", Version: "21"},
		Meta:       libMeta{Env: "prod", AppID: "inventory-service", Version: "v1"},
	}
	if sn.ProtoCount != want.ProtoCount || sn.LeaseID != want.LeaseID || sn.RunDate != want.RunDate ||
		len(sn.Methods) != 2 || !sn.Methods["/acme.inventory.v1.InventoryService/GetStock"] || !sn.Methods["/acme.inventory.v1.InventoryService/Reserve"] ||
		sn.Network != want.Network || sn.Kernel != want.Kernel || sn.Meta != want.Meta {
		t.Errorf("entry = %+v, want %+v", sn, want)
	}
	if _, err := time.ParseInLocation(time.DateTime, sn.RunDate, time.UTC); err != nil {
		t.Errorf("run_date %q is not the library's layout: %v", sn.RunDate, err)
	}
	if lib, _ := json.Marshal(want); raw != string(lib) {
		t.Errorf("entry differs from what the library writes:\n got %s\nwant %s", raw, lib)
	}

	// Nothing else in the ConfigMap changed.
	if v, ok := wh.entry("firefly", "prod", "user-service.1795695862709570046"); !ok || !strings.Contains(v, `"run_date":"2026-11-26 12:24:22"`) {
		t.Errorf("the library's entry changed: %s", v)
	}
}

// TestRegisterLeaseAsString registers with the lease id as answers write it,
// a decimal string, which a JavaScript client can send without losing digits.
func TestRegisterLeaseAsString(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	body := strings.Replace(newInventory(bigLease).json(), `"lease_id":1795695862709570047`, `"lease_id":"1795695862709570047"`, 1)
	if !strings.Contains(body, `"lease_id":"1795695862709570047"`) {
		t.Fatalf("body without a string lease id: %s", body)
	}
	rec := wh.register(instancesPath, body)
	wantStatus(t, rec, http.StatusCreated, "")
	var reg registrationBody
	decode(t, rec, &reg)
	if reg.LeaseID != "1795695862709570047" || reg.Instance.LeaseID != "1795695862709570047" {
		t.Errorf("registration = %+v", reg)
	}
	raw, ok := wh.entry("firefly", "prod", "inventory-service.1795695862709570047")
	if !ok {
		t.Fatal("no entry under the string's lease id")
	}
	// Stored as the library's number, not as the string.
	if !strings.Contains(raw, `"lease_id":1795695862709570047,`) {
		t.Errorf("entry = %s", raw)
	}
}

// TestRegisterMinimal registers the smallest body an init container sends:
// the stored entry has the library's shape, with its defaults.
func TestRegisterMinimal(t *testing.T) {
	for _, tt := range []struct {
		name, methods string
		protoCount    int
	}{
		{"one service", `["/acme.inventory.v1.InventoryService/GetStock"]`, 1},
		{"two services", `["/acme.inventory.v1.InventoryService/GetStock","/acme.inventory.v1.StockAdmin/Refill","/acme.inventory.v1.InventoryService/Reserve"]`, 2},
		{"no method", `[]`, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wh := newWriteHarness(t, writeOptions{})
			rec := wh.register(instancesPath, `{"version":"v1","network":{"internal":"inventory-service:9000"},"methods":`+tt.methods+`}`)
			wantStatus(t, rec, http.StatusCreated, "")
			var reg registrationBody
			decode(t, rec, &reg)
			lease, err := strconv.ParseInt(reg.LeaseID, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			raw, ok := wh.entry("firefly", "prod", reg.Key)
			if !ok {
				t.Fatalf("no entry %s", reg.Key)
			}
			var methods []string
			if err := json.Unmarshal([]byte(tt.methods), &methods); err != nil {
				t.Fatal(err)
			}
			want := libServiceNode{
				ProtoCount: tt.protoCount,
				LeaseID:    lease,
				RunDate:    "2026-11-26 12:24:25",
				Methods:    map[string]bool{},
				Network:    libNetwork{Internal: "inventory-service:9000"},
				Meta:       libMeta{Env: "prod", AppID: "inventory-service", Version: "v1"},
			}
			for _, m := range methods {
				want.Methods[m] = true
			}
			if lib, _ := json.Marshal(want); raw != string(lib) {
				t.Errorf("entry differs from what the library writes:\n got %s\nwant %s", raw, lib)
			}
			if reg.Instance.ProtoCount != tt.protoCount || reg.Instance.Kernel != (kernelView{}) || reg.Instance.Network != (networkView{Internal: "inventory-service:9000"}) {
				t.Errorf("instance = %+v", reg.Instance)
			}
		})
	}
}

func TestRegisterCreatesConfigMap(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{namespace: "shop"})
	rec := wh.register("/v1/envs/perf/apps/inventory-service/instances", newInventory(7).json())
	wantStatus(t, rec, http.StatusCreated, "")
	if _, ok := wh.entry("shop", "perf", "inventory-service.7"); !ok {
		t.Fatal("the new env's ConfigMap was not created in the write namespace")
	}
	cm, err := wh.store.Get(context.Background(), "shop", "ff-registry-perf")
	if err != nil {
		t.Fatal(err)
	}
	// As the library creates it: no labels, no annotations.
	if len(cm.Labels) != 0 || len(cm.Annotations) != 0 {
		t.Errorf("labels %v, annotations %v", cm.Labels, cm.Annotations)
	}
}

func TestRegisterGeneratesUniqueLeases(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	var leases []int64
	for range 3 {
		rec := wh.register(instancesPath, newInventory(0).json())
		wantStatus(t, rec, http.StatusCreated, "")
		var body registrationBody
		decode(t, rec, &body)
		lease, err := strconv.ParseInt(string(body.LeaseID), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := rec.Header().Get("Location"), instancesPath+"/"+string(body.LeaseID); got != want {
			t.Errorf("Location = %q, want %q", got, want)
		}
		if body.Key != "inventory-service."+string(body.LeaseID) {
			t.Errorf("key %s for lease %s", body.Key, body.LeaseID)
		}
		leases = append(leases, lease)
	}
	// The clock stands still: the library's choice (now in nanoseconds),
	// moved on past the leases the app already holds.
	base := t0.UnixNano()
	if leases[0] != base || leases[1] != base+1 || leases[2] != base+2 {
		t.Errorf("leases = %v, want %d and the next two", leases, base)
	}
}

func TestReRegisterReplacesTheEntry(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	first := newInventory(bigLease)
	wantStatus(t, wh.register(instancesPath, first.json()), http.StatusCreated, "")

	wh.clock.Add(2 * time.Second)
	retry := first
	retry.Version = "v2"
	retry.Methods = []string{"/acme.inventory.v1.InventoryService/Release"}
	rec := wh.register(instancesPath, retry.json())
	wantStatus(t, rec, http.StatusCreated, "")

	app := wh.get("/v1/envs/prod/apps/inventory-service")
	var v appDetailView
	decode(t, app, &v)
	if len(v.Instances) != 1 || v.Instances[0].Version != "v2" || v.Instances[0].RunDate != "2026-11-26T12:24:27Z" ||
		strings.Join(v.Instances[0].Methods, " ") != "/acme.inventory.v1.InventoryService/Release" {
		t.Errorf("after a second registration of one lease: %+v", v.Instances)
	}
}

func TestRegisterMethodsAsWireMap(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	b := newInventory(5)
	b.Methods = map[string]bool{"/acme.inventory.v1.InventoryService/GetStock": true, "/acme.inventory.v1.InventoryService/Old": false}
	wantStatus(t, wh.register(instancesPath, b.json()), http.StatusCreated, "")
	raw, _ := wh.entry("firefly", "prod", "inventory-service.5")
	if !strings.Contains(raw, `"methods":{"/acme.inventory.v1.InventoryService/GetStock":true}`) {
		t.Errorf("entry = %s", raw)
	}
}

func TestWriteValidation(t *testing.T) {
	valid := newInventory(9)
	with := func(change func(*inventory)) string {
		b := newInventory(9)
		b.Network = map[string]any{"internal": valid.Network["internal"]}
		change(&b)
		return b.json()
	}
	internal := func(addr string) string {
		return with(func(b *inventory) { b.Network = map[string]any{"internal": addr} })
	}
	heartbeat := func(lease string) string {
		return "/v1/envs/prod/apps/inventory-service/instances/" + lease + "/heartbeat"
	}
	tests := []struct {
		name    string
		req     request
		code    model.Code
		details []string
	}{
		{name: "app id not a DNS label", req: request{method: "POST", target: "/v1/envs/prod/apps/Inventory_Service/instances", body: valid.json()},
			code: model.CodeInvalid, details: []string{`path parameter "appId"`}},
		{name: "app id too long", req: request{method: "POST", target: "/v1/envs/prod/apps/" + strings.Repeat("a", 64) + "/instances", body: valid.json()},
			code: model.CodeInvalid, details: []string{`path parameter "appId"`}},
		{name: "env not a ConfigMap name suffix", req: request{method: "POST", target: "/v1/envs/Prod/apps/inventory-service/instances", body: valid.json()},
			code: model.CodeInvalid, details: []string{`path parameter "env"`}},
		{name: "malformed method in list", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Methods = []string{"/acme.inventory.v1.InventoryService/GetStock", "GetStock"} })},
			code: model.CodeMalformedMethod, details: []string{"/methods", `"GetStock"`, "/<package>.<Service>/<Method>"}},
		{name: "method without service", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Methods = []string{"/GetStock"} })},
			code: model.CodeMalformedMethod, details: []string{`"/GetStock"`}},
		{name: "malformed method in map", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Methods = map[string]bool{"acme.X/Y": true} })},
			code: model.CodeMalformedMethod, details: []string{`"acme.X/Y"`}},
		{name: "methods not a list", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Methods = "/a.B/C" })},
			code: model.CodeInvalid, details: []string{"/methods", "array of gRPC method names or an object mapping each to true"}},
		{name: "methods map of strings", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Methods = map[string]string{"/a.B/C": "true"} })},
			code: model.CodeInvalid, details: []string{"/methods", "array of gRPC method names or an object mapping each to true"}},
		{name: "methods null", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Methods = nil })},
			code: model.CodeInvalid, details: []string{"/methods"}},
		{name: "internal without port", req: request{method: "POST", target: instancesPath, body: internal("inventory-service")},
			code: model.CodeInvalid, details: []string{"/network/internal", `"inventory-service"`, "host:port"}},
		{name: "internal port zero", req: request{method: "POST", target: instancesPath, body: internal("inventory-service:0")},
			code: model.CodeInvalid, details: []string{"/network/internal", "1 to 65535"}},
		{name: "internal port too big", req: request{method: "POST", target: instancesPath, body: internal("inventory-service:65536")},
			code: model.CodeInvalid, details: []string{"1 to 65535"}},
		{name: "internal port named", req: request{method: "POST", target: instancesPath, body: internal("inventory-service:grpc")},
			code: model.CodeInvalid, details: []string{"1 to 65535"}},
		{name: "internal without host", req: request{method: "POST", target: instancesPath, body: internal(":9000")},
			code: model.CodeInvalid, details: []string{"/network/internal", "host is empty"}},
		{name: "internal host with space", req: request{method: "POST", target: instancesPath, body: internal("inventory service:9000")},
			code: model.CodeInvalid, details: []string{"white space"}},
		{name: "internal missing", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Network = map[string]any{"sn": "x"} })},
			code: model.CodeInvalid, details: []string{"/network/internal"}},
		{name: "unknown field", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `{`, `{"colour":"red",`, 1)},
			code: model.CodeInvalid, details: []string{"colour"}},
		{name: "unknown nested field", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Network["zone"] = "eu" })},
			code: model.CodeInvalid, details: []string{"zone"}},
		{name: "version missing", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"version":"v1",`, "", 1)},
			code: model.CodeInvalid, details: []string{"version"}},
		{name: "version empty", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.Version = "" })},
			code: model.CodeInvalid, details: []string{"/version", "minimum string length is 1"}},
		{name: "lease zero", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":0`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id"}},
		{name: "lease negative", req: request{method: "POST", target: instancesPath, body: with(func(b *inventory) { b.LeaseID = -4 })},
			code: model.CodeInvalid, details: []string{"/lease_id"}},
		{name: "lease past int64", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":9223372036854775808`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id", "9223372036854775807"}},
		{name: "lease as string with leading zero", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":"09"`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id", "decimal string"}},
		{name: "lease as string zero", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":"0"`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id"}},
		{name: "lease as string past int64", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":"9223372036854775808"`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id", "9223372036854775807"}},
		{name: "lease as string not a number", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":"9a"`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id"}},
		{name: "lease as boolean", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":true`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id"}},
		{name: "lease fractional", req: request{method: "POST", target: instancesPath, body: strings.Replace(valid.json(), `"lease_id":9`, `"lease_id":9.5`, 1)},
			code: model.CodeInvalid, details: []string{"/lease_id"}},
		{name: "not JSON", req: request{method: "POST", target: instancesPath, body: `{"version":`},
			code: model.CodeInvalid, details: []string{"not valid JSON"}},
		{name: "no body", req: request{method: "POST", target: instancesPath},
			code: model.CodeInvalid, details: []string{"request body is required"}},
		{name: "unwatched namespace", req: request{method: "POST", target: instancesPath + "?namespace=kube-system", body: valid.json()},
			code: model.CodeInvalid, details: []string{"kube-system", "not watched", "firefly, shop"}},
		{name: "invalid namespace", req: request{method: "POST", target: instancesPath + "?namespace=Shop_1", body: valid.json()},
			code: model.CodeInvalid, details: []string{`query parameter "namespace"`}},
		{name: "heartbeat lease zero", req: request{method: "PUT", target: heartbeat("0")},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`}},
		{name: "heartbeat lease negative", req: request{method: "PUT", target: heartbeat("-5")},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`}},
		{name: "heartbeat lease not a number", req: request{method: "PUT", target: heartbeat("abc")},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`}},
		{name: "heartbeat lease past int64", req: request{method: "PUT", target: heartbeat("9223372036854775808")},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`}},
		{name: "heartbeat lease with leading zero", req: request{method: "PUT", target: heartbeat("0042")},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`, `"0042"`}},
		{name: "heartbeat lease with sign", req: request{method: "PUT", target: heartbeat("+42")},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`}},
		{name: "heartbeat app id invalid", req: request{method: "PUT", target: "/v1/envs/prod/apps/-x/instances/42/heartbeat"},
			code: model.CodeInvalid, details: []string{`path parameter "appId"`}},
		{name: "deregister lease not a number", req: request{method: "DELETE", target: instancesPath + "/1e3"},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`}},
		{name: "deregister unwatched namespace", req: request{method: "DELETE", target: instancesPath + "/42?namespace=default"},
			code: model.CodeInvalid, details: []string{"not watched"}},
		{name: "get instance lease invalid", req: request{target: instancesPath + "/0"},
			code: model.CodeInvalid, details: []string{`path parameter "leaseId"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wh := newWriteHarness(t, writeOptions{})
			rec := wh.do(tt.req)
			wantStatus(t, rec, http.StatusBadRequest, tt.code)
			detailContains(tt.details...)(t, rec)
			// Nothing was written.
			if _, ok := wh.entry("firefly", "prod", "inventory-service.9"); ok {
				t.Error("an invalid registration was written")
			}
		})
	}
}

func TestRegisterBodyLimit(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	b := newInventory(9)
	b.Kernel["version"] = strings.Repeat("x", maxRegisterBody)
	rec := wh.register(instancesPath, b.json())
	wantStatus(t, rec, http.StatusRequestEntityTooLarge, model.CodePayloadTooLarge)
	detailContains("65536 bytes")(t, rec)

	// Just below the limit, an app with many methods registers.
	b = newInventory(9)
	var methods []string
	for i := 0; len(strings.Join(methods, `","`)) < maxRegisterBody-1000; i++ {
		methods = append(methods, fmt.Sprintf("/acme.inventory.v1.InventoryService/Method%d", i))
	}
	b.Methods = methods
	if n := len(b.json()); n > maxRegisterBody {
		t.Fatalf("body of %d bytes", n)
	}
	wantStatus(t, wh.register(instancesPath, b.json()), http.StatusCreated, "")
}

func TestHeartbeat(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	wantStatus(t, wh.register(instancesPath, newInventory(bigLease).json()), http.StatusCreated, "")
	key := "inventory-service.1795695862709570047"
	before, _ := wh.entry("firefly", "prod", key)

	wh.clock.Add(3 * time.Second)
	rec := wh.do(request{method: http.MethodPut, target: instancesPath + "/1795695862709570047/heartbeat"})
	wantStatus(t, rec, http.StatusOK, "")
	var v struct {
		LeaseID                  string `json:"lease_id"`
		Key                      string `json:"key"`
		TTLSeconds               int    `json:"ttl_seconds"`
		HeartbeatIntervalSeconds int    `json:"heartbeat_interval_seconds"`
		RunDate                  string `json:"run_date"`
	}
	decode(t, rec, &v)
	if v.LeaseID != "1795695862709570047" || v.Key != key || v.TTLSeconds != 10 || v.HeartbeatIntervalSeconds != 5 || v.RunDate != "2026-11-26T12:24:28Z" {
		t.Errorf("heartbeat = %+v", v)
	}
	after, _ := wh.entry("firefly", "prod", key)
	if want := strings.Replace(before, "12:24:25", "12:24:28", 1); after != want {
		t.Errorf("the heartbeat changed more than run_date:\nbefore %s\nafter  %s", before, after)
	}

	// Read-your-writes: the instance is alive past the first TTL.
	wh.clock.Add(9 * time.Second)
	var app appDetailView
	decode(t, wh.get("/v1/envs/prod/apps/inventory-service"), &app)
	if len(app.Instances) != 1 || !app.Instances[0].Alive {
		t.Errorf("after the heartbeat: %+v", app.Instances)
	}
}

func TestHeartbeatOfUnknownLease(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	rec := wh.do(request{method: http.MethodPut, target: instancesPath + "/42/heartbeat"})
	wantStatus(t, rec, http.StatusNotFound, model.CodeLeaseNotFound)
	detailContains("42", "inventory-service", "register again")(t, rec)
}

func TestDeregister(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	wantStatus(t, wh.register(instancesPath, newInventory(bigLease).json()), http.StatusCreated, "")
	target := instancesPath + "/1795695862709570047"
	for i := range 2 {
		rec := wh.do(request{method: http.MethodDelete, target: target})
		if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
			t.Fatalf("delete %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	if raw, ok := wh.entry("firefly", "prod", "inventory-service.1795695862709570047"); ok {
		t.Errorf("entry still there: %s", raw)
	}
	// Gone from the snapshot at once, not after a poll.
	wantStatus(t, wh.get(target), http.StatusNotFound, model.CodeAppNotFound)
	rec := wh.do(request{method: http.MethodPut, target: target + "/heartbeat"})
	wantStatus(t, rec, http.StatusNotFound, model.CodeLeaseNotFound)
	detailContains("register again")(t, rec)
	if rec := wh.get(loginPath); rec.Code != http.StatusOK {
		t.Errorf("the rest of the env suffered: %d %s", rec.Code, rec.Body)
	}
}

func TestGetInstance(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	reg := wh.register(instancesPath, newInventory(bigLease).json())
	wantStatus(t, reg, http.StatusCreated, "")
	var registered registrationBody
	decode(t, reg, &registered)

	rec := wh.get(reg.Header().Get("Location"))
	wantStatus(t, rec, http.StatusOK, "")
	var got struct {
		Key     string `json:"key"`
		LeaseID string `json:"lease_id"`
		Alive   bool   `json:"alive"`
	}
	decode(t, rec, &got)
	if got.Key != registered.Instance.Key || got.LeaseID != "1795695862709570047" || !got.Alive {
		t.Errorf("instance = %+v", got)
	}

	// A stale instance is still found, and says so.
	wh.clock.Add(time.Minute)
	decode(t, wh.get(reg.Header().Get("Location")), &got)
	if got.Alive {
		t.Error("a minute later the instance is still alive")
	}
	wantStatus(t, wh.get(instancesPath+"/1795695862709570046"), http.StatusNotFound, model.CodeLeaseNotFound)
	wantStatus(t, wh.get("/v1/envs/nowhere/apps/inventory-service/instances/1"), http.StatusNotFound, model.CodeEnvNotFound)
}

func TestAmbiguousNamespace(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	qa := "/v1/envs/qa/apps/inventory-service/instances"
	for _, req := range []request{
		{method: http.MethodPost, target: qa, body: newInventory(11).json()},
		{method: http.MethodPut, target: qa + "/11/heartbeat"},
		{method: http.MethodDelete, target: qa + "/11"},
	} {
		rec := wh.do(req)
		wantStatus(t, rec, http.StatusConflict, model.CodeAmbiguousNamespace)
		detailContains("qa", "firefly, shop", "?namespace=")(t, rec)
	}

	rec := wh.register(qa+"?namespace=shop", newInventory(11).json())
	wantStatus(t, rec, http.StatusCreated, "")
	var body registrationBody
	decode(t, rec, &body)
	if body.Instance.Namespace != "shop" {
		t.Errorf("registered in %s", body.Instance.Namespace)
	}
	if _, ok := wh.entry("shop", "qa", "inventory-service.11"); !ok {
		t.Error("not written to shop")
	}
	if _, ok := wh.entry("firefly", "qa", "inventory-service.11"); ok {
		t.Error("written to firefly too")
	}
	wantStatus(t, wh.do(request{method: http.MethodPut, target: qa + "/11/heartbeat?namespace=shop"}), http.StatusOK, "")
	// The namespace names where the entry is: elsewhere it is unknown.
	wantStatus(t, wh.do(request{method: http.MethodPut, target: qa + "/11/heartbeat?namespace=firefly"}), http.StatusNotFound, model.CodeLeaseNotFound)
	wantStatus(t, wh.do(request{method: http.MethodDelete, target: qa + "/11?namespace=shop"}), http.StatusNoContent, "")
	if _, ok := wh.entry("shop", "qa", "inventory-service.11"); ok {
		t.Error("still in shop after the deregistration")
	}
}

func TestNewEnvWithoutWriteNamespace(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{noNamespace: true})
	rec := wh.register("/v1/envs/perf/apps/inventory-service/instances", newInventory(3).json())
	wantStatus(t, rec, http.StatusBadRequest, model.CodeInvalid)
	detailContains("perf", "?namespace=")(t, rec)
	wantStatus(t, wh.register("/v1/envs/perf/apps/inventory-service/instances?namespace=shop", newInventory(3).json()), http.StatusCreated, "")
}

func TestReadOnly(t *testing.T) {
	for name, opts := range map[string]writeOptions{
		"read-only":    {readOnly: true},
		"no writer":    {noWriter: true},
		"both of them": {readOnly: true, noWriter: true},
	} {
		t.Run(name, func(t *testing.T) {
			wh := newWriteHarness(t, opts)
			for _, tc := range []struct {
				req   request
				allow string
			}{
				{request{method: http.MethodPost, target: instancesPath, body: newInventory(5).json()}, ""},
				// Refused as a whole, before the body is looked at.
				{request{method: http.MethodPost, target: instancesPath, body: `{"colour":"red"}`}, ""},
				{request{method: http.MethodPut, target: instancesPath + "/5/heartbeat"}, ""},
				{request{method: http.MethodDelete, target: instancesPath + "/5"}, "GET, HEAD"},
			} {
				rec := wh.do(tc.req)
				wantStatus(t, rec, http.StatusMethodNotAllowed, model.CodeReadOnly)
				detailContains("read-only", tc.req.method)(t, rec)
				if got, ok := rec.Header()["Allow"]; !ok || got[0] != tc.allow {
					t.Errorf("%s %s: Allow = %q, want %q", tc.req.method, tc.req.target, got, tc.allow)
				}
			}
			if _, ok := wh.entry("firefly", "prod", "inventory-service.5"); ok {
				t.Error("a read-only server wrote")
			}
			// Reads go on.
			wantStatus(t, wh.get(loginPath), http.StatusOK, "")
		})
	}
}

func TestRegistryFull(t *testing.T) {
	// Room for two registrations of the new env, not three.
	entry := len(`inventory-service.1`) + len(`{"proto_count":2,"lease_id":1,"run_date":"2026-11-26 12:24:25","methods":{"/acme.inventory.v1.InventoryService/GetStock":true,"/acme.inventory.v1.InventoryService/Reserve":true},"network":{"sn":"firefly-main-network","internal":"inventory-service.firefly.svc.cluster.local:9000","external":"203.0.113.9:443"},"kernel":{"language":"Java","version":"21"},"meta":{"env":"perf","app_id":"inventory-service","version":"v1"}}`)
	wh := newWriteHarness(t, writeOptions{maxBytes: 2*entry + entry/2})
	target := "/v1/envs/perf/apps/inventory-service/instances"
	for lease := int64(1); lease <= 2; lease++ {
		wantStatus(t, wh.register(target, newInventory(lease).json()), http.StatusCreated, "")
	}
	rec := wh.register(target, newInventory(3).json())
	wantStatus(t, rec, http.StatusInsufficientStorage, model.CodeRegistryFull)
	detailContains("ff-registry-perf", "env perf", "namespace firefly", strconv.Itoa(3*entry), strconv.Itoa(2*entry+entry/2))(t, rec)
	if _, ok := wh.entry("firefly", "perf", "inventory-service.3"); ok {
		t.Error("the refused registration was written")
	}

	// The registered instances keep heartbeating, and may re-register.
	wh.clock.Add(4 * time.Second)
	for lease := 1; lease <= 2; lease++ {
		wantStatus(t, wh.do(request{method: http.MethodPut, target: fmt.Sprintf("%s/%d/heartbeat", target, lease)}), http.StatusOK, "")
	}
	wantStatus(t, wh.register(target, newInventory(1).json()), http.StatusCreated, "")
	// Room made by a deregistration is room again.
	wantStatus(t, wh.do(request{method: http.MethodDelete, target: target + "/2"}), http.StatusNoContent, "")
	wantStatus(t, wh.register(target, newInventory(3).json()), http.StatusCreated, "")
}

func TestStoreUnavailable(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	wantStatus(t, wh.register(instancesPath, newInventory(5).json()), http.StatusCreated, "")
	wh.store.down.Store(true)
	for _, req := range []request{
		{method: http.MethodPost, target: instancesPath, body: newInventory(6).json()},
		{method: http.MethodPut, target: instancesPath + "/5/heartbeat"},
		{method: http.MethodDelete, target: instancesPath + "/5"},
	} {
		start := time.Now()
		rec := wh.do(req)
		wantStatus(t, rec, http.StatusServiceUnavailable, model.CodeStoreUnavailable)
		if got := rec.Header().Get("Retry-After"); got != "1" {
			t.Errorf("%s: Retry-After = %q", req.method, got)
		}
		detailContains("API server", "ff-registry-prod", "firefly")(t, rec)
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %s to fail", req.method, d)
		}
	}
	// The details stay in the log.
	if p := problemOf(t, wh.do(request{method: http.MethodPut, target: instancesPath + "/5/heartbeat"})); strings.Contains(p.Detail, "connection refused") {
		t.Errorf("detail leaks the cause: %s", p.Detail)
	}
	if !strings.Contains(wh.logs.String(), "connection refused") {
		t.Error("the cause is not logged")
	}

	wh.store.down.Store(false)
	wantStatus(t, wh.do(request{method: http.MethodPut, target: instancesPath + "/5/heartbeat"}), http.StatusOK, "")
}

func TestWriteConflict(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	wantStatus(t, wh.register(instancesPath, newInventory(5).json()), http.StatusCreated, "")
	wh.store.conflicting.Store(true)
	wh.clock.Add(time.Second) // a heartbeat that changes nothing writes nothing
	rec := wh.do(request{method: http.MethodPut, target: instancesPath + "/5/heartbeat"})
	wantStatus(t, rec, http.StatusConflict, model.CodeConflict)
	detailContains("ff-registry-prod", "retry")(t, rec)
	wh.store.conflicting.Store(false)

	// A key that holds another instance's entry is not overwritten.
	cm, err := wh.store.Get(context.Background(), "firefly", "ff-registry-prod")
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["inventory-service.77"] = cm.Data["inventory-service.5"]
	if _, err := wh.store.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	rec = wh.register(instancesPath, newInventory(77).json())
	wantStatus(t, rec, http.StatusConflict, model.CodeConflict)
	detailContains("inventory-service.77", "another lease id")(t, rec)
}

func TestReadYourWrites(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	b := newInventory(bigLease)
	wantStatus(t, wh.register(instancesPath, b.json()), http.StatusCreated, "")

	// No poll happens in between: the Writer hands the poller what it wrote.
	var app appDetailView
	decode(t, wh.get("/v1/envs/prod/apps/inventory-service"), &app)
	if len(app.Instances) != 1 || app.Instances[0].LeaseID != bigLease || app.Instances[0].Namespace != "firefly" {
		t.Fatalf("GET right after the registration: %+v", app)
	}
	res := resolutionOf(t, wh.get("/v1/envs/prod/methods/acme.inventory.v1.InventoryService/Reserve"))
	if res.AppID != "inventory-service" || len(res.Instances) != 1 || res.Instances[0].LeaseID != "1795695862709570047" {
		t.Errorf("resolution = %+v", res)
	}

	wantStatus(t, wh.do(request{method: http.MethodDelete, target: instancesPath + "/1795695862709570047"}), http.StatusNoContent, "")
	wantStatus(t, wh.get("/v1/envs/prod/apps/inventory-service"), http.StatusNotFound, model.CodeAppNotFound)
}

// stubWriter answers every write with err.
type stubWriter struct{ err error }

func (s stubWriter) Register(context.Context, write.Registration, ...write.Guard) (write.Result, error) {
	return write.Result{}, s.err
}

func (s stubWriter) RegisterVersion(context.Context, write.Registration, ...write.Guard) (write.Result, error) {
	return write.Result{}, s.err
}

func (s stubWriter) Heartbeat(context.Context, string, string, string, int64, ...write.Guard) (write.Result, error) {
	return write.Result{}, s.err
}

func (s stubWriter) Deregister(context.Context, string, string, string, int64, ...write.Guard) error {
	return s.err
}

func TestWriteThatOutlivesItsRequest(t *testing.T) {
	h := newHarness(t)
	srv, err := newServer(Deps{Log: h.srv.log, Snapshots: h.src, Prometheus: h.registry, Writer: stubWriter{context.DeadlineExceeded}})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	rec := h.do(request{method: http.MethodPut, target: instancesPath + "/5/heartbeat"})
	wantStatus(t, rec, http.StatusServiceUnavailable, model.CodeStoreUnavailable)
	detailContains("may still be applied")(t, rec)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

func TestWriteBeforeTheFirstRead(t *testing.T) {
	h := newHarness(t)
	h.src.Swap(model.EmptySnapshot([]string{"firefly", "shop"}))
	srv, err := newServer(Deps{Log: h.srv.log, Snapshots: h.src, Prometheus: h.registry, Writer: stubWriter{}, WriteNamespace: "firefly"})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	rec := h.do(request{method: http.MethodPost, target: instancesPath, body: newInventory(5).json()})
	wantStatus(t, rec, http.StatusServiceUnavailable, model.CodeNotReady)
	if rec.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q", rec.Header().Get("Retry-After"))
	}
}

func TestWriteMetricsAndLog(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	wantStatus(t, wh.register(instancesPath, newInventory(5).json()), http.StatusCreated, "")
	rec := wh.get("/metrics")
	if want := `registry_api_http_requests_total{code="201",method="POST",route="/v1/envs/{env}/apps/{appId}/instances"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
	if !strings.Contains(wh.logs.String(), `"route":"/v1/envs/{env}/apps/{appId}/instances","method":"POST"`) {
		t.Errorf("no request log line for the registration: %s", wh.logs)
	}
}
