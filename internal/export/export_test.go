package export

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/acme/registry-api/internal/model"
)

var subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		addr   string
		want   Backend
		reason string
	}{
		{"pay:9000", Backend{"shop", "pay", 9000}, ""},
		{"pay.billing:9000", Backend{"billing", "pay", 9000}, ""},
		{"pay.billing.svc.cluster.local:9000", Backend{"billing", "pay", 9000}, ""},
		{"pay.billing.svc.cluster.local.:9000", Backend{"billing", "pay", 9000}, ""},
		{"10.0.0.12:9000", Backend{}, ReasonIPLiteral},
		{"[::1]:9000", Backend{}, ReasonIPLiteral},
		{"pay", Backend{}, ReasonNotService},
		{"pay:", Backend{}, ReasonNotService},
		{"pay:0", Backend{}, ReasonNotService},
		{"pay:65536", Backend{}, ReasonNotService},
		{"pay:http", Backend{}, ReasonNotService},
		{"pay.billing.svc:9000", Backend{}, ReasonNotService},
		{"pay.billing.svc.example.org:9000", Backend{}, ReasonNotService},
		{"Pay:9000", Backend{}, ReasonNotService},
		{"9pay:9000", Backend{}, ReasonNotService},
		{"pay.Billing:9000", Backend{}, ReasonNotService},
		{"", Backend{}, ReasonNotService},
	}
	for _, tt := range tests {
		got, reason := ParseAddress(tt.addr, "shop")
		if got != tt.want || reason != tt.reason {
			t.Errorf("ParseAddress(%q) = %+v, %q; want %+v, %q", tt.addr, got, reason, tt.want, tt.reason)
		}
	}
}

func TestSplitMethod(t *testing.T) {
	tests := []struct {
		full, service, method string
		ok                    bool
	}{
		{"/acme.pay.v1.PayService/Charge", "acme.pay.v1.PayService", "Charge", true},
		{"/Svc/M_1", "Svc", "M_1", true},
		{"acme.Svc/M", "", "", false},
		{"/acme.Svc", "", "", false},
		{"/acme.Svc/", "", "", false},
		{"/acme..Svc/M", "", "", false},
		{"/acme.Svc/M/N", "", "", false},
		{"/acme.Svc/1M", "", "", false},
		{"refund", "", "", false},
		{"/" + strings.Repeat("s", 1025) + "/M", "", "", false},
	}
	for _, tt := range tests {
		s, m, ok := splitMethod(tt.full)
		if s != tt.service || m != tt.method || ok != tt.ok {
			t.Errorf("splitMethod(%q) = %q, %q, %v; want %q, %q, %v", tt.full, s, m, ok, tt.service, tt.method, tt.ok)
		}
	}
}

