//go:build integration

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestIntegrationExport server-side applies every exported object to a
// real API server with the Gateway API and Istio CRDs installed, so that
// the CRDs' schemas and CEL rules judge them: an app with more methods than
// one GRPCRoute holds, a backend in another namespace, an IP-literal
// address and a method two apps claim.
func TestIntegrationExport(t *testing.T) {
	srv := sharedServer(t)
	installRoutingCRDs(t, srv)
	cs := adminClient(t, srv)
	dyn := dynamicClient(t, srv)
	suffix := uniqueSuffix(t)
	ns, backends := "itest-export-"+suffix, "itest-backends-"+suffix
	createNamespace(t, cs, ns)
	createNamespace(t, cs, backends)

	// 150 methods on one Service: more than the 128 matches a route takes.
	var many []string
	for i := range 150 {
		many = append(many, fmt.Sprintf("/acme.big.v1.BigService/M%03d", i))
	}
	big := newNode("qa", "big-service", "v1", many...)
	v2 := newNode("qa", "big-service", "v2", many...)
	audit := newNode("qa", "audit", "v1", "/acme.audit.v1.AuditService/Record")
	const charge = "/acme.pay.v1.PayService/Charge"
	billing := newNode("qa", "billing", "v1", charge)
	pay := newNode("qa", "pay-service", "v1", charge, "/acme.pay.v1.PayService/Refund")
	edge := newNode("qa", "edge-proxy", "v1", "/acme.edge.v1.EdgeService/Forward")
	data := entries(big, v2, billing, pay)
	// audit's Service lives in another namespace; edge-proxy is reached by
	// an IP literal only.
	data[audit.key()] = strings.Replace(audit.value(), `"internal":"audit:8080"`, `"internal":"audit.`+backends+`:7000"`, 1)
	data[edge.key()] = strings.Replace(edge.value(), `"internal":"edge-proxy:8080"`, `"internal":"10.0.0.12:9000"`, 1)
	createConfigMap(t, cs, ns, "ff-registry-qa", data)

	cfg := kubeServeConfig(srv.Kubeconfig, 200*time.Millisecond, ns)
	cfg.Gateway = "infra/grpc"
	cfg.IstioVersionHeader = "x-version"
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	kinds := map[string]schema.GroupVersionResource{
		"GRPCRoute":       grpcRoutes,
		"ReferenceGrant":  {Group: "gateway.networking.k8s.io", Version: "v1", Resource: "referencegrants"},
		"VirtualService":  virtualServices,
		"DestinationRule": destinationRules,
	}
	applied := map[string]int{}
	for _, path := range []string{"/v1/envs/qa/export/grpcroutes", "/v1/envs/qa/export/istio"} {
		status, hdr, body := fetch(t, base, path)
		if status != http.StatusOK {
			t.Fatalf("GET %s = %d: %s", path, status, body)
		}
		if n, _ := strconv.Atoi(hdr.Get("X-Registry-Skipped")); path == "/v1/envs/qa/export/grpcroutes" && n == 0 {
			t.Errorf("%s skipped nothing; the IP-literal address must be", path)
		}
		var list struct {
			Kind  string                   `json:"kind"`
			Items []map[string]interface{} `json:"items"`
		}
		if err := json.Unmarshal(body, &list); err != nil || list.Kind != "List" {
			t.Fatalf("GET %s: %v %s", path, err, body)
		}
		for _, item := range list.Items {
			obj := &unstructured.Unstructured{Object: item}
			gvr, ok := kinds[obj.GetKind()]
			if !ok {
				t.Fatalf("unexpected kind %s", obj.GetKind())
			}
			if _, err := dyn.Resource(gvr).Namespace(obj.GetNamespace()).Apply(t.Context(), obj.GetName(), obj,
				metav1.ApplyOptions{FieldManager: "registry-api"}); err != nil {
				t.Errorf("apply %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
				continue
			}
			applied[obj.GetKind()]++
		}
	}
	t.Logf("applied %v", applied)
	if applied["GRPCRoute"] < 4 || applied["ReferenceGrant"] != 1 || applied["VirtualService"] < 3 || applied["DestinationRule"] < 3 {
		t.Errorf("applied %v: want big-service split in two, audit, pay-service; one grant; the Istio objects of three hosts", applied)
	}
	// The split and the conflict, as the API server stored them.
	two, methods := routeMethods(t, dyn, ns, "qa.big-service.2")
	one, first := routeMethods(t, dyn, ns, "qa.big-service")
	if one == nil || two == nil || len(first)+len(methods) != len(many) {
		t.Errorf("big-service's routes hold %d + %d methods, want %d", len(first), len(methods), len(many))
	}
	if p := two.GetAnnotations()["registry.acme.io/part"]; p != "2/2" {
		t.Errorf("second route's part annotation %q", p)
	}
	// Charge goes to one claimant's route, which names the other.
	holders := 0
	for app, other := range map[string]string{"billing": "pay-service", "pay-service": "billing"} {
		route, methods := routeMethods(t, dyn, ns, "qa."+app)
		if route == nil || !slices.Contains(methods, charge) {
			continue
		}
		holders++
		if !strings.Contains(route.GetAnnotations()["registry.acme.io/conflicts"], other) {
			t.Errorf("%s's route holds %s but does not name %s: %v", app, charge, other, route.GetAnnotations())
		}
	}
	if holders != 1 {
		t.Errorf("%d routes hold %s, want the winner's only", holders, charge)
	}
	if route, _ := routeMethods(t, dyn, ns, "qa.edge-proxy"); route != nil {
		t.Error("edge-proxy, reached by an IP literal only, got a route")
	}
}
