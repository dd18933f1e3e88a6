package model_test

import (
	"fmt"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

// The scale: 300 apps × 2 versions × 20 methods, 60 ready endpoints
// per version (36,000): what re-indexing the env costs when one Service's
// endpoints change.
func BenchmarkBuildEnvWithEndpoints(b *testing.B) {
	var entries []model.Entry
	eps := model.Endpoints{}
	for a := range 300 {
		app := fmt.Sprintf("app-%03d", a)
		svc := model.ServiceRef{Namespace: "firefly", Name: app}
		se := &model.ServiceEndpoints{Labelled: true}
		for v := range 2 {
			version := fmt.Sprintf("v%d", v+1)
			methods := "{"
			for m := range 20 {
				if m > 0 {
					methods += ","
				}
				methods += fmt.Sprintf(`"/acme.%s.v1.Svc/M%d":true`, fmt.Sprintf("a%03d", a), m)
			}
			methods += "}"
			lease := model.VersionLeaseID(app, version)
			key := model.CanonicalKey(app, lease)
			raw := fmt.Sprintf(`{"proto_count":1,"lease_id":%d,"run_date":"2026-11-26 12:24:22","methods":%s,"network":{"sn":"","internal":"%s:9000","external":""},"kernel":{"language":"","version":""},"meta":{"env":"prod","app_id":"%s","version":"%s"},"keepalive":"service"}`,
				lease, methods, app, app, version)
			n, w, err := model.ParseEntry("firefly", "prod", key, []byte(raw), model.ParseOptions{})
			if err != nil {
				b.Fatal(err)
			}
			entries = append(entries, model.Entry{Namespace: "firefly", Key: key, Node: n, Warnings: w})
			for p := range 60 {
				se.Ready = append(se.Ready, model.Endpoint{Pod: fmt.Sprintf("%s-%s-%02d", app, version, p), Node: "node", Zone: "zone", Version: version})
			}
		}
		eps[svc] = se
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		idx := model.BuildEnvWith("prod", entries, eps)
		if len(idx.Nodes) != 36000 {
			b.Fatalf("%d nodes", len(idx.Nodes))
		}
	}
}
