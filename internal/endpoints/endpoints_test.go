package endpoints_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/acme/registry-api/internal/endpoints"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/testkit"
	"github.com/acme/registry-api/internal/watch"
)

// versionEntry is a version registration's entry as the API writes it.
func versionEntry(env, app, version, internal string) (string, string) {
	lease := model.VersionLeaseID(app, version)
	return model.CanonicalKey(app, lease), fmt.Sprintf(`{"proto_count":1,"lease_id":%d,"run_date":"2026-11-26 12:24:22",`+
		`"methods":{"/acme.%s.v1.Svc/Do":true},"network":{"sn":"","internal":%q,"external":""},"kernel":{"language":"","version":""},`+
		`"meta":{"env":%q,"app_id":%q,"version":%q},"keepalive":"service"}`, lease, strings.ReplaceAll(app, "-", ""), internal, env, app, version)
}

type endpoint struct {
	pod         string
	ready       bool
	terminating bool
	node, zone  string
}

func slice(ns, svc, name string, eps ...endpoint) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, e := range eps {
		ready, terminating := e.ready, e.terminating
		ep := discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.0.0.%d", i+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Terminating: &terminating},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod},
		}
		if e.node != "" {
			ep.NodeName = &e.node
		}
		if e.zone != "" {
			ep.Zone = &e.zone
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	return es
}

func pod(ns, name, version string) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "x"}},
	}
	if version != "" {
		p.Labels[endpoints.VersionLabel] = version
	}
	return p
}

// pods lists the pods that stand as instances of app's version in env.
func pods(snap *model.Snapshot, env, app, version string) []string {
	e := snap.Envs[env]
	if e == nil || e.Apps[app] == nil {
		return nil
	}
	var out []string
	for _, n := range e.Apps[app].Nodes {
		if n.Version == version && n.Endpoint != nil {
			out = append(out, n.Endpoint.Pod)
		}
	}
	slices.Sort(out)
	return out
}

