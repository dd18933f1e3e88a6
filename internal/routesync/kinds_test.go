package routesync

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/model"
)

// What a kind says an object routes is read from the objects the export
// builds: if their shape changes, the quiet period's guard must follow.
func TestKindsReadWhatTheExportRoutes(t *testing.T) {
	table := &model.RouteTable{Env: "prod", Routes: []model.Route{
		{Method: "/user.v1.Users/Get", AppID: "user-service", Targets: []model.RouteTarget{{Internal: "user-service:8080", Versions: []string{"v1", "v2"}, Instances: 2}}},
		{Method: "/user.v1.Users/List", AppID: "user-service", Targets: []model.RouteTarget{{Internal: "user-service.accounts:8080", Versions: []string{"v2"}, Instances: 1}}},
	}}
	opts := export.Options{Env: "prod", Namespaces: map[string]string{"user-service": "shop"},
		Gateway: &export.ParentRef{Namespace: "infra", Name: "grpc"}, VersionHeader: "x-version"}
	gw := export.GRPCRoutes(table, opts)
	gwObjs, err := gw.Objects()
	if err != nil {
		t.Fatal(err)
	}
	istio := export.IstioObjects(table, opts)
	istioObjs, err := istio.Objects()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, k := range append(GatewayAPIKinds(), IstioKinds()...) {
		for _, o := range append(gwObjs, istioObjs...) {
			if o.GetKind() == k.Name {
				got[k.Name] = append(got[k.Name], k.Routes(o)...)
			}
		}
		slices.Sort(got[k.Name])
	}
	for kind, want := range map[string][]string{
		"GRPCRoute":       {"/user.v1.Users/Get", "/user.v1.Users/List"},
		"ReferenceGrant":  {"user-service"},
		"DestinationRule": {"v1", "v2", "v2"},
	} {
		if !slices.Equal(got[kind], want) {
			t.Errorf("%s routes %q, want %q", kind, got[kind], want)
		}
	}
	// Each method, plainly and with each of its versions' header.
	vs := got["VirtualService"]
	for _, want := range []string{"/user.v1.Users/Get", "/user.v1.Users/Get x-version=v2", "/user.v1.Users/List x-version=v2"} {
		if !slices.Contains(vs, want) {
			t.Errorf("VirtualService routes %q lack %q", vs, want)
		}
	}
	if k := (Kind{}); dropsRoutes(k, &unstructured.Unstructured{}, &unstructured.Unstructured{}) {
		t.Error("a kind that lists no routes drops some")
	}
}
