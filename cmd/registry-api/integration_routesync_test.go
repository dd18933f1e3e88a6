//go:build integration

package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/testkit"
)

var (
	grpcRoutes       = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "grpcroutes"}
	virtualServices  = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	destinationRules = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
)

func installRoutingCRDs(t *testing.T, srv *kubetest.Server) {
	t.Helper()
	files, err := kubetest.RoutingCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.InstallCRDs(files...); err != nil {
		t.Fatalf("installing the routing CRDs: %v", err)
	}
}

func dynamicClient(t *testing.T, srv *kubetest.Server) dynamic.Interface {
	t.Helper()
	cfg, err := srv.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// syncServeConfig turns route sync on, with a short grace period and a
// quick leader election.
func syncServeConfig(kubeconfig, ns string, grace time.Duration) Config {
	cfg := kubeServeConfig(kubeconfig, 200*time.Millisecond, ns)
	cfg.SyncGRPCRoutes, cfg.SyncIstio = true, true
	cfg.Gateway = "infra/grpc"
	cfg.SyncGrace = grace
	cfg.LeaderLeaseDuration, cfg.LeaderLeaseRenewDeadline, cfg.LeaderLeaseRetryPeriod = 2*time.Second, time.Second, 200*time.Millisecond
	return cfg
}

// routeMethods are the methods a GRPCRoute's rules match, sorted; nil when
// it does not exist.
func routeMethods(t *testing.T, dyn dynamic.Interface, ns, name string) (*unstructured.Unstructured, []string) {
	t.Helper()
	obj, err := dyn.Resource(grpcRoutes).Namespace(ns).Get(t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		t.Fatalf("get GRPCRoute %s/%s: %v", ns, name, err)
	}
	var methods []string
	rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
	for _, r := range rules {
		matches, _, _ := unstructured.NestedSlice(r.(map[string]any), "matches")
		for _, m := range matches {
			svc, _, _ := unstructured.NestedString(m.(map[string]any), "method", "service")
			name, _, _ := unstructured.NestedString(m.(map[string]any), "method", "method")
			methods = append(methods, "/"+svc+"/"+name)
		}
	}
	slices.Sort(methods)
	return obj, methods
}

func waitRouteMethods(t *testing.T, dyn dynamic.Interface, ns, name string, within time.Duration, want ...string) *unstructured.Unstructured {
	t.Helper()
	var obj *unstructured.Unstructured
	testkit.WaitFor(t, within, fmt.Sprintf("GRPCRoute %s matching %q", name, want), func() (bool, string) {
		var got []string
		obj, got = routeMethods(t, dyn, ns, name)
		if obj == nil && len(want) == 0 {
			return true, ""
		}
		return obj != nil && slices.Equal(got, want), fmt.Sprintf("matches %q (exists: %v)", got, obj != nil)
	})
	return obj
}

func leads(t *testing.T, base string) bool {
	v, _ := metricValue(t, base, "registry_api_leader")
	return v == 1
}

// syncedSince waits until base's route sync has completed a reconcile that
// began after since.
func syncedSince(t *testing.T, base string, since time.Time, within time.Duration) {
	t.Helper()
	testkit.WaitFor(t, within, "a route sync after "+since.Format(time.TimeOnly), func() (bool, string) {
		v, _ := metricValue(t, base, "registry_api_sync_last_success_timestamp_seconds")
		at := time.Unix(0, int64(v*1e9))
		return at.After(since), "last success at " + at.Format(time.TimeOnly)
	})
}

// TestIntegrationRouteSync runs two replicas with GRPCRoute and Istio sync
// against the real CRDs: registrations become routes, each app its own; a
// deregistered app's route outlives it by the grace period, not less; a
// leader change rewrites and deletes nothing; objects someone else wrote
// are never touched; and stopping the sync leaves its objects in place.
func TestIntegrationRouteSync(t *testing.T) {
	srv := sharedServer(t)
	installRoutingCRDs(t, srv)
	cs := adminClient(t, srv)
	dyn := dynamicClient(t, srv)
	ns := "itest-sync-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)
	const (
		grace  = 4 * time.Second
		within = 10 * time.Second
		get    = "/acme.user.v1.UserService/Get"
		list   = "/acme.user.v1.UserService/List"
		create = "/acme.order.v1.OrderService/Create"
		charge = "/acme.billing.v1.BillingService/Charge"
	)

	// Someone else's routes: one whose name shares the prefix of the
	// sync's, one with the very name the sync would give billing's.
	foreign := func(name string) *unstructured.Unstructured {
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
			"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"team": "edge"}},
			"spec": map[string]any{"rules": []any{map[string]any{
				"matches":     []any{map[string]any{"method": map[string]any{"service": "hand.v1.Written", "method": "Rule"}}},
				"backendRefs": []any{map[string]any{"name": "hand-written", "port": int64(9000)}},
			}}},
		}}
		created, err := dyn.Resource(grpcRoutes).Namespace(ns).Create(t.Context(), obj, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create the foreign GRPCRoute %s: %v", name, err)
		}
		return created
	}
	canary := foreign("prod.user-service-canary")
	billing := foreign("prod.billing")

	cfg := syncServeConfig(srv.Kubeconfig, ns, grace)
	cfg.TTL = time.Minute
	a, stopA := startServe(t, cfg, io.Discard)
	waitReady(t, a)
	testkit.WaitFor(t, within, "a leading", func() (bool, string) { return leads(t, a), "not leading" })
	b, stopB := startServe(t, cfg, io.Discard)
	waitReady(t, b)

	// A registration through the API becomes a route, once the new term's
	// quiet start is over.
	status, _, body := writeCall(t, http.MethodPost, b+"/v1/envs/prod/apps/user-service/instances",
		fmt.Sprintf(`{"version":"v1","network":{"internal":"user-service:8080"},"methods":[%q,%q]}`, get, list))
	if status != http.StatusCreated {
		t.Fatalf("register user-service = %d: %s", status, body)
	}
	user := waitRouteMethods(t, dyn, ns, "prod.user-service", within, get, list)
	if got := user.GetLabels()["app.kubernetes.io/managed-by"]; got != "registry-api" {
		t.Errorf("managed-by label %q", got)
	}
	for _, f := range user.GetManagedFields() {
		if f.Manager != "registry-api" || f.Operation != metav1.ManagedFieldsOperationApply {
			t.Errorf("field manager %s (%s), want registry-api by apply only", f.Manager, f.Operation)
		}
	}
	for _, gvr := range []schema.GroupVersionResource{virtualServices, destinationRules} {
		testkit.WaitFor(t, within, "user-service's "+gvr.Resource, func() (bool, string) {
			l, err := dyn.Resource(gvr).Namespace(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=registry-api"})
			if err != nil {
				t.Fatal(err)
			}
			return len(l.Items) == 1 && strings.HasSuffix(l.Items[0].GetName(), "user-service"), fmt.Sprintf("%d objects", len(l.Items))
		})
	}

	// A second app's methods land in a route of its own; billing's name is
	// taken, so billing gets none.
	data := entries(newNode("prod", "order-service", "v1", create), newNode("prod", "billing", "v1", charge))
	editConfigMap(t, cs, ns, "ff-registry-prod", func(d map[string]string) {
		for k, v := range data {
			d[k] = v
		}
	})
	waitRouteMethods(t, dyn, ns, "prod.order-service", within, create)
	testkit.WaitFor(t, within, "the taken name reported", func() (bool, string) {
		v, _ := metricValue(t, a, "registry_api_sync_foreign_objects", `kind="GRPCRoute"`)
		return v == 1, fmt.Sprint(v)
	})

	// Deregistered: the route stays for the grace period, then goes.
	orderKey := ""
	for k := range data {
		if strings.HasPrefix(k, "order-service.") {
			orderKey = k
		}
	}
	gone := time.Now()
	editConfigMap(t, cs, ns, "ff-registry-prod", func(d map[string]string) { delete(d, orderKey) })
	syncedSince(t, a, gone.Add(time.Second), within)
	if obj, _ := routeMethods(t, dyn, ns, "prod.order-service"); obj == nil && time.Since(gone) < grace {
		t.Errorf("order-service's route deleted %v after its deregistration, within the %v grace period", time.Since(gone), grace)
	}
	waitRouteMethods(t, dyn, ns, "prod.order-service", grace+within)
	// The grace period counts from the change that removed the method: the
	// first poll after the deregistration.
	if took := time.Since(gone); took < grace-cfg.PollInterval {
		t.Errorf("order-service's route deleted %v after its deregistration, within the %v grace period", took, grace)
	}

	// A leader change: b takes over and writes nothing, deletes nothing.
	before, _ := routeMethods(t, dyn, ns, "prod.user-service")
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, within, "b leading", func() (bool, string) { return leads(t, b), "not leading" })
	// b reconciles as its term starts, and again when its quiet start ends
	// and it may remove: nothing else changes meanwhile to wake it.
	var first time.Time
	testkit.WaitFor(t, within, "b's first route sync", func() (bool, string) {
		v, _ := metricValue(t, b, "registry_api_sync_last_success_timestamp_seconds")
		first = time.Unix(0, int64(v*1e9))
		return v > 0, "none yet"
	})
	syncedSince(t, b, first, grace+within) // past its quiet start
	after, methods := routeMethods(t, dyn, ns, "prod.user-service")
	if after == nil || after.GetUID() != before.GetUID() || after.GetResourceVersion() != before.GetResourceVersion() {
		t.Errorf("user-service's route after the leader change: %v, resourceVersion %s → %s", methods, before.GetResourceVersion(), after.GetResourceVersion())
	}

	// Sync turned off: the next leader leaves the objects where they are.
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	off := cfg
	off.SyncGRPCRoutes, off.SyncIstio = false, false
	c, _ := startServe(t, off, io.Discard)
	waitReady(t, c)
	testkit.WaitFor(t, within, "c leading and at work", func() (bool, string) {
		v, _ := metricValue(t, c, "registry_api_upkeep_cycles_total", `result="ok"`)
		return leads(t, c) && v > 0, fmt.Sprintf("%v upkeep cycles", v)
	})
	if obj, _ := routeMethods(t, dyn, ns, "prod.user-service"); obj == nil || obj.GetResourceVersion() != before.GetResourceVersion() {
		t.Errorf("user-service's route with sync off: %v", obj)
	}

	// Someone else's routes were never touched.
	for _, theirs := range []*unstructured.Unstructured{canary, billing} {
		now, err := dyn.Resource(grpcRoutes).Namespace(ns).Get(t.Context(), theirs.GetName(), metav1.GetOptions{})
		if err != nil || now.GetResourceVersion() != theirs.GetResourceVersion() {
			t.Errorf("the foreign route %s: %v, resourceVersion %s → %s", theirs.GetName(), err, theirs.GetResourceVersion(), now.GetResourceVersion())
		}
	}
}

