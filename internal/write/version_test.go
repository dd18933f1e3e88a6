package write

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/model"
)

// catalogVersion is a version registration as every pod of a rollout sends it.
func catalogVersion(methods ...string) Registration {
	return Registration{
		Namespace: "firefly", Env: "prod", AppID: "catalog-service", Version: "v1",
		Network:    model.Network{Internal: "catalog-service:9000"},
		Methods:    methods,
		ProtoCount: 1,
		Extra:      map[string]json.RawMessage{model.MemberKeepalive: json.RawMessage(`"service"`)},
	}
}

// A rollout's pods register the same version at once: one entry, one
// write; the next rollout of the same body writes nothing; a changed method
// list rewrites the one entry.
func TestRegisterVersionRolloutStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		counting := &countingStore{Store: newMemory(t, seedInstances(t, "firefly", "prod", 3))}
		w := newWriter(t, Options{Store: counting, BatchWindow: 100 * time.Millisecond, Registerer: prometheus.NewRegistry(),
			Now: newTickingClock(t0, time.Second).Now})
		storm := func(r Registration) (created, unchanged int) {
			var mu sync.Mutex
			var wg sync.WaitGroup
			for range 60 {
				wg.Go(func() {
					res, err := w.RegisterVersion(context.Background(), r)
					if err != nil {
						t.Errorf("register version: %v", err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if res.Created {
						created++
					}
					if res.Unchanged {
						unchanged++
					}
				})
			}
			wg.Wait()
			return created, unchanged
		}
		lease := model.VersionLeaseID("catalog-service", "v1")
		key := model.CanonicalKey("catalog-service", lease)

		created, unchanged := storm(catalogVersion("/acme.catalog.v1.CatalogService/GetItem"))
		if created != 1 || unchanged != 59 || counting.updates.Load() != 1 {
			t.Errorf("first rollout: %d created, %d unchanged, %d updates; want 1, 59, 1", created, unchanged, counting.updates.Load())
		}
		first := getData(t, counting, "firefly", "prod")[key]

		time.Sleep(time.Minute) // the bubble's clock: run_date alone would differ
		created, unchanged = storm(catalogVersion("/acme.catalog.v1.CatalogService/GetItem"))
		if created != 0 || unchanged != 60 || counting.updates.Load() != 1 {
			t.Errorf("the same rollout again: %d created, %d unchanged, %d updates in all; want 0, 60, 1", created, unchanged, counting.updates.Load())
		}
		if got := getData(t, counting, "firefly", "prod")[key]; got != first {
			t.Errorf("an unchanged registration rewrote the entry:\n%s\n%s", first, got)
		}

		storm(catalogVersion("/acme.catalog.v1.CatalogService/GetItem", "/acme.catalog.v1.CatalogService/Search"))
		if counting.updates.Load() != 2 {
			t.Errorf("a changed method list: %d updates in all, want 2", counting.updates.Load())
		}
		data := getData(t, counting, "firefly", "prod")
		n, _, err := model.ParseEntry("firefly", "prod", key, []byte(data[key]), model.ParseOptions{})
		if err != nil || len(n.Methods) != 2 || !n.ServiceKept || n.LeaseID != lease {
			t.Errorf("entry %s = %s (%v): want both methods, service-kept", key, data[key], err)
		}
		if len(data) != 4 {
			t.Errorf("%d entries, want the 3 instances and the version", len(data))
		}
	})
}

func TestRegisterVersionRefusals(t *testing.T) {
	w := newWriter(t, Options{Store: newMemory(t), Registerer: prometheus.NewRegistry()})
	r := catalogVersion("/acme.catalog.v1.CatalogService/GetItem")
	r.Version = ""
	_, err := w.RegisterVersion(context.Background(), r)
	wantCode(t, err, model.CodeInvalid)
	r.Version = "v1/x"
	_, err = w.RegisterVersion(context.Background(), r)
	wantCode(t, err, model.CodeInvalid)
	r.Version, r.LeaseID = "v1", 5
	_, err = w.RegisterVersion(context.Background(), r)
	wantCode(t, err, model.CodeInvalid)
	r.LeaseID = model.VersionLeaseID(r.AppID, r.Version)
	if _, err := w.RegisterVersion(context.Background(), r); err != nil {
		t.Errorf("the version's own lease id: %v", err)
	}
}