func TestParseParentRef(t *testing.T) {
	tests := []struct {
		in      string
		want    ParentRef
		wantErr bool
	}{
		{"infra/public", ParentRef{"infra", "public", ""}, false},
		{"infra/public/grpc", ParentRef{"infra", "public", "grpc"}, false},
		{"infra/public.gw/grpc.tls", ParentRef{"infra", "public.gw", "grpc.tls"}, false},
		{"public", ParentRef{}, true},
		{"infra/", ParentRef{}, true},
		{"/public", ParentRef{}, true},
		{"infra/public/grpc/x", ParentRef{}, true},
		{"Infra/public", ParentRef{}, true},
		{"infra/public/GRPC", ParentRef{}, true},
		{"infra.x/public", ParentRef{}, true},
	}
	for _, tt := range tests {
		got, err := ParseParentRef(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseParentRef(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParentRef(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestObjectName(t *testing.T) {
	tests := []struct {
		n     int
		parts []string
		want  string
	}{
		{1, []string{"qa", "pay-service"}, "qa.pay-service"},
		{2, []string{"qa", "pay-service"}, "qa.pay-service.2"},
		{12, []string{"qa", "pay-service"}, "qa.pay-service.12"},
	}
	for _, tt := range tests {
		if got := objectName(tt.n, tt.parts...); got != tt.want {
			t.Errorf("objectName(%d, %q) = %q, want %q", tt.n, tt.parts, got, tt.want)
		}
	}
	// Names that are no DNS-1123 subdomain, or too long, are cleaned and
	// keep apart by a hash.
	a, b := objectName(1, "qa", "Pay_Service"), objectName(1, "qa", "pay-service_")
	for _, n := range []string{a, b, objectName(9, "qa", strings.Repeat("a", 300))} {
		if len(n) > 253 || !subdomain.MatchString(n) {
			t.Errorf("objectName gave %q (%d bytes), not a DNS-1123 subdomain", n, len(n))
		}
	}
	if a == b || !strings.HasPrefix(a, "qa.pay-service-") {
		t.Errorf("cleaned names %q and %q: want distinct, prefixed qa.pay-service-", a, b)
	}
}

// route builds a route of app for method with targets at addrs, each with
// one live instance of versions.
func route(app, method string, versions []string, addrs ...string) model.Route {
	r := model.Route{Method: method, AppID: app}
	for _, a := range addrs {
		r.Targets = append(r.Targets, model.RouteTarget{Internal: a, Versions: versions, Instances: 1})
	}
	return r
}

// sample is an env with a conflict, a cross-namespace backend, an IP-only
// method, a down method and an invalid method name.
func sample() *model.RouteTable {
	charge := route("pay-service", "/acme.pay.v1.PayService/Charge", []string{"v1", "v2"}, "pay-service.qa.svc.cluster.local:9000", "10.0.0.12:9000")
	charge.Claimants = []model.Claimant{{AppID: "pay-legacy", Alive: 1}, {AppID: "pay-service", Alive: 2}}
	charge.AppID = "pay-service"
	rs := []model.Route{
		route("audit", "/acme.audit.v1.AuditService/Record", []string{"v1"}, "audit.shop:7000"),
		{Method: "/acme.ghost.v1.GhostService/Boo", AppID: "ghost"},
		charge,
		route("pay-service", "/acme.pay.v1.PayService/Refund", []string{"v1", "v2"}, "pay-service.qa.svc.cluster.local:9000"),
		route("pay-service", "/acme.pay.v1.PayService/Void", []string{"v2"}, "10.0.0.13:9000"),
		route("pay-service", "refund", []string{"v2"}, "pay-service:9000"),
	}
	slices.SortFunc(rs, func(a, b model.Route) int { return strings.Compare(a.Method, b.Method) })
	return &model.RouteTable{Env: "qa", Routes: rs}
}

var sampleOptions = Options{
	Env: "qa", Tag: `"00000000000000ab"`,
	Namespaces: map[string]string{"audit": "qa", "pay-service": "qa", "ghost": "qa"},
	Gateway:    &ParentRef{Namespace: "infra", Name: "public", SectionName: "grpc"},
}

func TestGRPCRoutesSample(t *testing.T) {
	got := GRPCRoutes(sample(), sampleOptions)
	names := []string{}
	for _, r := range got.GRPCRoutes {
		names = append(names, r.Namespace+"/"+r.Name)
	}
	if want := []string{"qa/qa.audit", "qa/qa.pay-service"}; !slices.Equal(names, want) {
		t.Fatalf("routes %v, want %v", names, want)
	}
	audit, pay := got.GRPCRoutes[0], got.GRPCRoutes[1]

	// The audit Service is in namespace shop: the rule names it, and a
	// grant in shop lets GRPCRoutes of qa reach it.
	ref := audit.Spec.Rules[0].BackendRefs[0]
	if ref.Name != "audit" || ref.Namespace == nil || *ref.Namespace != "shop" || *ref.Port != 7000 {
		t.Errorf("audit backend %+v, want shop/audit:7000", ref.BackendObjectReference)
	}
	if len(got.ReferenceGrants) != 1 {
		t.Fatalf("%d grants, want 1", len(got.ReferenceGrants))
	}
	g := got.ReferenceGrants[0]
	if g.Namespace != "shop" || g.Spec.From[0].Namespace != "qa" || g.Spec.From[0].Kind != "GRPCRoute" ||
		len(g.Spec.To) != 1 || *g.Spec.To[0].Name != "audit" || g.Spec.To[0].Kind != "Service" {
		t.Errorf("grant %s/%s %+v: want shop, from GRPCRoutes of qa, to Service audit", g.Namespace, g.Name, g.Spec)
	}

	// pay-service: Charge and Refund share their backend, in one rule; the
	// IP-literal target is left out, and Void, with only that, too.
	if len(pay.Spec.Rules) != 1 {
		t.Fatalf("pay-service has %d rules, want 1: %+v", len(pay.Spec.Rules), pay.Spec.Rules)
	}
	rule := pay.Spec.Rules[0]
	var methods []string
	for _, m := range rule.Matches {
		if *m.Method.Type != gatewayv1.GRPCMethodMatchExact {
			t.Errorf("match type %s, want Exact", *m.Method.Type)
		}
		methods = append(methods, *m.Method.Service+"/"+*m.Method.Method)
	}
	if want := []string{"acme.pay.v1.PayService/Charge", "acme.pay.v1.PayService/Refund"}; !slices.Equal(methods, want) {
		t.Errorf("pay-service matches %v, want %v", methods, want)
	}
	if len(rule.BackendRefs) != 1 || rule.BackendRefs[0].Name != "pay-service" || rule.BackendRefs[0].Namespace != nil {
		t.Errorf("pay-service backends %+v, want pay-service in the route's namespace", rule.BackendRefs)
	}
	p := pay.Spec.ParentRefs
	if len(p) != 1 || p[0].Name != "public" || *p[0].Namespace != "infra" || *p[0].SectionName != "grpc" {
		t.Errorf("parentRefs %+v, want infra/public/grpc", p)
	}
	if c := pay.Annotations[AnnotationConflicts]; c != "/acme.pay.v1.PayService/Charge also claimed by pay-legacy" {
		t.Errorf("conflicts annotation %q", c)
	}
	for k, v := range map[string]string{AnnotationEnv: "qa", AnnotationApp: "pay-service", AnnotationRouteTable: `"00000000000000ab"`} {
		if pay.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, pay.Annotations[k], v)
		}
	}
	if _, ok := pay.Annotations[AnnotationPart]; ok {
		t.Errorf("an unsplit route carries %s", AnnotationPart)
	}
	if pay.Labels[LabelManagedBy] != ManagedBy || pay.Labels[LabelEnv] != "qa" {
		t.Errorf("labels %v", pay.Labels)
	}

	wantSkipped := []Skipped{
		{App: "ghost", Method: "/acme.ghost.v1.GhostService/Boo", Reason: ReasonNoLiveInstances},
		{App: "pay-service", Method: "/acme.pay.v1.PayService/Charge", Address: "10.0.0.12:9000", Reason: ReasonIPLiteral},
		{App: "pay-service", Method: "/acme.pay.v1.PayService/Void", Address: "10.0.0.13:9000", Reason: ReasonIPLiteral},
		{App: "pay-service", Method: "refund", Reason: ReasonInvalidMethod},
	}
	if !slices.Equal(got.Skipped, wantSkipped) {
		t.Errorf("skipped\n%v\nwant\n%v", got.Skipped, wantSkipped)
	}
}

// manyMethods is one app's route table with n methods, all on one Service.
func manyMethods(n int, addrs ...string) *model.RouteTable {
	t := &model.RouteTable{Env: "qa"}
	for i := range n {
		t.Routes = append(t.Routes, route("big", fmt.Sprintf("/acme.big.v1.Big/M%04d", i), []string{"v1"}, addrs...))
	}
	return t
}

func TestGRPCRoutesSplit(t *testing.T) {
	tests := []struct {
		name    string
		table   *model.RouteTable
		matches [][]int // per route, the matches of each rule
	}{
		{"one", manyMethods(1, "big:80"), [][]int{{1}}},
		{"a full rule", manyMethods(64, "big:80"), [][]int{{64}}},
		{"two rules", manyMethods(65, "big:80"), [][]int{{64, 1}}},
		{"a full route", manyMethods(128, "big:80"), [][]int{{64, 64}}},
		{"two routes", manyMethods(129, "big:80"), [][]int{{64, 64}, {1}}},
		{"three routes", manyMethods(300, "big:80"), [][]int{{64, 64}, {64, 64}, {44}}},
		{"rules cap", groups(17, ""), [][]int{slices.Repeat([]int{1}, 16), {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GRPCRoutes(tt.table, Options{Env: "qa"})
			var shape [][]int
			seen := map[string]bool{}
			for i, r := range got.GRPCRoutes {
				var rules []int
				for _, rule := range r.Spec.Rules {
					rules = append(rules, len(rule.Matches))
					for _, m := range rule.Matches {
						seen[*m.Method.Method] = true
					}
				}
				shape = append(shape, rules)
				wantName := objectName(i+1, "qa", "big")
				if r.Name != wantName {
					t.Errorf("route %d named %q, want %q", i, r.Name, wantName)
				}
				part, wantPart := r.Annotations[AnnotationPart], fmt.Sprintf("%d/%d", i+1, len(got.GRPCRoutes))
				if len(got.GRPCRoutes) == 1 {
					wantPart = ""
				}
				if part != wantPart {
					t.Errorf("route %s part %q, want %q", r.Name, part, wantPart)
				}
			}
			if !equalShapes(shape, tt.matches) {
				t.Errorf("rules' matches %v, want %v", shape, tt.matches)
			}
			if len(seen) != len(tt.table.Routes) {
				t.Errorf("%d methods matched, want %d", len(seen), len(tt.table.Routes))
			}
		})
	}
}

// groups is one app whose n methods each go to a Service of their own, so
// that each needs a rule of its own.
func groups(n int, nsSuffix string) *model.RouteTable {
	t := &model.RouteTable{Env: "qa"}
	for i := range n {
		t.Routes = append(t.Routes, route("big", fmt.Sprintf("/acme.big.v1.Big/M%04d", i), []string{"v1"}, fmt.Sprintf("big-%02d%s:80", i, nsSuffix)))
	}
	return t
}

func equalShapes(a, b [][]int) bool {
	return slices.EqualFunc(a, b, func(x, y []int) bool { return slices.Equal(x, y) })
}

func TestGrantSplit(t *testing.T) {
	got := GRPCRoutes(groups(17, ".other"), Options{Env: "qa", Namespaces: map[string]string{"big": "qa"}})
	if len(got.ReferenceGrants) != 2 || len(got.ReferenceGrants[0].Spec.To) != 16 || len(got.ReferenceGrants[1].Spec.To) != 1 {
		t.Fatalf("grants %+v, want 16 Services then 1", got.ReferenceGrants)
	}
	if got.ReferenceGrants[1].Annotations[AnnotationPart] != "2/2" {
		t.Errorf("second grant's part %q", got.ReferenceGrants[1].Annotations[AnnotationPart])
	}
}

func TestDeterministic(t *testing.T) {
	encode := func() []byte {
		gw := GRPCRoutes(sample(), sampleOptions)
		objs, err := gw.Objects()
		if err != nil {
			t.Fatal(err)
		}
		is := IstioObjects(sample(), Options{Env: "qa", VersionHeader: "x-version", Namespaces: sampleOptions.Namespaces})
		more, err := is.Objects()
		if err != nil {
			t.Fatal(err)
		}
		body, err := EncodeList(append(objs, more...))
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	first := encode()
	for range 20 {
		if next := encode(); !bytes.Equal(first, next) {
			t.Fatalf("two exports of the same table differ:\n%s\n%s", first, next)
		}
	}
	for _, absent := range []string{"creationTimestamp", "status"} {
		if bytes.Contains(first, []byte(absent)) {
			t.Errorf("export holds %q: %s", absent, first)
		}
	}
}
