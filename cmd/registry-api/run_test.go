package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

func testConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		Addr:            "127.0.0.1:0",
		Store:           "memory",
		Seed:            filepath.Join("..", "..", "demo", "seed.yaml"),
		SeedRefresh:     true,
		Namespaces:      []string{"firefly"},
		PollInterval:    50 * time.Millisecond,
		TTL:             10 * time.Second,
		RunDateZone:     "UTC",
		LogLevel:        "debug",
		LogFormat:       "json",
		ShutdownTimeout: 5 * time.Second,
	}
}

// startServe runs serve in the background and returns its base URL and a
// stop function that cancels it and returns serve's error.
func startServe(t *testing.T, cfg Config, logs io.Writer) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	cfg.OnListen = func(a net.Addr) { addrs <- a }
	done := make(chan error, 1)
	go func() { done <- serveConfig(ctx, cfg, envOf(), logs) }()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		cancel()
		t.Fatalf("serve returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("serve did not listen within 10s")
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(10 * time.Second):
				stopErr = fmt.Errorf("serve did not return within 10s of cancel")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return base, stop
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 10s (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeEndToEndOnMemoryStore(t *testing.T) {
	logs := &testkit.Buffer{}
	base, stop := startServe(t, testConfig(t), logs)
	waitReady(t, base)

	get := func(path string, wantStatus int) []byte {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("GET %s = %d, want %d: %s", path, resp.StatusCode, wantStatus, body)
		}
		return body
	}
	decode := func(b []byte) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		return v
	}

	get("/healthz", http.StatusOK)
	envs := decode(get("/v1/envs", http.StatusOK))["envs"].([]any)
	if len(envs) != 2 {
		t.Fatalf("envs = %v, want prod and staging", envs)
	}
	prod := decode(get("/v1/envs/prod", http.StatusOK))
	if prod["env"] != "prod" {
		t.Errorf("env detail = %v", prod)
	}
	staging := decode(get("/v1/envs/staging", http.StatusOK))
	if inv := staging["invalid_entries"].([]any); len(inv) != 1 {
		t.Errorf("staging invalid entries = %v, want the broken demo entry", inv)
	}
	apps := decode(get("/v1/envs/prod/apps", http.StatusOK))["apps"].([]any)
	if len(apps) != 5 {
		t.Errorf("prod apps = %d, want 5 (four of instances, catalog-service's version registration)", len(apps))
	}
	// The seed's EndpointSlices stand in for the cluster's: two ready pods
	// keep catalog-service v1 alive.
	version := decode(get("/v1/envs/prod/apps/catalog-service/versions/v1", http.StatusOK))
	if eps, _ := version["endpoints"].([]any); version["alive"] != true || len(eps) != 2 {
		t.Errorf("catalog-service v1 = %v, want alive by its two ready endpoints", version)
	}
	app := decode(get("/v1/envs/prod/apps/user-service", http.StatusOK))
	if inst := app["instances"].([]any); len(inst) != 2 {
		t.Errorf("user-service instances = %d, want 2 alive", len(inst))
	}
	methods := decode(get("/v1/envs/prod/methods?service=acme.user.v1.UserService", http.StatusOK))["methods"].([]any)
	if len(methods) != 3 {
		t.Errorf("UserService methods = %d, want 3", len(methods))
	}

	// Resolution keeps the int64 lease id exact over the wire: a string.
	body := get("/v1/envs/prod/methods/acme.user.v1.UserService/UpdateProfile", http.StatusOK)
	if !bytes.Contains(body, []byte(`"lease_id":"1795695862712874049"`)) {
		t.Errorf("resolution lost the exact lease id: %s", body)
	}
	if res := decode(body); res["app_id"] != "user-service" {
		t.Errorf("resolution app = %v", res["app_id"])
	}
	get("/v1/envs/prod/methods/%2Facme.user.v1.UserService%2FLogin", http.StatusOK)
	get("/v1/envs/prod/methods/acme.user.v1.UserService/Nope", http.StatusNotFound)

	resp, err := http.Post(base+"/v1/envs/prod/resolve", "application/json",
		strings.NewReader(`{"methods":["/acme.order.v1.OrderService/Create","/acme.nope.v1.X/Y"]}`))
	if err != nil {
		t.Fatal(err)
	}
	batch, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch resolve = %d: %s", resp.StatusCode, batch)
	}
	results := decode(batch)["results"].([]any)
	if len(results) != 2 || results[0].(map[string]any)["resolution"] == nil || results[1].(map[string]any)["error"] == nil {
		t.Errorf("batch results = %s", batch)
	}

	if spec := get("/openapi.yaml", http.StatusOK); !bytes.HasPrefix(spec, []byte("openapi:")) {
		t.Errorf("openapi.yaml starts %q", spec[:min(len(spec), 20)])
	}
	if decode(get("/openapi.json", http.StatusOK))["openapi"] == nil {
		t.Error("openapi.json has no openapi field")
	}
	if page := get("/docs/", http.StatusOK); !bytes.Contains(page, []byte("swagger-ui-bundle.js")) {
		t.Error("docs page does not load Swagger UI")
	}
	metrics := string(get("/metrics", http.StatusOK))
	for _, name := range []string{"registry_api_poll_duration_seconds", "registry_api_snapshot_age_seconds",
		"registry_api_entries", "registry_api_method_conflicts", "registry_api_http_requests_total"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("metrics lack %s", name)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if !strings.Contains(logs.String(), `"route":"/v1/envs/{env}/apps/{appId}"`) {
		t.Error("request log lacks the route pattern")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answering after stop")
	}
}

