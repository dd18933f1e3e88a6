//go:build integration

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

// itestEndpoint is one endpoint of an EndpointSlice the test creates; the
// test API server runs no controllers, so the slices are written directly.
type itestEndpoint struct {
	pod   string
	ready bool
}

func putSlice(t *testing.T, cs kubernetes.Interface, ns, svc, name string, eps ...itestEndpoint) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, e := range eps {
		ready := e.ready
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", len(name)%200, i/250, i%250+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod},
		})
	}
	slices := cs.DiscoveryV1().EndpointSlices(ns)
	if old, err := slices.Get(t.Context(), name, metav1.GetOptions{}); err == nil {
		es.ResourceVersion = old.ResourceVersion
		if _, err := slices.Update(t.Context(), es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := slices.Create(t.Context(), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createLabelledPod(t *testing.T, cs kubernetes.Interface, ns, name, version string) {
	t.Helper()
	labels := map[string]string{"app": "catalog"}
	if version != "" {
		labels["version"] = version
	}
	_, err := cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// routeInstances is how many live instances stand behind method in env's
// route table, and their versions.
func routeInstances(t *testing.T, base, env, method string) (int, []string) {
	t.Helper()
	var table struct {
		Routes []struct {
			Method  string `json:"method"`
			Targets []struct {
				Versions  []string `json:"versions"`
				Instances int      `json:"instances"`
			} `json:"targets"`
		} `json:"routes"`
	}
	getJSON(t, base, "/v1/envs/"+env+"/routes", &table)
	for _, r := range table.Routes {
		if r.Method == method {
			n, versions := 0, []string{}
			for _, tg := range r.Targets {
				n += tg.Instances
				versions = append(versions, tg.Versions...)
			}
			return n, versions
		}
	}
	return 0, nil
}

func configMapVersion(t *testing.T, cs kubernetes.Interface, ns string) string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.ResourceVersion
}

// Version registrations against a real API server: an idempotent PUT,
// readiness flips in routes and events with no poll, version labels and
// their absence, a Service in another namespace, 2,000 endpoints, and
// cleanup sparing what is ready.
func TestIntegrationVersionRegistrations(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	suffix := uniqueSuffix(t)
	ns, other := "itest-ver-"+suffix, "itest-ver-"+suffix+"-svc"
	createNamespace(t, cs, ns)
	createNamespace(t, cs, other)
	// No controller creates the default ServiceAccount that pods run as.
	createServiceAccount(t, cs, ns, "default")
	createServiceAccount(t, cs, other, "default")

	// Polls an hour apart: whatever changes below reaches the API without
	// one, but for this replica's own writes.
	cfg := kubeServeConfig(srv.Kubeconfig, time.Hour, ns)
	cfg.TTL = 2 * time.Second
	cfg.GCAfter = 3 * time.Second
	cfg.VersionRefresh = false
	logs := &testkit.Buffer{}
	base, _ := startServe(t, cfg, logs)
	waitReady(t, base)

	const getItem = "/acme.catalog.v1.CatalogService/GetItem"
	body := func(internal string) string {
		return `{"network":{"internal":"` + internal + `"},"methods":["` + getItem + `"]}`
	}
	put := func(app, version, internal string, want int) {
		t.Helper()
		status, _, b := authCall(t, http.MethodPut, base+"/v1/envs/prod/apps/"+app+"/versions/"+version, body(internal), "")
		wantAnswer(t, "PUT "+app+" "+version, status, b, want, "", "")
	}

	// Idempotent, by resourceVersion.
	put("catalog", "v1", "catalog:9000", http.StatusCreated)
	rv := configMapVersion(t, cs, ns)
	for range 3 {
		put("catalog", "v1", "catalog:9000", http.StatusOK)
	}
	if got := configMapVersion(t, cs, ns); got != rv {
		t.Errorf("unchanged registrations wrote the ConfigMap: resourceVersion %s -> %s", rv, got)
	}
	put("catalog", "v2", "catalog:9000", http.StatusCreated)

	// Version labels honoured: v1 and v2 pods behind one Service.
	createLabelledPod(t, cs, ns, "cat-a", "v1")
	createLabelledPod(t, cs, ns, "cat-b", "v1")
	createLabelledPod(t, cs, ns, "cat-c", "v2")
	putSlice(t, cs, ns, "catalog", "catalog-1", itestEndpoint{"cat-a", true}, itestEndpoint{"cat-b", false}, itestEndpoint{"cat-c", true})
	testkit.WaitFor(t, 10*time.Second, "the ready endpoints in the route table", func() (bool, string) {
		n, versions := routeInstances(t, base, "prod", getItem)
		return n == 2 && len(versions) == 2, fmt.Sprint(n, versions)
	})

	// An event stream sees a readiness flip; nothing is polled or written.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/envs/prod/routes/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "event:") {
				events <- line
			}
		}
		close(events)
	}()
	nextEvent := func(what string) string {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("%s: the stream ended", what)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no event within 10s", what)
		}
		return ""
	}
	nextEvent("the stream's first event")
	rv = configMapVersion(t, cs, ns)
	putSlice(t, cs, ns, "catalog", "catalog-1", itestEndpoint{"cat-a", true}, itestEndpoint{"cat-b", true}, itestEndpoint{"cat-c", true})
	nextEvent("the event of cat-b becoming ready")
	if n, _ := routeInstances(t, base, "prod", getItem); n != 3 {
		t.Errorf("%d instances after cat-b became ready, want 3", n)
	}
	putSlice(t, cs, ns, "catalog", "catalog-1", itestEndpoint{"cat-a", false}, itestEndpoint{"cat-b", true}, itestEndpoint{"cat-c", true})
	nextEvent("the event of cat-a becoming unready")
	if got := configMapVersion(t, cs, ns); got != rv {
		t.Errorf("readiness flips wrote the ConfigMap: resourceVersion %s -> %s", rv, got)
	}

	// A Service in another namespace, whose pods carry no version label:
	// every ready endpoint counts for every version.
	const record = "/acme.audit.v1.AuditService/Record"
	status, _, b := authCall(t, http.MethodPut, base+"/v1/envs/prod/apps/audit/versions/v1",
		`{"network":{"internal":"audit.`+other+`.svc.cluster.local:7000"},"methods":["`+record+`"]}`, "")
	wantAnswer(t, "PUT audit v1", status, b, http.StatusCreated, "", "")
	createLabelledPod(t, cs, other, "audit-a", "")
	createLabelledPod(t, cs, other, "audit-b", "")
	putSlice(t, cs, other, "audit", "audit-1", itestEndpoint{"audit-a", true}, itestEndpoint{"audit-b", true})
	testkit.WaitFor(t, 10*time.Second, "the unlabelled Service's endpoints", func() (bool, string) {
		n, _ := routeInstances(t, base, "prod", record)
		return n == 2, fmt.Sprint(n)
	})

	// 2,000 endpoints in 20 slices, of pods that carry no label.
	const bulkMethod = "/acme.bulk.v1.BulkService/Do"
	status, _, b = authCall(t, http.MethodPut, base+"/v1/envs/prod/apps/bulk/versions/v1",
		`{"network":{"internal":"bulk:9000"},"methods":["`+bulkMethod+`"]}`, "")
	wantAnswer(t, "PUT bulk v1", status, b, http.StatusCreated, "", "")
	for s := range 20 {
		eps := make([]itestEndpoint, 100)
		for i := range eps {
			eps[i] = itestEndpoint{fmt.Sprintf("bulk-%d-%d", s, i), true}
		}
		putSlice(t, cs, ns, "bulk", fmt.Sprintf("bulk-%d", s), eps...)
	}
	testkit.WaitFor(t, 30*time.Second, "2,000 ready endpoints", func() (bool, string) {
		n, _ := routeInstances(t, base, "prod", bulkMethod)
		return n == 2000, fmt.Sprint(n)
	})

	// Cleanup: with the refresh off every run_date ages past GC, yet only
	// the version without a ready endpoint goes.
	put("ghost", "v1", "ghost:9000", http.StatusCreated)
	ghostKey := model.CanonicalKey("ghost", model.VersionLeaseID("ghost", "v1"))
	catalogKey := model.CanonicalKey("catalog", model.VersionLeaseID("catalog", "v1"))
	testkit.WaitFor(t, 30*time.Second, "GC removing the version without ready endpoints", func() (bool, string) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, ghost := cm.Data[ghostKey]
		return !ghost, logs.String()
	})
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cm.Data[catalogKey]; !ok {
		t.Error("GC removed catalog v1, whose Service has ready endpoints")
	}

	status, _, b = authCall(t, http.MethodDelete, base+"/v1/envs/prod/apps/catalog/versions/v2", "", "")
	wantAnswer(t, "DELETE catalog v2", status, b, http.StatusNoContent, "", "")
	testkit.WaitFor(t, 10*time.Second, "v2 leaving the route table", func() (bool, string) {
		_, versions := routeInstances(t, base, "prod", getItem)
		return len(versions) == 1 && versions[0] == "v1", fmt.Sprint(versions)
	})
}

