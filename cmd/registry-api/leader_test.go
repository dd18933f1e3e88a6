package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

func TestLoadConfigAuthAndUpkeepDefaults(t *testing.T) {
	cfg, err := configFrom(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.authMode() != authKubernetes || !slices.Equal(cfg.TokenAudiences, []string{"registry-api"}) || len(cfg.AdminSubjects) != 0 || cfg.ReadAuth {
		t.Errorf("auth defaults: mode %s, audiences %q, admins %q, read auth %v", cfg.authMode(), cfg.TokenAudiences, cfg.AdminSubjects, cfg.ReadAuth)
	}
	if cfg.GCAfter != 15*time.Minute || cfg.LeaderLeaseName != "registry-api" || cfg.LeaderLeaseNamespace != "" ||
		cfg.LeaderLeaseDuration != 15*time.Second || cfg.LeaderLeaseRenewDeadline != 10*time.Second || cfg.LeaderLeaseRetryPeriod != 2*time.Second {
		t.Errorf("upkeep defaults: %+v", cfg)
	}

	if cfg, err = configFrom(t, "REGISTRY_STORE", "memory"); err != nil || cfg.authMode() != authNone {
		t.Errorf("memory store: auth %s, %v; want none", cfg.authMode(), err)
	}

	set := []string{
		"REGISTRY_STORE", "kube",
		"REGISTRY_ADMIN_SUBJECTS", "system:serviceaccount:ops:registrar, group:registry-admins",
		"REGISTRY_TOKEN_AUDIENCES", "registry-api,registry.example.com",
		"REGISTRY_READ_AUTH", "true",
		"REGISTRY_GC_AFTER", "0",
		"REGISTRY_LEASE_DURATION", "4s",
		"REGISTRY_LEASE_RENEW_DEADLINE", "2s",
		"REGISTRY_LEASE_RETRY_PERIOD", "500ms",
	}
	if cfg, err = configFrom(t, set...); err != nil {
		t.Fatal(err)
	}
	if len(cfg.AdminSubjects) != 2 || len(cfg.TokenAudiences) != 2 || !cfg.ReadAuth || cfg.GCAfter != 0 || cfg.LeaderLeaseDuration != 4*time.Second {
		t.Errorf("set: %+v", cfg)
	}
	if _, err := configFrom(t, append(set, "REGISTRY_AUTH", "none")...); err == nil {
		t.Error("REGISTRY_READ_AUTH=true with REGISTRY_AUTH=none was accepted")
	}
}

func TestLeaseNamespace(t *testing.T) {
	for _, tc := range []struct {
		namespaces []string
		lease      string
		getenv     func(string) string
		want       string
		ok         bool
	}{
		{[]string{"firefly", "shop"}, "", envOf(), "firefly", true},
		{[]string{"firefly"}, "", envOf("POD_NAMESPACE", "registry"), "registry", true},
		{[]string{"firefly"}, "ops", envOf("POD_NAMESPACE", "registry"), "ops", true},
		{[]string{"*"}, "", envOf("POD_NAMESPACE", "registry"), "registry", true},
		{[]string{"*"}, "", envOf(), "", false},
	} {
		cfg := Config{Namespaces: tc.namespaces, LeaderLeaseNamespace: tc.lease}
		namespaces, err := cfg.watchedNamespaces()
		if err != nil {
			t.Fatal(err)
		}
		s := settings{Config: cfg, namespaces: namespaces, proc: readProcessEnv(tc.getenv)}
		if got, ok := s.leaderLeaseNamespace(); got != tc.want || ok != tc.ok {
			t.Errorf("%+v: lease namespace %q, %v; want %q, %v", tc, got, ok, tc.want, tc.ok)
		}
	}
	id1, err := leaderIdentity("registry-api-7c9d")
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := leaderIdentity("registry-api-7c9d")
	if id1 == id2 || len(id1) <= len("registry-api-7c9d_") || id1[:len("registry-api-7c9d_")] != "registry-api-7c9d_" {
		t.Errorf("identities %q and %q: want the pod name and a suffix of their own", id1, id2)
	}
}

// On the memory store, a single process, GC runs without an election.
func TestServeCollectsDeadEntriesOnMemoryStore(t *testing.T) {
	dead := `{"proto_count":1,"lease_id":7,"run_date":"2020-01-01 00:00:00","methods":{"/acme.old.v1.Old/Do":true},` +
		`"network":{"sn":"n","internal":"old:8080","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"old","version":"v1"}}`
	live := `{"proto_count":1,"lease_id":8,"run_date":"` + time.Now().UTC().Format(time.DateTime) + `","methods":{"/acme.new.v1.New/Do":true},` +
		`"network":{"sn":"n","internal":"new:8080","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"new","version":"v1"}}`
	seed, err := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "ff-registry-prod", "namespace": "firefly"},
		"data":     map[string]string{"old.7": dead, "new.8": live},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(path, seed, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Seed, cfg.SeedRefresh = path, false
	cfg.TTL = 2 * time.Second
	cfg.GCAfter = time.Hour
	logs := &testkit.Buffer{}
	base, _ := startServe(t, cfg, logs)
	waitReady(t, base)

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := getBody(t, base+"/v1/envs/prod/apps?include=stale")
		var apps struct {
			Apps []struct {
				AppID string `json:"app_id"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(resp, &apps); err != nil {
			t.Fatalf("%v: %s", err, resp)
		}
		var ids []string
		for _, a := range apps.Apps {
			ids = append(ids, a.AppID)
		}
		if slices.Equal(ids, []string{"new"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("apps %q: the dead entry was not collected within 10s\n%s", ids, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `"key":"old.7"`) || !strings.Contains(logs.String(), "removed registry entry") {
		t.Errorf("the removal was not logged:\n%s", logs)
	}
}
