//go:build integration

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

// writeLease is past 2^53 and odd: a float64 on its way would change it.
const writeLease int64 = 1795695862709570047

// problemCode returns the code of a problem body, or "" for anything else.
func problemCode(body []byte) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	return p.Code
}

// eventually waits until check returns "", and fails with its last word
// when d has passed.
func eventually(t *testing.T, d time.Duration, what string, check func() string) time.Duration {
	t.Helper()
	return testkit.WaitFor(t, d, what, func() (bool, string) {
		msg := check()
		return msg == "", msg
	})
}

// TestIntegrationWriteAcrossReplicas registers through one replica and reads
// through another, as clients behind the Service do: the writing replica
// serves its write at once, the other after its next poll. Heartbeat and
// deregistration through the second replica work on the first one's entry.
func TestIntegrationWriteAcrossReplicas(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-write-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)

	const interval = 500 * time.Millisecond
	cfgA := kubeServeConfig(srv.Kubeconfig, interval, ns)
	cfgA.WriteBatchWindow = 20 * time.Millisecond
	baseA, _ := startServe(t, cfgA, io.Discard)
	baseB, _ := startServe(t, kubeServeConfig(srv.Kubeconfig, interval, ns), io.Discard)
	waitReady(t, baseA)
	waitReady(t, baseB)

	lease := strconv.FormatInt(writeLease, 10)
	instances := "/v1/envs/prod/apps/stock-service/instances"
	resolve := "/v1/envs/prod/methods/acme.stock.v1.StockService/Reserve"
	status, hdr, body := writeCall(t, http.MethodPost, baseA+instances, stockRegistration(writeLease))
	if status != http.StatusCreated {
		t.Fatalf("register through A = %d: %s", status, body)
	}
	if got := hdr.Get("Location"); got != instances+"/"+lease {
		t.Errorf("Location = %q", got)
	}

	// The env was new: its ConfigMap is created, the entry in the library's format.
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node, _, err := model.ParseEntry(ns, "prod", "stock-service."+lease, []byte(cm.Data["stock-service."+lease]), model.ParseOptions{})
	if err != nil || node.LeaseID != writeLease || node.AppID != "stock-service" || node.Network.Internal != "stock-service.firefly.svc.cluster.local:9000" {
		t.Fatalf("stored entry %q: %+v, %v", cm.Data["stock-service."+lease], node, err)
	}
	if !strings.Contains(cm.Data["stock-service."+lease], `"lease_id":`+lease+`,`) {
		t.Errorf("the stored lease id is not exact: %s", cm.Data["stock-service."+lease])
	}

	served := func(base string, want int) func() string {
		return func() string {
			status, _, body := writeCall(t, http.MethodGet, base+resolve, "")
			switch {
			case want == http.StatusOK && (status != want || !strings.Contains(string(body), `"lease_id":"`+lease+`"`)):
				return fmt.Sprintf("%d %s", status, body)
			case want != http.StatusOK && status != want:
				return fmt.Sprintf("%d %s", status, body)
			}
			return ""
		}
	}
	if msg := served(baseA, http.StatusOK)(); msg != "" {
		t.Fatalf("replica A does not serve its own write at once: %s", msg)
	}
	// One poll interval, and the LIST's own time.
	took := eventually(t, interval+500*time.Millisecond, "replica B serves the registration", served(baseB, http.StatusOK))
	t.Logf("replica B served the registration after %s (poll interval %s)", took.Round(time.Millisecond), interval)

	if status, _, body := writeCall(t, http.MethodPut, baseB+instances+"/"+lease+"/heartbeat", ""); status != http.StatusOK {
		t.Fatalf("heartbeat through B = %d: %s", status, body)
	}
	if status, _, body := writeCall(t, http.MethodDelete, baseB+instances+"/"+lease, ""); status != http.StatusNoContent {
		t.Fatalf("deregister through B = %d: %s", status, body)
	}
	if msg := served(baseB, http.StatusNotFound)(); msg != "" {
		t.Errorf("replica B still serves its deregistration: %s", msg)
	}
	took = eventually(t, interval+500*time.Millisecond, "replica A drops the deregistered instance", served(baseA, http.StatusNotFound))
	t.Logf("replica A dropped the instance after %s", took.Round(time.Millisecond))
}

