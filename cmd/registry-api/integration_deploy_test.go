//go:build integration

package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/acme/registry-api/internal/kubetest"
)

// deployOverlay writes an overlay of deploy/ as the README shows one, beside
// deploy/ (kustomize refuses one inside the base it builds on), and returns
// its directory; the kustomization names the base ../deploy.
func deployOverlay(t *testing.T, kustomization string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := os.MkdirTemp(root, ".itest-overlay-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(overlay) })
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o600); err != nil {
		t.Fatal(err)
	}
	return overlay
}

// TestIntegrationDeployComponents builds an operator's overlay of deploy/
// with the network-policy and service-monitor components and an image of
// its own registry, checks that what they select is what the base deploys,
// and has the real API server validate it all: the NetworkPolicy as a
// built-in kind, the ServiceMonitor against the Prometheus Operator's own
// CRD. The base alone has neither.
func TestIntegrationDeployComponents(t *testing.T) {
	srv := sharedServer(t)
	crds, err := kubetest.MonitoringCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.InstallCRDs(crds...); err != nil {
		t.Fatalf("installing the ServiceMonitor CRD: %v", err)
	}
	createNamespace(t, adminClient(t, srv), deployNamespace)

	base, err := srv.Kubectl("kustomize", filepath.Join("..", "..", "deploy"))
	if err != nil {
		t.Fatalf("%v\n%s", err, base)
	}
	for _, obj := range decodeObjects(t, base) {
		if kind := obj.GetKind(); kind == "NetworkPolicy" || kind == "ServiceMonitor" {
			t.Errorf("the base deploys a %s: it depends on the cluster, so it belongs in a component", kind)
		}
	}

	// As `kustomize edit set image registry-api=…` writes it.
	const image = "registry.example.com/platform/registry-api:v1.2.3"
	overlay := deployOverlay(t, "namespace: "+deployNamespace+"\nresources: [../deploy]\n"+
		"components: [../deploy/components/network-policy, ../deploy/components/service-monitor]\n"+
		"images:\n  - name: registry-api\n    newName: registry.example.com/platform/registry-api\n    newTag: v1.2.3\n")
	out, err := srv.Kubectl("kustomize", overlay)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var (
		dep      appsv1.Deployment
		svc      corev1.Service
		policy   networkingv1.NetworkPolicy
		monitor  *unstructured.Unstructured
		rendered []string
	)
	for _, obj := range decodeObjects(t, out) {
		rendered = append(rendered, obj.GetKind()+"/"+obj.GetName())
		switch obj.GetKind() {
		case "Deployment":
			fromUnstructured(t, obj, &dep)
		case "Service":
			fromUnstructured(t, obj, &svc)
		case "NetworkPolicy":
			fromUnstructured(t, obj, &policy)
		case "ServiceMonitor":
			monitor = obj
		}
	}
	if dep.Name == "" || svc.Name == "" || policy.Name == "" || monitor == nil {
		t.Fatalf("the overlay renders %v, want the Deployment, the Service, the NetworkPolicy and the ServiceMonitor", rendered)
	}

	container := dep.Spec.Template.Spec.Containers[0]
	if container.Image != image {
		t.Errorf("the Deployment runs %s, want the overlay's %s", container.Image, image)
	}
	httpPort := slices.IndexFunc(container.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" })
	if httpPort < 0 {
		t.Fatalf("the container has no port named http: %+v", container.Ports)
	}
	// Annotation-driven scrapers read the port from the pod's annotations.
	if got, want := dep.Spec.Template.Annotations["prometheus.io/port"], strconv.Itoa(int(container.Ports[httpPort].ContainerPort)); got != want {
		t.Errorf("prometheus.io/port = %q, want the http port %s", got, want)
	}

	// The policy selects the pods and lets in their http port, which serves
	// the API, /metrics and the probes.
	if policy.Namespace != dep.Namespace {
		t.Errorf("the NetworkPolicy is in namespace %q, the Deployment in %q", policy.Namespace, dep.Namespace)
	}
	selector, err := metav1.LabelSelectorAsSelector(&policy.Spec.PodSelector)
	if err != nil || selector.Empty() || !selector.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("the NetworkPolicy's podSelector %v (%v) does not select the pods, labelled %v", selector, err, dep.Spec.Template.Labels)
	}
	if !slices.Contains(policy.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(policy.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("policyTypes = %v, want Ingress and Egress", policy.Spec.PolicyTypes)
	}
	if !admitsPort(policy.Spec.Ingress, container.Ports[httpPort]) {
		t.Errorf("the NetworkPolicy lets in no traffic to the http port: %+v", policy.Spec.Ingress)
	}
	for _, port := range []int{443, 6443} { // the API server, through its Service or directly
		if !allowsOut(policy.Spec.Egress, port) {
			t.Errorf("the NetworkPolicy keeps the pods from the API server's port %d: %+v", port, policy.Spec.Egress)
		}
	}

	// The ServiceMonitor selects the Service in its own namespace, and
	// scrapes a port the Service has.
	if monitor.GetNamespace() != svc.Namespace {
		t.Errorf("the ServiceMonitor is in namespace %q, the Service in %q", monitor.GetNamespace(), svc.Namespace)
	}
	matchLabels, _, _ := unstructured.NestedStringMap(monitor.Object, "spec", "selector", "matchLabels")
	if len(matchLabels) == 0 || !labels.SelectorFromSet(matchLabels).Matches(labels.Set(svc.Labels)) {
		t.Errorf("the ServiceMonitor selects %v, the Service is labelled %v", matchLabels, svc.Labels)
	}
	endpoints, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
	if len(endpoints) == 0 {
		t.Error("the ServiceMonitor has no endpoints")
	}
	for _, e := range endpoints {
		ep, _ := e.(map[string]any)
		port, _ := ep["port"].(string)
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
			return p.Name == port && p.TargetPort == intstr.FromString(container.Ports[httpPort].Name)
		}) {
			t.Errorf("the ServiceMonitor scrapes port %v, which is not the Service's port to the container's http port", ep["port"])
		}
		if path, _ := ep["path"].(string); path != "/metrics" {
			t.Errorf("the ServiceMonitor scrapes %q, want /metrics", path)
		}
	}

	// The API server validates every object, the NetworkPolicy as a
	// built-in kind and the ServiceMonitor against the CRD's schema.
	out, err = srv.Kubectl("apply", "--dry-run=server", "-k", overlay)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"networkpolicy.networking.k8s.io/registry-api", "servicemonitor.monitoring.coreos.com/registry-api", "deployment.apps/registry-api"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply output lacks %s:\n%s", want, out)
		}
	}
}