// TestIntegrationRouteSyncOutage stops the API server under the leader for
// longer than the TTL and the grace period: the instance cannot heartbeat,
// and when the API server is back its entry reads dead. Its route is not
// deleted: the sync gives it a grace period from the data's return, and
// it heartbeats within it.
func TestIntegrationRouteSyncOutage(t *testing.T) {
	srv, err := kubetest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping the kube-apiserver: %v", err)
		}
	})
	installRoutingCRDs(t, srv)
	cs := adminClient(t, srv)
	const (
		ns     = "firefly"
		grace  = 3 * time.Second
		within = 15 * time.Second
		get    = "/acme.user.v1.UserService/Get"
	)
	createNamespace(t, cs, ns)
	serverURL := kubeconfigServerURL(t, srv.Kubeconfig)
	user := newNode("prod", "user-service", "v1", get)
	createConfigMap(t, cs, ns, "ff-registry-prod", entries(user))

	cfg := syncServeConfig(srv.Kubeconfig, ns, grace)
	cfg.TTL = 2 * time.Second
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)
	before := waitRouteMethods(t, dynamicClient(t, srv), ns, "prod.user-service", within+grace, get)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// The replica's last snapshot ages: the instance dies by its TTL, and
	// the leader, unable to renew, stops leading.
	testkit.WaitFor(t, within, "the instance dead and the leader gone", func() (bool, string) {
		_, _, body := fetch(t, base, "/v1/envs/prod")
		return strings.Contains(string(body), `"alive":0`) && !leads(t, base), string(body)
	})
	outage := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if kubeconfigServerURL(t, srv.Kubeconfig) != serverURL {
		t.Fatalf("the API server came back on another address; the replica cannot reach it")
	}
	cs = adminClient(t, srv)
	dyn := dynamicClient(t, srv)
	testkit.WaitFor(t, within, "leading again", func() (bool, string) { return leads(t, base), "not leading" })
	back := time.Now()
	syncedSince(t, base, back, within)
	if obj, _ := routeMethods(t, dyn, ns, "prod.user-service"); obj == nil || obj.GetUID() != before.GetUID() {
		t.Fatalf("user-service's route after an outage of %v: deleted", back.Sub(outage))
	}
	// The instance heartbeats again, within the grace period, and on.
	stopBeating := make(chan struct{})
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		for {
			user.runDate = time.Now()
			data := entries(user)
			if _, err := cs.CoreV1().ConfigMaps(ns).Update(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ff-registry-prod", Namespace: ns}, Data: data}, metav1.UpdateOptions{}); err != nil {
				t.Errorf("heartbeat: %v", err)
				return
			}
			select {
			case <-stopBeating:
				return
			case <-time.After(cfg.TTL / 4):
			}
		}
	}()
	defer func() { close(stopBeating); <-beating }()
	syncedSince(t, base, back.Add(grace+time.Second), grace+within)
	if obj, methods := routeMethods(t, dyn, ns, "prod.user-service"); obj == nil || obj.GetUID() != before.GetUID() || !slices.Equal(methods, []string{get}) {
		t.Errorf("user-service's route once it heartbeats again: %v (exists: %v)", methods, obj != nil)
	}
}