// TestIntegrationRegistryFull fills an env's ConfigMap to the size guard's
// limit on a real API server: the registration past it is refused with 507,
// and the registered instances keep heartbeating.
func TestIntegrationRegistryFull(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-full-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)

	const limit = 1500
	cfg := kubeServeConfig(srv.Kubeconfig, time.Second, ns)
	cfg.MaxConfigMapBytes = limit
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	instances := base + "/v1/envs/prod/apps/stock-service/instances"
	var registered []int64
	var refusal []byte
	for lease := int64(1); lease <= 10 && refusal == nil; lease++ {
		status, _, body := writeCall(t, http.MethodPost, instances, stockRegistration(lease))
		switch status {
		case http.StatusCreated:
			registered = append(registered, lease)
		case http.StatusInsufficientStorage:
			refusal = body
		default:
			t.Fatalf("register %d = %d: %s", lease, status, body)
		}
	}
	if refusal == nil || len(registered) == 0 {
		t.Fatalf("%d registrations, refusal %s: the limit of %d bytes was not reached as expected", len(registered), refusal, limit)
	}
	for _, want := range []string{`"code":"registry_full"`, "ff-registry-prod", "env prod", "namespace " + ns, strconv.Itoa(limit)} {
		if !strings.Contains(string(refusal), want) {
			t.Errorf("507 lacks %s: %s", want, refusal)
		}
	}

	for _, lease := range registered {
		if status, _, body := writeCall(t, http.MethodPut, fmt.Sprintf("%s/%d/heartbeat", instances, lease), ""); status != http.StatusOK {
			t.Errorf("heartbeat %d in a full env = %d: %s", lease, status, body)
		}
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
	}
	if len(cm.Data) != len(registered) || size > limit {
		t.Errorf("%d entries of %d bytes, want the %d registered within %d bytes", len(cm.Data), size, len(registered), limit)
	}
}

// TestIntegrationWriteOutage stops the API server under a serving replica:
// writes fail fast with 503 store_unavailable, reads go on from the last
// snapshot, and every write acknowledged before the outage is in the
// ConfigMap once the API server is back.
func TestIntegrationWriteOutage(t *testing.T) {
	dir := t.TempDir()
	srv, err := kubetest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping the kube-apiserver: %v", err)
		}
	})
	cs := adminClient(t, srv)
	const ns = "firefly"
	createNamespace(t, cs, ns)
	serverURL := kubeconfigServerURL(t, srv.Kubeconfig)

	cfg := kubeServeConfig(srv.Kubeconfig, 200*time.Millisecond, ns)
	cfg.WriteBatchWindow = 20 * time.Millisecond
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	instances := base + "/v1/envs/prod/apps/stock-service/instances"
	leases := []int64{writeLease, writeLease + 2, writeLease + 4, writeLease + 6}
	for _, lease := range leases {
		if status, _, body := writeCall(t, http.MethodPost, instances, stockRegistration(lease)); status != http.StatusCreated {
			t.Fatalf("register %d = %d: %s", lease, status, body)
		}
	}
	for _, lease := range leases[:3] {
		if status, _, body := writeCall(t, http.MethodPut, fmt.Sprintf("%s/%d/heartbeat", instances, lease), ""); status != http.StatusOK {
			t.Fatalf("heartbeat %d = %d: %s", lease, status, body)
		}
	}
	gone := leases[3]
	if status, _, body := writeCall(t, http.MethodDelete, fmt.Sprintf("%s/%d", instances, gone), ""); status != http.StatusNoContent {
		t.Fatalf("deregister %d = %d: %s", gone, status, body)
	}
	kept := leases[:3]

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ method, url, body string }{
		{http.MethodPost, instances, stockRegistration(writeLease + 8)},
		{http.MethodPut, fmt.Sprintf("%s/%d/heartbeat", instances, kept[0]), ""},
		{http.MethodDelete, fmt.Sprintf("%s/%d", instances, kept[1]), ""},
	} {
		start := time.Now()
		status, hdr, body := writeCall(t, w.method, w.url, w.body)
		took := time.Since(start)
		if status != http.StatusServiceUnavailable || problemCode(body) != "store_unavailable" || hdr.Get("Retry-After") == "" {
			t.Errorf("%s during the outage = %d, Retry-After %q: %s", w.method, status, hdr.Get("Retry-After"), body)
		}
		// Bounded by one API server call's timeout, not by retries.
		if took > 6*time.Second {
			t.Errorf("%s took %s to fail", w.method, took)
		}
		t.Logf("%s refused after %s", w.method, took.Round(time.Millisecond))
	}
	if status, _, body := writeCall(t, http.MethodGet, base+"/v1/envs/prod/apps/stock-service", ""); status != http.StatusOK {
		t.Errorf("reads during the outage = %d: %s", status, body)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	cs = adminClient(t, srv)
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lease := range kept {
		key := model.CanonicalKey("stock-service", lease)
		node, _, err := model.ParseEntry(ns, "prod", key, []byte(cm.Data[key]), model.ParseOptions{})
		if err != nil || node.LeaseID != lease {
			t.Errorf("acknowledged registration %s lost: %q (%v)", key, cm.Data[key], err)
		}
	}
	if v, ok := cm.Data[model.CanonicalKey("stock-service", gone)]; ok {
		t.Errorf("acknowledged deregistration of %d undone: %s", gone, v)
	}

	// The replica writes again once the API server is back where it was.
	if kubeconfigServerURL(t, srv.Kubeconfig) != serverURL {
		t.Logf("the API server came back on another address; not checking the replica's recovery")
		return
	}
	eventually(t, 30*time.Second, "a heartbeat after the outage", func() string {
		status, _, body := writeCall(t, http.MethodPut, fmt.Sprintf("%s/%d/heartbeat", instances, kept[0]), "")
		if status != http.StatusOK {
			return fmt.Sprintf("%d %s", status, body)
		}
		return ""
	})
}

