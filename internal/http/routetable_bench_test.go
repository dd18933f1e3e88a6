package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// BenchmarkRoutesView serves the routes view of a 200-instance env (10 apps
// of 20 instances, 20 methods each) through the full handler, as production
// does: it is rendered once per liveness state and kept on the snapshot.
func BenchmarkRoutesView(b *testing.B) {
	nodes := benchEnvNodes()
	for _, bc := range []struct{ name, target string }{
		{"env", "/v1/envs/prod/routes"},
		{"one app", "/v1/envs/prod/routes?app=app-3"},
		{"one version", "/v1/envs/prod/routes?version=v2"},
		{"all envs", "/v1/routes"},
	} {
		b.Run(bc.name, func(b *testing.B) { benchServe(b, nodes, bc.target) })
	}
}

// benchEnvNodes is a 200-instance env: 10 apps of 20 instances.
func benchEnvNodes() []node { return appNodes(10, 20) }

// appNodes are apps of perApp instances each, in versions v1 and v2, whose
// heartbeats span 5 s; each app serves 20 methods.
func appNodes(apps, perApp int) []node {
	var nodes []node
	for app := range apps {
		var ms []string
		for m := range 20 {
			ms = append(ms, "/acme.app"+strconv.Itoa(app)+".v1.Service/M"+strconv.Itoa(m))
		}
		for i := range perApp {
			nodes = append(nodes, node{app: "app-" + strconv.Itoa(app), version: "v" + strconv.Itoa(1+i%2),
				internal: "app-" + strconv.Itoa(app) + ".prod.svc.cluster.local:8080", lease: int64(1000*app + i + 1),
				runDate: t0.Add(-time.Duration(i%5) * time.Second), methods: ms})
		}
	}
	return nodes
}

// benchServe serves target over nodes through the full handler, with the
// production logger at info, once per iteration.
func benchServe(b *testing.B, nodes []node, target string) {
	h, err := newServer(Deps{
		Log:        zerolog.New(io.Discard).Level(zerolog.InfoLevel),
		Snapshots:  newSource(buildSnapshot(t0, nodes...)),
		Now:        func() time.Time { return t0 },
		Prometheus: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, target, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("%d %s", w.Code, w.Body)
	}
	b.ReportMetric(float64(w.Body.Len()), "body-bytes")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.Body.Reset()
		h.ServeHTTP(w, r)
	}
}