// writeCall sends a request with an optional JSON body and returns the
// status, headers and body of the answer.
func writeCall(t *testing.T, method, url, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, out
}

// stockRegistration is the body of an app that the demo seed lacks.
func stockRegistration(lease int64) string {
	return fmt.Sprintf(`{"lease_id":%d,"version":"v1",`+
		`"network":{"sn":"firefly-main-network","internal":"stock-service.firefly.svc.cluster.local:9000"},`+
		`"methods":["/acme.stock.v1.StockService/Reserve"],"kernel":{"language":"Java","version":"21"},"proto_count":1}`, lease)
}

func TestServeWritePathEndToEnd(t *testing.T) {
	cfg := testConfig(t)
	cfg.WriteBatchWindow = 20 * time.Millisecond
	base, stop := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	const lease = "1795695862709570047" // past 2^53
	instances := base + "/v1/envs/prod/apps/stock-service/instances"
	status, hdr, body := writeCall(t, http.MethodPost, instances, stockRegistration(1795695862709570047))
	if status != http.StatusCreated {
		t.Fatalf("register = %d: %s", status, body)
	}
	if got, want := hdr.Get("Location"), "/v1/envs/prod/apps/stock-service/instances/"+lease; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	for _, want := range []string{`"lease_id":"` + lease + `"`, `"key":"stock-service.` + lease + `"`, `"ttl_seconds":10`, `"heartbeat_interval_seconds":5`, `"namespace":"firefly"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("registration lacks %s: %s", want, body)
		}
	}

	// Resolvable at once on this replica: no poll in between.
	resolve := base + "/v1/envs/prod/methods/acme.stock.v1.StockService/Reserve"
	status, _, body = writeCall(t, http.MethodGet, resolve, "")
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"lease_id":"`+lease+`"`)) || !bytes.Contains(body, []byte(`"internal":"stock-service.firefly.svc.cluster.local:9000"`)) {
		t.Fatalf("resolve after register = %d: %s", status, body)
	}
	if status, _, body := writeCall(t, http.MethodGet, base+hdr.Get("Location"), ""); status != http.StatusOK || !bytes.Contains(body, []byte(`"alive":true`)) {
		t.Errorf("GET Location = %d: %s", status, body)
	}

	status, _, body = writeCall(t, http.MethodPut, instances+"/"+lease+"/heartbeat", "")
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"run_date":"`)) {
		t.Fatalf("heartbeat = %d: %s", status, body)
	}

	for range 2 {
		if status, _, body := writeCall(t, http.MethodDelete, instances+"/"+lease, ""); status != http.StatusNoContent {
			t.Fatalf("deregister = %d: %s", status, body)
		}
	}
	if status, _, body := writeCall(t, http.MethodGet, resolve, ""); status != http.StatusNotFound {
		t.Errorf("resolve after deregister = %d: %s", status, body)
	}
	status, _, body = writeCall(t, http.MethodPut, instances+"/"+lease+"/heartbeat", "")
	if status != http.StatusNotFound || !bytes.Contains(body, []byte(`"code":"lease_not_found"`)) || !bytes.Contains(body, []byte("register again")) {
		t.Errorf("heartbeat after deregister = %d: %s", status, body)
	}

	metrics := string(getBody(t, base+"/metrics"))
	for _, want := range []string{`registry_api_write_ops_total{op="register",result="ok"} 1`, `registry_api_write_ops_total{op="heartbeat",result="lease_not_found"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}

func TestServeReadOnly(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReadOnly = true
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)
	status, hdr, body := writeCall(t, http.MethodDelete, base+"/v1/envs/prod/apps/stock-service/instances/42", "")
	if status != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" || !bytes.Contains(body, []byte(`"code":"read_only"`)) {
		t.Errorf("DELETE on a read-only server = %d, Allow %q: %s", status, hdr.Get("Allow"), body)
	}
	status, _, body = writeCall(t, http.MethodPost, base+"/v1/envs/prod/apps/stock-service/instances", stockRegistration(42))
	if status != http.StatusMethodNotAllowed {
		t.Errorf("POST on a read-only server = %d: %s", status, body)
	}
	if status, _, _ := writeCall(t, http.MethodGet, base+"/v1/envs/prod", ""); status != http.StatusOK {
		t.Errorf("reads on a read-only server = %d", status)
	}
}

func getBody(t *testing.T, url string) []byte {
	t.Helper()
	status, _, body := writeCall(t, http.MethodGet, url, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", url, status, body)
	}
	return body
}

func TestServeDrainsInFlightRequestsOnShutdown(t *testing.T) {
	cfg := testConfig(t)
	base, stop := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	// A slow client: headers sent, body not yet read. Shutdown must wait for
	// the in-flight request and still answer it.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"methods":["/acme.order.v1.OrderService/Create"]}`
	fmt.Fprintf(conn, "POST /v1/envs/prod/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	stopped := make(chan error, 1)
	go func() {
		// Give the server a moment to have the request in flight.
		time.Sleep(100 * time.Millisecond)
		stopped <- stop()
	}()
	time.Sleep(300 * time.Millisecond)
	fmt.Fprint(conn, body)
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request was not answered: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("in-flight request = %d", resp.StatusCode)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestRunHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, os.Getenv, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"REGISTRY_ADDR", "REGISTRY_STORE", "REGISTRY_SEED", "REGISTRY_NAMESPACES",
		"REGISTRY_POLL_INTERVAL", "REGISTRY_TTL", "REGISTRY_RUN_DATE_ZONE", "REGISTRY_MAX_CLOCK_SKEW", "REGISTRY_LOG_LEVEL", "REGISTRY_LOG_FORMAT",
		"REGISTRY_WRITE_NAMESPACE", "REGISTRY_READ_ONLY", "REGISTRY_WRITE_BATCH_WINDOW", "REGISTRY_MAX_CONFIGMAP_BYTES"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("--help lacks %s:\n%s", v, out.String())
		}
	}
	for _, def := range []string{":8080", "100ms", "921600"} {
		if !strings.Contains(out.String(), def) {
			t.Errorf("--help lacks the default %s", def)
		}
	}
}

