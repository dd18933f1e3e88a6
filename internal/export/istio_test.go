package export

import (
	"slices"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

func TestIstioSample(t *testing.T) {
	tests := []struct {
		name   string
		header string
		// http is, per HTTP route of pay-service's VirtualService, its
		// subset ("" for the whole host) and its matches' count.
		http []string
	}{
		{"no header", "", []string{":2"}},
		{"version header", "x-version", []string{"v1:2", "v2:2", ":2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := IstioObjects(sample(), Options{Env: "qa", Tag: `"ab"`, VersionHeader: tt.header, Namespaces: sampleOptions.Namespaces})
			var names []string
			for _, d := range got.DestinationRules {
				names = append(names, d.Namespace+"/"+d.Name+" "+d.Spec.Host)
			}
			// Each goes to its Service's namespace: audit's is shop.
			if want := []string{"qa/qa.pay-service pay-service.qa.svc.cluster.local", "shop/qa.audit audit.shop.svc.cluster.local"}; !slices.Equal(names, want) {
				t.Fatalf("destination rules %v, want %v", names, want)
			}
			dr := got.DestinationRules[0]
			if len(dr.Spec.Subsets) != 2 || dr.Spec.Subsets[1].Name != "v2" || dr.Spec.Subsets[1].Labels[VersionLabel] != "v2" {
				t.Errorf("subsets %+v, want v1 and v2 by their version label", dr.Spec.Subsets)
			}
			vs := got.VirtualServices[0]
			if vs.Name != "qa.pay-service" || !slices.Equal(vs.Spec.Hosts, []string{"pay-service.qa.svc.cluster.local"}) {
				t.Fatalf("virtual service %s for %v", vs.Name, vs.Spec.Hosts)
			}
			var shape []string
			for _, h := range vs.Spec.HTTP {
				d := h.Route[0].Destination
				if d.Host != "pay-service.qa.svc.cluster.local" || d.Port.Number != 9000 {
					t.Errorf("destination %+v", d)
				}
				shape = append(shape, d.Subset+":"+string(rune('0'+len(h.Match))))
				for _, m := range h.Match {
					if want := d.Subset; m.Headers[tt.header].Exact != want || (want == "" && m.Headers != nil) {
						t.Errorf("route to subset %q matches headers %v", want, m.Headers)
					}
				}
			}
			if !slices.Equal(shape, tt.http) {
				t.Errorf("http routes %v, want %v", shape, tt.http)
			}
			last := vs.Spec.HTTP[len(vs.Spec.HTTP)-1]
			if last.Match[0].URI.Exact != "/acme.pay.v1.PayService/Charge" || last.Match[1].URI.Exact != "/acme.pay.v1.PayService/Refund" {
				t.Errorf("default route matches %+v", last.Match)
			}
			if c := vs.Annotations[AnnotationConflicts]; c != "/acme.pay.v1.PayService/Charge also claimed by pay-legacy" {
				t.Errorf("conflicts annotation %q", c)
			}
			if vs.Annotations[AnnotationRouteTable] != `"ab"` || vs.Labels[LabelManagedBy] != ManagedBy {
				t.Errorf("metadata %+v", vs.ObjectMeta)
			}
		})
	}
}

func TestIstioSkipsVersions(t *testing.T) {
	tab := &model.RouteTable{Env: "qa", Routes: []model.Route{
		route("pay", "/acme.Pay/Charge", []string{"", "V1.0", "v1"}, "pay:9000"),
		route("pay", "/acme.Pay/Refund", []string{"V1.0"}, "pay:9000"),
	}}
	got := IstioObjects(tab, Options{Env: "qa", VersionHeader: "x-version", Namespaces: map[string]string{"pay": "qa"}})
	if s := got.DestinationRules[0].Spec.Subsets; len(s) != 1 || s[0].Name != "v1" {
		t.Errorf("subsets %+v, want v1 only", s)
	}
	want := []Skipped{
		{App: "pay", Address: "pay.qa.svc.cluster.local", Reason: ReasonInvalidVersion},
		{App: "pay", Address: "pay.qa.svc.cluster.local", Version: "V1.0", Reason: ReasonInvalidVersion},
	}
	if !slices.Equal(got.Skipped, want) {
		t.Errorf("skipped %v, want %v", got.Skipped, want)
	}
}

func TestIstioSecondHost(t *testing.T) {
	tab := &model.RouteTable{Env: "qa", Routes: []model.Route{
		route("pay", "/acme.Pay/Charge", []string{"v1"}, "pay:9000", "pay-canary:9000"),
	}}
	got := IstioObjects(tab, Options{Env: "qa", Namespaces: map[string]string{"pay": "qa"}})
	var names []string
	for _, v := range got.VirtualServices {
		names = append(names, v.Name+" "+v.Spec.Hosts[0])
	}
	if want := []string{"qa.pay pay-canary.qa.svc.cluster.local", "qa.pay.2 pay.qa.svc.cluster.local"}; !slices.Equal(names, want) {
		t.Errorf("virtual services %v, want %v", names, want)
	}
}
