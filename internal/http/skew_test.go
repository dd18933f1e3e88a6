package httpapi

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

// A writer in UTC+8 writes its local wall clock into run_date; this replica
// reads it as UTC, 8 hours ahead, and saw the value at t0.
func TestRunDateInFuture(t *testing.T) {
	h := newHarness(t)
	wall := t0.In(time.FixedZone("UTC+8", 8*3600)).Format(model.RunDateLayout)
	raw := fmt.Sprintf(`{"proto_count":1,"lease_id":7,"run_date":%q,"methods":{"/acme.ahead.v1.Ahead/Do":true},`+
		`"network":{"sn":"n","internal":"ahead:8080","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},`+
		`"meta":{"env":"skew","app_id":"ahead","version":"v1"}}`, wall)
	n, warnings, err := model.ParseEntry("firefly", "skew", "ahead.7", []byte(raw), model.ParseOptions{ObservedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	snap := fixtureSnapshot(t)
	snap.Envs["skew"] = model.BuildEnv("skew", []model.Entry{{Namespace: "firefly", Key: "ahead.7", Node: n, Warnings: warnings}})
	snap.EnvNames = append(snap.EnvNames, "skew")
	h.src.Swap(snap)

	var env envDetailView
	decode(t, h.get("/v1/envs/skew"), &env)
	if len(env.Warnings) != 1 {
		t.Fatalf("warnings %+v", env.Warnings)
	}
	w := env.Warnings[0]
	if w.Reason != "run_date_in_future" || w.Key != "ahead.7" || !strings.Contains(w.Detail, "8h0m0s ahead") {
		t.Errorf("warning %+v", w)
	}
	if env.Instances != (countsView{Alive: 1}) {
		t.Errorf("instances at the sighting %+v, want 1 alive", env.Instances)
	}

	// One TTL after the sighting, not 8 hours: dead everywhere.
	h.clock.Add(10*time.Second + time.Second)
	decode(t, h.get("/v1/envs/skew"), &env)
	if env.Instances != (countsView{Stale: 1}) {
		t.Errorf("instances one TTL after the sighting %+v, want 1 stale", env.Instances)
	}
	var app appDetailView
	decode(t, h.get("/v1/envs/skew/apps/ahead?include=stale"), &app)
	if len(app.Instances) != 1 || app.Instances[0].Alive || app.Instances[0].AgeSeconds != 11 {
		t.Errorf("instances %+v, want one dead, 11 s since the heartbeat it was seen at", app.Instances)
	}
	if rec := h.get("/v1/envs/skew/methods/acme.ahead.v1.Ahead/Do"); rec.Code != 503 || problemOf(t, rec).Code != model.CodeNoLiveInstances {
		t.Errorf("resolution %d %s, want 503 no_live_instances", rec.Code, rec.Body)
	}
}
