package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

// The Go registry library's types and discoverer, as a Go service reads
// entries.
type (
	libServiceNode = testkit.LibraryNode
	libNetwork     = testkit.LibraryNetwork
	libKernel      = testkit.LibraryKernel
	libMeta        = testkit.LibraryMeta
)

var libDiscover = testkit.LibraryDiscover

// TestLibraryDiscoversRegistrations: what the API writes, a Go service
// using the library discovers. The other direction, entries the library
// wrote served by this API, is what the read tests check on the library's
// own fixture (testdata/configmaps-go-micro.yaml, TestAPI).
func TestLibraryDiscoversRegistrations(t *testing.T) {
	wh := newWriteHarness(t, writeOptions{})
	b := newInventory(bigLease)
	b.Methods = map[string]bool{"/acme.inventory.v1.InventoryService/Reserve": true}
	wantStatus(t, wh.register(instancesPath, b.json()), http.StatusCreated, "")

	cm, err := wh.store.Get(context.Background(), "firefly", "ff-registry-prod")
	if err != nil {
		t.Fatal(err)
	}
	var n libServiceNode
	if err := json.Unmarshal([]byte(cm.Data["inventory-service.1795695862709570047"]), &n); err != nil {
		t.Fatal(err)
	}
	if n.LeaseID != bigLease || n.Meta != (libMeta{Env: "prod", AppID: "inventory-service", Version: "v1"}) {
		t.Errorf("decoded = %+v", n)
	}

	ttl := 10 * time.Second
	found := libDiscover(cm.Data, wh.clock.Now(), ttl)
	if found["/acme.inventory.v1.InventoryService/Reserve"] != "inventory-service" {
		t.Errorf("the library does not discover the registration: %v", found)
	}
	// The library's own instances are discovered beside it.
	if found["/acme.user.v1.UserService/Login"] != "user-service" {
		t.Errorf("the library's instances are lost: %v", found)
	}

	// A heartbeat through the API keeps it discoverable for the library.
	wh.clock.Add(8 * time.Second)
	wantStatus(t, wh.do(request{method: http.MethodPut, target: instancesPath + "/1795695862709570047/heartbeat"}), http.StatusOK, "")
	wh.clock.Add(8 * time.Second)
	cm, _ = wh.store.Get(context.Background(), "firefly", "ff-registry-prod")
	found = libDiscover(cm.Data, wh.clock.Now(), ttl)
	if found["/acme.inventory.v1.InventoryService/Reserve"] != "inventory-service" {
		t.Errorf("after a heartbeat the library no longer discovers it: %v", found)
	}
	if _, ok := found["/acme.user.v1.UserService/Login"]; ok {
		t.Errorf("the library's own instances should have expired by now: %v", found)
	}
}