// TestIntegrationDeployRouteSync applies the base with both sync components
// and runs the sync with the ServiceAccount's token alone: the components'
// Roles allow what the sync does in the watched namespace, and nothing more.
func TestIntegrationDeployRouteSync(t *testing.T) {
	srv := sharedServer(t)
	installRoutingCRDs(t, srv)
	cs := adminClient(t, srv)
	createNamespace(t, cs, deployNamespace)
	createNamespace(t, cs, otherNamespace)

	overlay := deployOverlay(t, "namespace: "+deployNamespace+"\nresources: [../deploy]\n"+
		"components: [../deploy/components/sync-grpcroutes, ../deploy/components/sync-istio]\n")
	out, err := srv.Kubectl("kustomize", overlay)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"name: REGISTRY_SYNC_GRPCROUTES", "name: REGISTRY_SYNC_ISTIO"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the overlay's Deployment lacks %s", want)
		}
	}
	if out, err := srv.Kubectl("apply", "-k", overlay); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	canI := func(verb, resource, namespace string) bool {
		args := []string{"auth", "can-i", verb, resource, "--as=" + serviceAccount}
		if namespace == "" {
			args = append(args, "--all-namespaces")
		} else {
			args = append(args, "-n", namespace)
		}
		// kubectl may warn first, on stderr; the answer is the last line.
		out, _ := srv.Kubectl(args...)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return lines[len(lines)-1] == "yes"
	}
	testkit.WaitFor(t, 10*time.Second, "the sync Roles taking effect", func() (bool, string) {
		out, _ := srv.Kubectl("auth", "can-i", "patch", "grpcroutes.gateway.networking.k8s.io", "--as="+serviceAccount, "-n", deployNamespace)
		return canI("patch", "grpcroutes.gateway.networking.k8s.io", deployNamespace), string(out)
	})
	for _, resource := range []string{"grpcroutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io",
		"virtualservices.networking.istio.io", "destinationrules.networking.istio.io"} {
		for _, verb := range []string{"get", "list", "create", "patch", "delete"} {
			if !canI(verb, resource, deployNamespace) {
				t.Errorf("cannot %s %s in %s", verb, resource, deployNamespace)
			}
		}
		for _, denied := range []struct{ verb, namespace string }{{"update", deployNamespace}, {"watch", deployNamespace},
			{"patch", otherNamespace}, {"list", ""}} {
			if canI(denied.verb, resource, denied.namespace) {
				t.Errorf("may %s %s in %q", denied.verb, resource, denied.namespace)
			}
		}
	}
	if canI("patch", "httproutes.gateway.networking.k8s.io", deployNamespace) {
		t.Error("may patch HTTPRoutes")
	}

	// The sync, with those permissions alone, writes an app's routes.
	out, err = srv.Kubectl("create", "token", "registry-api", "-n", deployNamespace,
		"--audience", "https://kubernetes.default.svc.cluster.local", "--duration", "10m")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	kubeconfig := writeTokenKubeconfig(t, srv, strings.TrimSpace(string(out)))
	const env, charge = "synctest", "/acme.pay.v1.PayService/Charge"
	putRegistry(t, cs, deployNamespace, "ff-registry-"+env, entries(newNode(env, "pay-service", "v1", charge)))
	cfg := syncServeConfig(kubeconfig, deployNamespace, time.Second)
	logs := &testkit.Buffer{}
	base, stop := startServe(t, cfg, logs)
	waitReady(t, base)
	waitRouteMethods(t, dynamicClient(t, srv), deployNamespace, env+".pay-service", 20*time.Second, charge)
	if v, _ := metricValue(t, base, "registry_api_sync_errors_total"); v != 0 {
		t.Errorf("%v failed sync calls with the ServiceAccount's permissions:\n%s", v, logs.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	editConfigMap(t, cs, deployNamespace, "ff-registry-"+env, func(d map[string]string) { clear(d) })
}
