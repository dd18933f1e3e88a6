package export

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/acme/registry-api/internal/model"
)

// The GRPCRoute CRD's limits (gateway-api v1.6.3, standard channel);
// TestLimitsMatchCRD reads them from the CRD itself.
const (
	// MaxRulesPerRoute is spec.rules' maxItems.
	MaxRulesPerRoute = 16
	// MaxMatchesPerRule is spec.rules[].matches' maxItems.
	MaxMatchesPerRule = 64
	// MaxMatchesPerRoute is the CEL rule's cap on matches across a route's rules.
	MaxMatchesPerRoute = 128
	// MaxGrantTargets is a ReferenceGrant's spec.to maxItems.
	MaxGrantTargets = 16
)

// The CRD's CEL rules for an Exact method match.
var (
	grpcService = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	grpcMethod  = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
)

// maxMatchValue is the CRD's maxLength of a match's service and method.
const maxMatchValue = 1024

// splitMethod splits /pkg.Service/Method into what a GRPCRoute matches.
func splitMethod(full string) (service, method string, ok bool) {
	s, m, found := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !found || !strings.HasPrefix(full, "/") || len(s) > maxMatchValue || len(m) > maxMatchValue ||
		!grpcService.MatchString(s) || !grpcMethod.MatchString(m) {
		return "", "", false
	}
	return s, m, true
}

// GatewayAPI is an env's Gateway API export.
type GatewayAPI struct {
	// GRPCRoutes are sorted by namespace and name.
	GRPCRoutes []gatewayv1.GRPCRoute
	// ReferenceGrants let routes reach backends in other namespaces; sorted
	// by namespace and name.
	ReferenceGrants []gatewayv1.ReferenceGrant
	// Skipped are the addresses and methods left out, sorted.
	Skipped []Skipped
}

// grpcMethodRoute is one method of an app's GRPCRoutes.
type grpcMethodRoute struct {
	route           *model.Route
	service, method string
}

// GRPCRoutes builds, for each app, GRPCRoutes in the app's namespace whose
// rules match each method the app wins exactly and send it to the Services
// its addresses name. Methods with the same backends share rules; an app
// with more methods than one route holds gets several routes, <env>.<app>,
// <env>.<app>.2, ..., filled in method order.
//
// A backend in another namespace gets a ReferenceGrant there, naming the
// Service, rather than the route moving to the backend's namespace: the
// route stays with the app that registered it (where its team, its RBAC and
// the Gateway's allowedRoutes look for it), and the grant is the backend
// namespace's explicit, reviewable consent, narrowed to that one Service.
func GRPCRoutes(t *model.RouteTable, o Options) GatewayAPI {
	var out GatewayAPI
	type appGroups struct {
		// groups maps a backend set's key to its backends and methods.
		groups map[string]*backendGroup
	}
	apps := map[string]*appGroups{}
	for i := range t.Routes {
		r := &t.Routes[i]
		ns := o.namespace(r.AppID)
		if len(r.Targets) == 0 {
			out.Skipped = append(out.Skipped, Skipped{App: r.AppID, Method: r.Method, Reason: ReasonNoLiveInstances})
			continue
		}
		svc, meth, ok := splitMethod(r.Method)
		if !ok {
			out.Skipped = append(out.Skipped, Skipped{App: r.AppID, Method: r.Method, Reason: ReasonInvalidMethod})
			continue
		}
		backends := make([]Backend, 0, len(r.Targets))
		for _, tg := range r.Targets {
			b, reason := ParseAddress(tg.Internal, ns)
			if reason != "" {
				out.Skipped = append(out.Skipped, Skipped{App: r.AppID, Method: r.Method, Address: tg.Internal, Reason: reason})
				continue
			}
			backends = append(backends, b)
		}
		if len(backends) == 0 {
			continue
		}
		slices.SortFunc(backends, compareBackends)
		backends = slices.Compact(backends)
		a := apps[r.AppID]
		if a == nil {
			a = &appGroups{groups: map[string]*backendGroup{}}
			apps[r.AppID] = a
		}
		key := backendsKey(backends)
		g := a.groups[key]
		if g == nil {
			g = &backendGroup{key: key, backends: backends}
			a.groups[key] = g
		}
		g.methods = append(g.methods, grpcMethodRoute{route: r, service: svc, method: meth})
	}

	grants := map[[2]string][]string{} // {backend ns, route ns} -> Service names
	for _, app := range slices.Sorted(maps.Keys(apps)) {
		ns := o.namespace(app)
		groups := make([]*backendGroup, 0, len(apps[app].groups))
		for _, g := range apps[app].groups {
			groups = append(groups, g)
			for _, b := range g.backends {
				if b.Namespace != ns {
					k := [2]string{b.Namespace, ns}
					grants[k] = append(grants[k], b.Name)
				}
			}
		}
		slices.SortFunc(groups, func(a, b *backendGroup) int { return cmp.Compare(a.key, b.key) })
		routes := packRoutes(groups)
		for i, rules := range routes {
			out.GRPCRoutes = append(out.GRPCRoutes, o.grpcRoute(app, ns, i+1, len(routes), rules))
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(grants), func(a, b [2]string) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	}) {
		names := grants[k]
		slices.Sort(names)
		names = slices.Compact(names)
		parts := chunk(names, MaxGrantTargets)
		for i, part := range parts {
			out.ReferenceGrants = append(out.ReferenceGrants, o.referenceGrant(k[0], k[1], i+1, len(parts), part))
		}
	}
	sortObjects(out.GRPCRoutes, func(r *gatewayv1.GRPCRoute) *metav1.ObjectMeta { return &r.ObjectMeta })
	sortObjects(out.ReferenceGrants, func(g *gatewayv1.ReferenceGrant) *metav1.ObjectMeta { return &g.ObjectMeta })
	out.Skipped = sortSkipped(out.Skipped)
	return out
}