// The whole way: version registrations in a ConfigMap, EndpointSlices and
// pods in the cluster, a snapshot whose instances are the ready endpoints,
// and readiness flips reaching it without a poll.
func TestEndpointsReachTheSnapshot(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	data := map[string]string{}
	for _, r := range [][3]string{
		{"catalog-service", "v1", "catalog-service:9000"},
		{"catalog-service", "v2", "catalog-service:9000"},
		{"audit", "v1", "audit.shop:7000"},
	} {
		k, v := versionEntry("prod", r[0], r[1], r[2])
		data[k] = v
	}
	mem, err := store.NewMemory(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "firefly", Name: "ff-registry-prod"}, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	poller, err := watch.New(mem, watch.Options{Namespaces: []string{"firefly"}, AwaitEndpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	poller.Poll(ctx)
	before, err := mem.Get(ctx, "firefly", "ff-registry-prod")
	if err != nil {
		t.Fatal(err)
	}
	if got := pods(poller.Snapshot(), "prod", "catalog-service", "v1"); len(got) != 0 {
		t.Fatalf("instances %v before any endpoint is known", got)
	}
	if poller.Snapshot().Ready() {
		t.Fatal("ready before the endpoints were read: every version would look down")
	}

	client := fake.NewClientset(
		slice("firefly", "catalog-service", "catalog-a",
			endpoint{pod: "cat-1", ready: true, node: "node-a", zone: "zone-1"},
			endpoint{pod: "cat-2", ready: false},
			endpoint{pod: "cat-3", ready: true, terminating: true},
			endpoint{pod: "cat-4", ready: true}),
		// The same pods in the IPv6 slice of a dual-stack Service count once.
		slice("firefly", "catalog-service", "catalog-b", endpoint{pod: "cat-1", ready: true}),
		slice("firefly", "other", "other-a", endpoint{pod: "other-1", ready: true}),
		slice("shop", "audit", "audit-a", endpoint{pod: "audit-1", ready: true}, endpoint{pod: "audit-2", ready: true}),
	)
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	meta := metadatafake.NewSimpleMetadataClient(scheme,
		pod("firefly", "cat-1", "v1"), pod("firefly", "cat-2", "v1"), pod("firefly", "cat-3", "v2"), pod("firefly", "cat-4", "v2"),
		pod("shop", "audit-1", ""), pod("shop", "audit-2", ""))
	src, err := endpoints.New(endpoints.Options{Client: client, Metadata: meta, Snapshots: poller, Sink: poller.SetEndpoints})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx) }()
	defer func() { cancel(); <-done }()

	want := func(what, app, version string, wantPods ...string) {
		t.Helper()
		testkit.WaitFor(t, 10*time.Second, what, func() (bool, string) {
			got := pods(poller.Snapshot(), "prod", app, version)
			return slices.Equal(got, wantPods), fmt.Sprint(got)
		})
	}
	want("v1: the ready pod labelled v1", "catalog-service", "v1", "cat-1")
	if !poller.Snapshot().Ready() {
		t.Error("not ready once the endpoints were read")
	}
	want("v2: the ready pod labelled v2, not the terminating one", "catalog-service", "v2", "cat-4")
	want("no pod of the Service has a version label: every ready endpoint", "audit", "v1", "audit-1", "audit-2")

	snap := poller.Snapshot()
	for _, n := range snap.Envs["prod"].Apps["catalog-service"].Nodes {
		if n.Endpoint != nil && n.Endpoint.Pod == "cat-1" && (n.Endpoint.Node != "node-a" || n.Endpoint.Zone != "zone-1") {
			t.Errorf("cat-1 on node %q in zone %q, want node-a in zone-1", n.Endpoint.Node, n.Endpoint.Zone)
		}
	}
	routes := snap.Envs["prod"].Routes(time.Now(), model.DefaultTTL)
	if r := routes.Table.Lookup("/acme.catalogservice.v1.Svc/Do"); r == nil || len(r.Targets) != 1 || r.Targets[0].Instances != 2 ||
		!slices.Equal(r.Targets[0].Versions, []string{"v1", "v2"}) {
		t.Errorf("route = %+v, want catalog-service:9000 with 2 instances of v1 and v2", r)
	}

	// A pod becomes ready, another stops being ready: no poll, no write.
	published := poller.Published()
	update := slice("firefly", "catalog-service", "catalog-a",
		endpoint{pod: "cat-1", ready: false},
		endpoint{pod: "cat-2", ready: true},
		endpoint{pod: "cat-4", ready: true})
	if _, err := client.DiscoveryV1().EndpointSlices("firefly").Update(ctx, update, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.DiscoveryV1().EndpointSlices("firefly").Delete(ctx, "catalog-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want("v1 after the flip", "catalog-service", "v1", "cat-2")
	// The snapshot is stored before its announcement: wait for it.
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Error("the change was not announced to followers")
	}
	after, err := mem.Get(ctx, "firefly", "ff-registry-prod")
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("endpoint changes wrote the ConfigMap: resourceVersion %s -> %s", before.ResourceVersion, after.ResourceVersion)
	}

	// The last ready endpoint of v2 goes: v2 stays registered, not alive.
	if _, err := client.DiscoveryV1().EndpointSlices("firefly").Update(ctx, slice("firefly", "catalog-service", "catalog-a",
		endpoint{pod: "cat-2", ready: true}, endpoint{pod: "cat-4", ready: false}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want("v2 without a ready endpoint", "catalog-service", "v2")
	app := poller.Snapshot().Envs["prod"].Apps["catalog-service"]
	if c := app.Counts(time.Now(), model.DefaultTTL); c.Alive != 1 || c.Stale != 1 {
		t.Errorf("counts %+v, want v1's one endpoint alive and v2's entry not", c)
	}
}

// A namespace whose EndpointSlices cannot be read (a Role too narrow, or a
// Service named where nobody granted access) counts no endpoints once its
// sync times out, and holds back neither readiness nor any other Service.
func TestUnreadableNamespaceHoldsNothingBack(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	data := map[string]string{}
	for _, r := range [][3]string{{"catalog-service", "v1", "catalog-service:9000"}, {"locked", "v1", "locked.secret-ns:9000"}} {
		k, v := versionEntry("prod", r[0], r[1], r[2])
		data[k] = v
	}
	mem, err := store.NewMemory(corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "firefly", Name: "ff-registry-prod"}, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	poller, err := watch.New(mem, watch.Options{Namespaces: []string{"firefly"}, AwaitEndpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	poller.Poll(ctx)
	client := fake.NewClientset(slice("firefly", "catalog-service", "catalog-a", endpoint{pod: "cat-1", ready: true}))
	client.PrependReactor("list", "endpointslices", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetNamespace() == "secret-ns" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", errors.New("no Role here"))
		}
		return false, nil, nil
	})
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	meta := metadatafake.NewSimpleMetadataClient(scheme, pod("firefly", "cat-1", "v1"))
	logs := &testkit.Buffer{}
	src, err := endpoints.New(endpoints.Options{Client: client, Metadata: meta, Snapshots: poller, Sink: poller.SetEndpoints,
		SyncTimeout: 200 * time.Millisecond, Log: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); src.Run(ctx) }()
	defer func() { cancel(); <-done }()

	testkit.WaitFor(t, 10*time.Second, "ready, with catalog-service's endpoint", func() (bool, string) {
		snap := poller.Snapshot()
		return snap.Ready() && slices.Equal(pods(snap, "prod", "catalog-service", "v1"), []string{"cat-1"}), logs.String()
	})
	if got := pods(poller.Snapshot(), "prod", "locked", "v1"); len(got) != 0 {
		t.Errorf("the unreadable namespace's Service has endpoints %v", got)
	}
	if !strings.Contains(logs.String(), "secret-ns") {
		t.Errorf("nothing logged about the unreadable namespace:\n%s", logs)
	}
}
