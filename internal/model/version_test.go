package model_test

import (
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

func TestServiceKept(t *testing.T) {
	base := `{"proto_count":1,"lease_id":6269228576280924363,"run_date":"2026-11-26 12:24:22","methods":{"/acme.catalog.v1.CatalogService/GetItem":true},` +
		`"network":{"sn":"","internal":"catalog-service:9000","external":""},"kernel":{"language":"","version":""},"meta":{"env":"prod","app_id":"catalog-service","version":"v1"}`
	for _, tc := range []struct {
		extra string
		want  bool
	}{
		{``, false},
		{`,"keepalive":"service"`, true},
		{`,"keepalive":"pod"`, false},
		{`,"Keepalive":"service"`, true},
		{`,"keepalive":"serv\u0069ce"`, true},
		{`,"keepalive":7`, false},
		{`,"keepalive":"service","keepalive":null`, false},
	} {
		n, _, err := model.ParseEntry("firefly", "prod", "catalog-service.6269228576280924363", []byte(base+tc.extra+"}"), model.ParseOptions{})
		if err != nil {
			t.Fatalf("%s: %v", tc.extra, err)
		}
		if n.ServiceKept != tc.want {
			t.Errorf("entry with %s: ServiceKept %v, want %v", tc.extra, n.ServiceKept, tc.want)
		}
	}
}

// The lease id of a version is part of its key: it must never change.
func TestVersionLeaseID(t *testing.T) {
	for _, tc := range []struct {
		app, version string
		want         int64
	}{
		{"catalog-service", "v1", 6269228576280924363},
		{"catalog-service", "v2", 3523594815808333491},
	} {
		if got := model.VersionLeaseID(tc.app, tc.version); got != tc.want {
			t.Errorf("model.VersionLeaseID(%s, %s) = %d, want %d", tc.app, tc.version, got, tc.want)
		}
	}
	if model.VersionLeaseID("a", "bc") == model.VersionLeaseID("ab", "c") {
		t.Error("the app and the version are not kept apart")
	}
}

func TestParseServiceAddress(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want model.ServiceRef
		err  string
	}{
		{addr: "catalog:9000", want: model.ServiceRef{Name: "catalog"}},
		{addr: "catalog.shop:9000", want: model.ServiceRef{Namespace: "shop", Name: "catalog"}},
		{addr: "catalog.shop.svc:9000", want: model.ServiceRef{Namespace: "shop", Name: "catalog"}},
		{addr: "catalog.shop.svc.cluster.local:9000", want: model.ServiceRef{Namespace: "shop", Name: "catalog"}},
		{addr: "10.1.2.3:9000", err: "IP address"},
		{addr: "[::1]:9000", err: "IP address"},
		{addr: "catalog", err: "not host:port"},
		{addr: "catalog:http", err: "port"},
		{addr: "catalog:70000", err: "port"},
		{addr: "api.example.com:443", err: "not the DNS name of a Kubernetes Service"},
		{addr: "catalog.shop.svc.example.org:9000", err: "not the DNS name of a Kubernetes Service"},
		{addr: "9catalog:9000", err: "Service name"},
		{addr: "catalog.Shop:9000", err: "namespace name"},
	} {
		got, err := model.ParseServiceAddress(tc.addr)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.addr, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("%s = %+v, want %+v", tc.addr, got, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.addr, err, tc.err)
		}
	}
}