// TestIntegrationVersionLibraryReaders: the Go library's discoverer, which
// knows nothing of endpoints, sees a version registration alive while its
// Service has a ready endpoint, because the leader refreshes its run_date,
// and drops it one TTL after the last ready endpoint goes.
func TestIntegrationVersionLibraryReaders(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-verlib-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)
	createServiceAccount(t, cs, ns, "default")

	cfg := kubeServeConfig(srv.Kubeconfig, time.Hour, ns)
	// run_date has whole seconds: a TTL of several keeps a refresh every
	// TTL/2 clear of the library's rounding.
	cfg.TTL = 6 * time.Second
	cfg.VersionRefresh = true
	base, _ := startServe(t, cfg, &testkit.Buffer{})
	waitReady(t, base)

	const method = "/acme.shelf.v1.ShelfService/Put"
	status, _, b := authCall(t, http.MethodPut, base+"/v1/envs/prod/apps/shelf/versions/v1",
		`{"network":{"internal":"shelf:9000"},"methods":["`+method+`"]}`, "")
	wantAnswer(t, "PUT shelf v1", status, b, http.StatusCreated, "", "")
	createLabelledPod(t, cs, ns, "shelf-a", "v1")
	putSlice(t, cs, ns, "shelf", "shelf-1", itestEndpoint{"shelf-a", true})

	discovered := func() (bool, string) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return testkit.LibraryDiscover(cm.Data, time.Now(), cfg.TTL)[method] == "shelf", fmt.Sprint(cm.Data)
	}
	// Three TTLs past its registration, the library still finds it alive.
	registered := time.Now()
	testkit.WaitFor(t, 5*cfg.TTL, "three TTLs of the library seeing the ready version", func() (bool, string) {
		if ok, data := discovered(); !ok {
			t.Fatalf("%s after its registration the library lost the ready version: %s", time.Since(registered).Round(time.Millisecond), data)
		}
		return time.Since(registered) > 3*cfg.TTL, ""
	})

	// No ready endpoint: the refresh stops, and the library drops it once
	// its last run_date is a TTL old.
	putSlice(t, cs, ns, "shelf", "shelf-1", itestEndpoint{"shelf-a", false})
	unready := time.Now()
	testkit.WaitFor(t, 3*cfg.TTL, "the library dropping the unready version", func() (bool, string) {
		ok, data := discovered()
		return !ok, data
	})
	if took := time.Since(unready); took < cfg.TTL/2 {
		t.Errorf("the library dropped the version %s after its endpoint went unready, before its last refresh could age", took)
	}
}