// admitsPort reports whether some ingress rule lets traffic in to the
// container port, named or numbered.
func admitsPort(rules []networkingv1.NetworkPolicyIngressRule, port corev1.ContainerPort) bool {
	for _, r := range rules {
		if len(r.Ports) == 0 {
			return true
		}
		for _, p := range r.Ports {
			if p.Port == nil || *p.Port == intstr.FromString(port.Name) || *p.Port == intstr.FromInt32(port.ContainerPort) {
				return true
			}
		}
	}
	return false
}

// allowsOut reports whether some egress rule lets TCP out to the port, to
// any address.
func allowsOut(rules []networkingv1.NetworkPolicyEgressRule, port int) bool {
	for _, r := range rules {
		if len(r.To) != 0 {
			continue
		}
		if len(r.Ports) == 0 {
			return true
		}
		for _, p := range r.Ports {
			tcp := p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP
			if tcp && (p.Port == nil || *p.Port == intstr.FromInt32(int32(port))) {
				return true
			}
		}
	}
	return false
}

// decodeObjects splits kubectl's YAML output into objects.
func decodeObjects(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decoding kubectl's output: %v", err)
		}
		if obj != nil {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
}

func fromUnstructured(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
		t.Fatalf("%s/%s: %v", obj.GetKind(), obj.GetName(), err)
	}
}