// TestRunHelpShowsFlagsAndEveryBoolDefault checks that --help names its
// flags and that no boolean variable shows an empty default.
func TestRunHelpShowsFlagsAndEveryBoolDefault(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, os.Getenv, &out); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, flag := range []string{"--help", "--version"} {
		if !strings.Contains(help, flag) {
			t.Errorf("--help does not list %s:\n%s", flag, help)
		}
	}
	// The table's columns start where its header's words do.
	var defaultCol, meaningCol int
	defaults := map[string]string{}
	for line := range strings.Lines(help) {
		if strings.HasPrefix(strings.TrimSpace(line), "VARIABLE") {
			defaultCol, meaningCol = strings.Index(line, "DEFAULT"), strings.Index(line, "MEANING")
			continue
		}
		if defaultCol == 0 || len(line) < meaningCol {
			continue
		}
		defaults[strings.TrimSpace(line[:defaultCol])] = strings.TrimSpace(line[defaultCol:meaningCol])
	}
	for _, v := range []string{"REGISTRY_SEED_KEEPALIVE", "REGISTRY_READ_ONLY", "REGISTRY_READ_AUTH"} {
		if got, ok := defaults[v]; !ok || got != "false" {
			t.Errorf("--help shows %s's default as %q (listed: %v), want false\n%s", v, got, ok, help)
		}
	}
	if got := defaults["REGISTRY_ADDR"]; got != ":8080" {
		t.Errorf("--help shows REGISTRY_ADDR's default as %q, want :8080: the table's columns were misread", got)
	}
}