// backendGroup is an app's methods that go to the same backends.
type backendGroup struct {
	key      string
	backends []Backend
	methods  []grpcMethodRoute
}

func backendsKey(bs []Backend) string {
	var b strings.Builder
	for _, be := range bs {
		b.WriteString(be.Namespace)
		b.WriteByte('/')
		b.WriteString(be.Name)
		b.WriteByte(':')
		fmt.Fprintf(&b, "%05d ", be.Port) // padded: sorts by port
	}
	return b.String()
}

// ruleSpec is one rule before it becomes a GRPCRouteRule.
type ruleSpec struct {
	backends []Backend
	methods  []grpcMethodRoute
}

// packRoutes cuts each group into rules of at most MaxMatchesPerRule
// methods, then fills routes in order, starting a new one when the next
// rule would pass MaxRulesPerRoute or MaxMatchesPerRoute.
func packRoutes(groups []*backendGroup) [][]ruleSpec {
	var routes [][]ruleSpec
	var cur []ruleSpec
	matches := 0
	for _, g := range groups {
		for _, ms := range chunk(g.methods, MaxMatchesPerRule) {
			if len(cur) == MaxRulesPerRoute || matches+len(ms) > MaxMatchesPerRoute {
				routes = append(routes, cur)
				cur, matches = nil, 0
			}
			cur = append(cur, ruleSpec{backends: g.backends, methods: ms})
			matches += len(ms)
		}
	}
	if len(cur) > 0 {
		routes = append(routes, cur)
	}
	return routes
}

func (o *Options) grpcRoute(app, ns string, part, parts int, rules []ruleSpec) gatewayv1.GRPCRoute {
	exact := gatewayv1.GRPCMethodMatchExact
	var conflicts []string
	spec := gatewayv1.GRPCRouteSpec{Rules: make([]gatewayv1.GRPCRouteRule, len(rules))}
	if o.Gateway != nil {
		p := gatewayv1.ParentReference{
			Namespace: ptr(gatewayv1.Namespace(o.Gateway.Namespace)),
			Name:      gatewayv1.ObjectName(o.Gateway.Name),
		}
		if o.Gateway.SectionName != "" {
			p.SectionName = ptr(gatewayv1.SectionName(o.Gateway.SectionName))
		}
		spec.ParentRefs = []gatewayv1.ParentReference{p}
	}
	for i, rs := range rules {
		rule := &spec.Rules[i]
		rule.Matches = make([]gatewayv1.GRPCRouteMatch, len(rs.methods))
		for j, m := range rs.methods {
			rule.Matches[j] = gatewayv1.GRPCRouteMatch{Method: &gatewayv1.GRPCMethodMatch{
				Type: &exact, Service: ptr(m.service), Method: ptr(m.method),
			}}
			if len(m.route.Claimants) > 0 {
				conflicts = append(conflicts, conflictLine(m.route))
			}
		}
		rule.BackendRefs = make([]gatewayv1.GRPCBackendRef, len(rs.backends))
		for j, b := range rs.backends {
			ref := gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(b.Name), Port: ptr(gatewayv1.PortNumber(b.Port))}
			if b.Namespace != ns {
				ref.Namespace = ptr(gatewayv1.Namespace(b.Namespace))
			}
			rule.BackendRefs[j] = gatewayv1.GRPCBackendRef{BackendRef: gatewayv1.BackendRef{BackendObjectReference: ref}}
		}
	}
	slices.Sort(conflicts)
	return gatewayv1.GRPCRoute{
		TypeMeta: metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "GRPCRoute"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        objectName(part, o.Env, app),
			Namespace:   ns,
			Labels:      o.labels(),
			Annotations: o.annotations(app, part, parts, conflicts),
		},
		Spec: spec,
	}
}

// referenceGrant lets GRPCRoutes in namespace from reach the named Services
// in namespace ns.
func (o *Options) referenceGrant(ns, from string, part, parts int, services []string) gatewayv1.ReferenceGrant {
	to := make([]gatewayv1.ReferenceGrantTo, len(services))
	for i, s := range services {
		to[i] = gatewayv1.ReferenceGrantTo{Group: "", Kind: "Service", Name: ptr(gatewayv1.ObjectName(s))}
	}
	return gatewayv1.ReferenceGrant{
		TypeMeta: metav1.TypeMeta{APIVersion: gatewayv1.GroupVersion.String(), Kind: "ReferenceGrant"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        objectName(part, o.Env, "grpcroutes-from-"+from),
			Namespace:   ns,
			Labels:      o.labels(),
			Annotations: o.annotations("", part, parts, nil),
		},
		Spec: gatewayv1.ReferenceGrantSpec{
			From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "GRPCRoute", Namespace: gatewayv1.Namespace(from)}},
			To:   to,
		},
	}
}

func chunk[T any](s []T, n int) [][]T {
	var out [][]T
	for len(s) > n {
		out = append(out, s[:n:n])
		s = s[n:]
	}
	if len(s) > 0 {
		out = append(out, s)
	}
	return out
}

func ptr[T any](v T) *T { return &v }
