package httpapi

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/acme/registry-api/internal/routesync"
	"github.com/acme/registry-api/internal/testkit"
)

// With route sync on, an env's view says which of its kinds the API server
// serves; with it off, it says nothing of it.
func TestEnvReportsRouteSync(t *testing.T) {
	for name, tc := range map[string]struct {
		status func() []routesync.KindStatus
		want   []routeSyncKindView
	}{
		"off": {},
		"on, Istio not installed": {
			status: func() []routesync.KindStatus {
				return []routesync.KindStatus{{Kind: "GRPCRoute", Served: true}, {Kind: "VirtualService", Served: false}}
			},
			want: []routeSyncKindView{{Kind: "GRPCRoute", Served: true}, {Kind: "VirtualService", Served: false}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := &harness{t: t, src: newSource(fixtureSnapshot(t)), clock: testkit.NewClock(t0), registry: prometheus.NewRegistry(), logs: &testkit.Buffer{}}
			srv, err := newServer(Deps{Log: zerolog.Nop(), Snapshots: h.src, Now: h.clock.Now, TTL: 10 * time.Second,
				Prometheus: h.registry, RouteSync: tc.status})
			if err != nil {
				t.Fatal(err)
			}
			h.srv = srv
			var v envDetailView
			decode(t, h.get("/v1/envs/prod"), &v)
			if !slices.Equal(v.RouteSync, tc.want) {
				t.Errorf("route_sync = %+v, want %+v", v.RouteSync, tc.want)
			}
		})
	}
}