func TestKubeStoreWithoutCredentialsRefusesToStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store, cfg.Seed, cfg.SeedRefresh = "kube", "", false
	getenv := func(k string) string {
		if k == "HOME" {
			return t.TempDir()
		}
		return ""
	}
	err := serveConfig(context.Background(), cfg, getenv, io.Discard)
	if err == nil {
		t.Fatal("started with no API server configured")
	}
	for _, want := range []string{"KUBECONFIG", "in-cluster", "REGISTRY_STORE=memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestBadSeedIsAStartupError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.yaml")
	seed := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ff-registry-a, namespace: x}\n---\napiVersion: v1\nkind: Secret\n"
	if err := os.WriteFile(path, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Seed = path
	err := serveConfig(context.Background(), cfg, os.Getenv, io.Discard)
	if err == nil {
		t.Fatal("started with a bad seed")
	}
	for _, want := range []string{path, "document 2", "Secret"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"unknown store":               func(c *Config) { c.Store = "etcd" },
		"seed without mem":            func(c *Config) { c.Store = "kube" },
		"zero poll":                   func(c *Config) { c.PollInterval = 0 },
		"zero ttl":                    func(c *Config) { c.TTL = 0 },
		"bad log format":              func(c *Config) { c.LogFormat = "xml" },
		"bad zone":                    func(c *Config) { c.RunDateZone = "Mars/Olympus" },
		"negative skew":               func(c *Config) { c.MaxClockSkew = -time.Second },
		"no namespaces":               func(c *Config) { c.Namespaces = []string{" "} },
		"star with others":            func(c *Config) { c.Namespaces = []string{"*", "a"} },
		"bad log level":               func(c *Config) { c.LogLevel = "loud" },
		"body budget under one batch": func(c *Config) { c.MaxBodyBytes = 1 << 10 },
		"negative body budget":        func(c *Config) { c.MaxBodyBytes = -1 },

		"negative batch window":       func(c *Config) { c.WriteBatchWindow = -time.Millisecond },
		"batch window past TTL/2":     func(c *Config) { c.WriteBatchWindow = 5 * time.Second },
		"configmap bytes past 1 MiB":  func(c *Config) { c.MaxConfigMapBytes = 1<<20 + 1 },
		"negative configmap bytes":    func(c *Config) { c.MaxConfigMapBytes = -1 },
		"write namespace not watched": func(c *Config) { c.WriteNamespace = "shop" },
		"write namespace invalid":     func(c *Config) { c.WriteNamespace = "Shop_1" },

		"kubernetes auth on the memory store": func(c *Config) { c.Auth = "kubernetes" },
		"gateway without a name":              func(c *Config) { c.Gateway = "infra" },
		"version header not a header":         func(c *Config) { c.IstioVersionHeader = "x version" },
		"GRPCRoute sync without a gateway":    func(c *Config) { c.SyncGRPCRoutes = true },
		"route sync on the memory store":      func(c *Config) { c.SyncIstio = true },
		"unknown auth":                        func(c *Config) { c.Auth = "ldap" },
		"read auth without auth":              func(c *Config) { c.ReadAuth = true },
		"admin group without a name":          func(c *Config) { c.AdminSubjects = []string{"group:"} },
		"negative GC age":                     func(c *Config) { c.GCAfter = -time.Minute },
		"GC age within the TTL":               func(c *Config) { c.GCAfter = 5 * time.Second },
		"lease duration not whole seconds":    func(c *Config) { c.LeaderLeaseDuration = 1500 * time.Millisecond },
		"renew deadline past the lease":       func(c *Config) { c.LeaderLeaseRenewDeadline = 20 * time.Second },
		"retry period past the renew":         func(c *Config) { c.LeaderLeaseRetryPeriod = 9 * time.Second },
		"lease namespace invalid":             func(c *Config) { c.LeaderLeaseNamespace = "Bad_NS" },
		"lease name invalid":                  func(c *Config) { c.LeaderLeaseName = "Bad Name" },

		"gateway without a namespace":   func(c *Config) { c.Gateway = "public" },
		"gateway with a bad name":       func(c *Config) { c.Gateway = "infra/Public" },
		"istio header not lowercase":    func(c *Config) { c.IstioVersionHeader = "X-Version" },
		"istio header with a separator": func(c *Config) { c.IstioVersionHeader = "x version" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			mutate(&cfg)
			if err := serveConfig(context.Background(), cfg, os.Getenv, io.Discard); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	cfg := testConfig(t)
	cfg.Gateway, cfg.IstioVersionHeader = "infra/public/grpc", "x-version"
	if err := cfg.validate(); err != nil {
		t.Errorf("gateway %s, header %s: %v", cfg.Gateway, cfg.IstioVersionHeader, err)
	}
	cfg = testConfig(t)
	cfg.Namespaces = []string{"*"}
	if ns, err := cfg.watchedNamespaces(); err != nil || len(ns) != 1 || ns[0] != "" {
		t.Errorf("* = %q, %v; want all namespaces", ns, err)
	}

	for _, tc := range []struct {
		namespaces []string
		write      string
		want       string
	}{
		{[]string{"firefly", "shop"}, "", "firefly"},
		{[]string{"firefly", "shop"}, "shop", "shop"},
		{[]string{"*"}, "", ""},
		{[]string{"*"}, "anywhere", "anywhere"},
	} {
		cfg := testConfig(t)
		cfg.Namespaces, cfg.WriteNamespace = tc.namespaces, tc.write
		if err := cfg.validate(); err != nil {
			t.Errorf("namespaces %v, write namespace %q: %v", tc.namespaces, tc.write, err)
		}
		if got, _ := cfg.writeNamespace(); got != tc.want {
			t.Errorf("namespaces %v, write namespace %q: writes go to %q, want %q", tc.namespaces, tc.write, got, tc.want)
		}
	}
}

func TestLoadConfigWritePathDefaults(t *testing.T) {
	cfg, err := configFrom(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReadOnly || cfg.WriteBatchWindow != 100*time.Millisecond || cfg.MaxConfigMapBytes != 921600 {
		t.Errorf("defaults: read-only %v, batch window %s, max bytes %d", cfg.ReadOnly, cfg.WriteBatchWindow, cfg.MaxConfigMapBytes)
	}
	cfg, err = configFrom(t,
		"REGISTRY_READ_ONLY", "true",
		"REGISTRY_WRITE_BATCH_WINDOW", "0s",
		"REGISTRY_MAX_CONFIGMAP_BYTES", "4096",
	)
	if err != nil || !cfg.ReadOnly || cfg.WriteBatchWindow != 0 || cfg.MaxConfigMapBytes != 4096 {
		t.Errorf("set: %+v, %v", cfg, err)
	}
	if _, err := configFrom(t, "REGISTRY_MAX_CONFIGMAP_BYTES", "2000000"); err == nil || !strings.Contains(err.Error(), "REGISTRY_MAX_CONFIGMAP_BYTES") {
		t.Errorf("2000000 bytes: %v", err)
	}
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// Route sync runs on the kube store's elected leader: the settings that
// could never run it are refused at start, each with its own reason.
func TestRouteSyncConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"read-only":        {func(c *Config) { c.SyncIstio, c.ReadOnly = true, true }, "REGISTRY_READ_ONLY"},
		"negative grace":   {func(c *Config) { c.SyncIstio, c.SyncGrace = true, -time.Second }, "REGISTRY_SYNC_GRACE"},
		"no gateway":       {func(c *Config) { c.SyncGRPCRoutes = true }, "REGISTRY_GATEWAY"},
		"bad gateway":      {func(c *Config) { c.SyncGRPCRoutes, c.Gateway = true, "infra/Bad_Name" }, "REGISTRY_GATEWAY"},
		"istio, accepted":  {func(c *Config) { c.SyncIstio = true }, ""},
		"routes, accepted": {func(c *Config) { c.SyncGRPCRoutes, c.Gateway = true, "infra/grpc/tls" }, ""},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Store, cfg.Auth, cfg.Seed = "kube", "none", ""
			tc.mutate(&cfg)
			err := cfg.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}
