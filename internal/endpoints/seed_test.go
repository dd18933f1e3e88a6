package endpoints_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/acme/registry-api/internal/endpoints"
	"github.com/acme/registry-api/internal/model"
)

// The demo's stand-in holds catalog-service v1 alive by its two ready pods.
func TestSeedEndpoints(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "demo", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	eps, err := endpoints.SeedEndpoints(data)
	if err != nil {
		t.Fatal(err)
	}
	got := eps[model.ServiceRef{Namespace: "firefly", Name: "catalog-service"}].For("v1")
	if len(got) != 2 || got[0] != (model.Endpoint{Pod: "catalog-service-6d9f7-abcde", Node: "node-a", Zone: "zone-1", Version: "v1"}) {
		t.Errorf("catalog-service v1 endpoints %+v, want the two ready pods", got)
	}
	if _, err := endpoints.SeedEndpoints([]byte("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x, namespace: y}\n")); err == nil {
		t.Error("a slice of no Service was taken")
	}
}