// deployVersions runs serve with the deployed ServiceAccount's token alone:
// the Role lets its informers read the EndpointSlices and pods of the
// watched namespace, and refuses them another namespace's, whose Service's
// version then counts no endpoints, and holds back nothing else.
func deployVersions(t *testing.T, srv *kubetest.Server, kubeconfig string) {
	cs := adminClient(t, srv)
	createServiceAccount(t, cs, deployNamespace, "default")
	createServiceAccount(t, cs, otherNamespace, "default")
	suffix := uniqueSuffix(t)
	app, outside := "shelf-"+suffix, "vault-"+suffix
	createLabelledPod(t, cs, deployNamespace, app+"-a", "v1")
	putSlice(t, cs, deployNamespace, app, app+"-1", itestEndpoint{app + "-a", true})
	putSlice(t, cs, otherNamespace, outside, outside+"-1", itestEndpoint{outside + "-a", true})

	logs := &testkit.Buffer{}
	base, stop := startServe(t, kubeServeConfig(kubeconfig, 500*time.Millisecond, deployNamespace), logs)
	defer func() { _ = stop() }()
	waitReady(t, base)
	const shelf, vault = "/acme.shelf.v1.ShelfService/Get", "/acme.vault.v1.VaultService/Get"
	for _, r := range [][3]string{{app, app + ":9000", shelf}, {outside, outside + "." + otherNamespace + ":9000", vault}} {
		status, _, b := authCall(t, http.MethodPut, base+"/v1/envs/prod/apps/"+r[0]+"/versions/v1",
			`{"network":{"internal":"`+r[1]+`"},"methods":["`+r[2]+`"]}`, "")
		wantAnswer(t, "PUT "+r[0], status, b, http.StatusCreated, "", "")
	}
	testkit.WaitFor(t, 30*time.Second, "the watched namespace's endpoints, read with the Role", func() (bool, string) {
		n, _ := routeInstances(t, base, "prod", shelf)
		return n == 1, logs.String()
	})
	testkit.WaitFor(t, 30*time.Second, "the refusal in the other namespace said", func() (bool, string) {
		return strings.Contains(logs.String(), otherNamespace) && strings.Contains(logs.String(), "could not read EndpointSlices"), logs.String()
	})
	if n, _ := routeInstances(t, base, "prod", vault); n != 0 {
		t.Errorf("%d instances of a Service the Role does not let registry-api read, want 0", n)
	}
	status, _, b := authCall(t, http.MethodGet, base+"/readyz", "", "")
	wantAnswer(t, "readiness with a namespace the Role refuses", status, b, http.StatusOK, "", "")
}
