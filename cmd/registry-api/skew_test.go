package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// REGISTRY_MAX_CLOCK_SKEW reaches the poller: a run_date 90 s ahead is
// reported under the default 1m and taken at its word under 2m.
func TestServeMaxClockSkew(t *testing.T) {
	ahead := time.Now().UTC().Add(90 * time.Second).Format(time.DateTime)
	seed := fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: ff-registry-prod, namespace: firefly}
data:
  ahead.1: '{"proto_count":1,"lease_id":1,"run_date":"%s","methods":{"/acme.a.v1.A/Do":true},"network":{"sn":"n","internal":"ahead:8080","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"ahead","version":"v1"}}'
`, ahead)
	path := filepath.Join(t.TempDir(), "seed.yaml")
	if err := os.WriteFile(path, []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		skew time.Duration
		want int
	}{{0, 1}, {2 * time.Minute, 0}} {
		cfg := testConfig(t)
		cfg.Seed, cfg.SeedRefresh, cfg.MaxClockSkew = path, false, tt.skew
		base, stop := startServe(t, cfg, io.Discard)
		waitReady(t, base)
		resp, err := http.Get(base + "/v1/envs/prod")
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Warnings []struct {
				Key, Reason string
			} `json:"warnings"`
		}
		err = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, w := range env.Warnings {
			if w.Reason == "run_date_in_future" && w.Key == "ahead.1" {
				got++
			}
		}
		if got != tt.want {
			t.Errorf("REGISTRY_MAX_CLOCK_SKEW=%s: %d run_date_in_future warnings, want %d (%+v)", tt.skew, got, tt.want, env.Warnings)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}
