//go:build integration

package main

import (
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/model"
)

// exportSample is an env with an app of more methods than one GRPCRoute
// holds, a method two apps claim, a Service in another namespace than its
// app, an IP-literal address and a version that names no subset.
func exportSample(apps, backends string) (*model.RouteTable, export.Options) {
	target := func(addr string, versions ...string) []model.RouteTarget {
		return []model.RouteTarget{{Internal: addr, Versions: versions, Instances: 1}}
	}
	var routes []model.Route
	for i := range 200 {
		routes = append(routes, model.Route{Method: fmt.Sprintf("/acme.big.v1.BigService/Call%03d", i), AppID: "big",
			Targets: target("big:9000", "v1", "v2")})
	}
	routes = append(routes,
		model.Route{Method: "/acme.pay.v1.PayService/Charge", AppID: "pay",
			Targets:   append(target("pay."+backends+".svc.cluster.local:9000", "v1", "V2.beta"), target("10.0.0.12:9000", "v1")...),
			Claimants: []model.Claimant{{AppID: "pay", Alive: 2}, {AppID: "pay-legacy", Alive: 1}}},
		model.Route{Method: "/acme.pay.v1.PayService/Refund", AppID: "pay", Targets: target("pay."+backends+":9000", "v1")},
	)
	return &model.RouteTable{Env: "qa", Routes: routes}, export.Options{
		Env: "qa", Tag: `"0123456789abcdef"`,
		Namespaces:    map[string]string{"big": apps, "pay": apps},
		Gateway:       &export.ParentRef{Namespace: "infra", Name: "public", SectionName: "grpc"},
		VersionHeader: "x-version",
	}
}

// listItems decodes an export as HTTP serves it into its objects.
func listItems(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	body, err := export.EncodeList(objs)
	if err != nil {
		t.Fatal(err)
	}
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(body); err != nil {
		t.Fatalf("decode the list: %v", err)
	}
	out := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out
}

// apply server-side applies o as registry-api's field manager, with strict
// field validation: a field the CRD does not know (a misspelt local struct
// tag) is an error, not silently pruned.
func apply(t *testing.T, dyn dynamic.Interface, o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	t.Helper()
	body, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return dyn.Resource(gvrOf(o)).Namespace(o.GetNamespace()).Patch(t.Context(), o.GetName(), types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: export.ManagedBy, Force: ptrTo(true), FieldValidation: "Strict"})
}

func ptrTo[T any](v T) *T { return &v }

// applyAll applies objs and returns each one's resourceVersion after.
func applyAll(t *testing.T, dyn dynamic.Interface, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	versions := map[string]string{}
	for _, o := range objs {
		got, err := apply(t, dyn, o)
		if err != nil {
			t.Errorf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			continue
		}
		versions[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = got.GetResourceVersion()
	}
	return versions
}

func gvrOf(o *unstructured.Unstructured) schema.GroupVersionResource {
	gv, _ := schema.ParseGroupVersion(o.GetAPIVersion())
	return gv.WithResource(strings.ToLower(o.GetKind()) + "s")
}

// TestIntegrationExportStrict applies the export package's objects for a
// sample (a split, a grant, a skipped address and version, a conflict) with
// strict field validation, so that a field the CRDs do not know fails
// rather than being pruned; applying the same export again must change
// nothing; and the CRDs' own checks must refuse a route past the CEL cap
// and an unknown field, so that the acceptance means something.
func TestIntegrationExportStrict(t *testing.T) {
	srv := sharedServer(t)
	installRoutingCRDs(t, srv)
	cs := adminClient(t, srv)
	dyn := dynamicClient(t, srv)
	suffix := uniqueSuffix(t)
	apps, backends := "export-apps-"+suffix, "export-backends-"+suffix
	createNamespace(t, cs, apps)
	createNamespace(t, cs, backends)

	table, opts := exportSample(apps, backends)
	gw := export.GRPCRoutes(table, opts)
	is := export.IstioObjects(table, opts)
	// The sample holds what it means to: a split, a grant, a skipped
	// address and version.
	if len(gw.GRPCRoutes) != 3 || len(gw.ReferenceGrants) != 1 || len(gw.Skipped) != 1 || len(is.Skipped) != 2 {
		t.Fatalf("sample: %d routes, %d grants, skipped %v and %v", len(gw.GRPCRoutes), len(gw.ReferenceGrants), gw.Skipped, is.Skipped)
	}
	gwObjs, err := gw.Objects()
	if err != nil {
		t.Fatal(err)
	}
	isObjs, err := is.Objects()
	if err != nil {
		t.Fatal(err)
	}
	objs := append(listItems(t, gwObjs), listItems(t, isObjs)...)

	first := applyAll(t, dyn, objs)
	if t.Failed() {
		return
	}
	t.Logf("applied %d objects: %v", len(first), first)
	// The same export, applied again, is no change at all.
	for k, v := range applyAll(t, dyn, objs) {
		if first[k] != v {
			t.Errorf("%s changed on a second apply of the same export (%s -> %s)", k, first[k], v)
		}
	}

	// The CRDs' own validation is in force, so the acceptance above means
	// something: one match past the CEL cap across rules is refused, and so
	// is a field the schema lacks.
	typo := objs[len(objs)-1].DeepCopy()
	if err := unstructured.SetNestedField(typo.Object, "x", "spec", "hostz"); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(t, dyn, typo); err == nil || !strings.Contains(err.Error(), "hostz") {
		t.Errorf("a VirtualService with an unknown field: %v, want refused", err)
	}
	over, _ := exportSample(apps, backends)
	over.Routes = over.Routes[:export.MaxMatchesPerRoute+1]
	route := export.GRPCRoutes(over, opts).GRPCRoutes[0]
	route.Name = "over-the-limit"
	route.Spec.Rules = append(route.Spec.Rules, export.GRPCRoutes(over, opts).GRPCRoutes[1].Spec.Rules...)
	bad := &export.GatewayAPI{GRPCRoutes: []gatewayv1.GRPCRoute{route}}
	badObjs, err := bad.Objects()
	if err != nil {
		t.Fatal(err)
	}
	_, err = apply(t, dyn, badObjs[0])
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "128") {
		t.Errorf("a route of %d matches: %v, want 422 Invalid naming the cap", export.MaxMatchesPerRoute+1, err)
	}
}