func kubeconfigServerURL(t *testing.T, path string) string {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Host
}

// TestIntegrationExampleManifest has the API server validate the example
// apps of deploy/examples, which the base does not apply.
func TestIntegrationExampleManifest(t *testing.T) {
	srv := sharedServer(t)
	createNamespace(t, adminClient(t, srv), "firefly")
	path, err := filepath.Abs(filepath.Join("..", "..", "deploy", "examples", "inventory-service.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	out, err := srv.Kubectl("apply", "--dry-run=server", "-f", path)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"service/inventory-service", "serviceaccount/inventory-service", "deployment.apps/inventory-service"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply output lacks %s:\n%s", want, out)
		}
	}
	// The pod-bound example names no namespace: it goes where it is applied.
	podBound, err := filepath.Abs(filepath.Join("..", "..", "deploy", "examples", "pod-bound-registration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = srv.Kubectl("apply", "--dry-run=server", "-n", "firefly", "-f", podBound)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"serviceaccount/user-service", "deployment.apps/user-service"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply output lacks %s:\n%s", want, out)
		}
	}
	// So does the version registration's.
	versioned, err := filepath.Abs(filepath.Join("..", "..", "deploy", "examples", "version-registration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err = srv.Kubectl("apply", "--dry-run=server", "-n", "firefly", "-f", versioned)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"serviceaccount/catalog-service", "service/catalog-service", "deployment.apps/catalog-service-v1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply output lacks %s:\n%s", want, out)
		}
	}
	// The base leaves the examples out.
	out, err = srv.Kubectl("kustomize", filepath.Join("..", "..", "deploy"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(string(out), "inventory-service") {
		t.Error("kubectl kustomize deploy/ includes the example app")
	}
}

// TestIntegrationMinimalRegistration sends the one-line body an init
// container would, with the lease id as a string, to a real API server: the
// stored entry carries every member the library reads, with the library's
// defaults and its number for the lease id, and the answer writes the id as
// a string.
func TestIntegrationMinimalRegistration(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-minimal-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)
	base, _ := startServe(t, kubeServeConfig(srv.Kubeconfig, time.Second, ns), io.Discard)
	waitReady(t, base)

	lease := strconv.FormatInt(writeLease, 10)
	body := `{"lease_id":"` + lease + `","version":"v1","network":{"internal":"stock-service:9000"},` +
		`"methods":["/acme.stock.v1.StockService/Reserve","/acme.stock.v1.StockService/Release","/acme.stock.v1.AuditService/List"]}`
	status, _, answer := writeCall(t, http.MethodPost, base+"/v1/envs/prod/apps/stock-service/instances", body)
	if status != http.StatusCreated {
		t.Fatalf("register = %d: %s", status, answer)
	}
	if want := `"lease_id":"` + lease + `"`; !strings.Contains(string(answer), want) {
		t.Errorf("answer lacks %s: %s", want, answer)
	}

	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw := cm.Data["stock-service."+lease]
	var stored map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &stored); err != nil {
		t.Fatalf("stored entry %q: %v", raw, err)
	}
	for member, want := range map[string]string{
		"lease_id":    lease,
		"proto_count": "2", // two gRPC services among the three methods
		"kernel":      `{"language":"","version":""}`,
		"meta":        `{"env":"prod","app_id":"stock-service","version":"v1"}`,
		"network":     `{"sn":"","internal":"stock-service:9000","external":""}`,
	} {
		if got := string(stored[member]); got != want {
			t.Errorf("stored %s = %s, want %s (entry %s)", member, got, want, raw)
		}
	}
	node, _, err := model.ParseEntry(ns, "prod", "stock-service."+lease, []byte(raw), model.ParseOptions{})
	if err != nil || node.LeaseID != writeLease || len(node.Methods) != 3 {
		t.Errorf("stored entry %q parses to %+v, %v", raw, node, err)
	}
}
