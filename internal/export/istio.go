package export

import (
	"cmp"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acme/registry-api/internal/model"
)

// Istio's objects are small local structs rather than istio.io/client-go's
// types: those wrap istio.io/api's protobuf messages, whose JSON comes from
// protojson, which varies its output's whitespace on purpose, while an
// export must be the same bytes for the same data (its ETag is a hash of
// them). The handful of fields used here are checked against Istio's own
// CRD schema by the integration test.

// IstioGroupVersion is the API version of the Istio objects.
const IstioGroupVersion = "networking.istio.io/v1"

// DestinationRule is networking.istio.io/v1 DestinationRule, the fields used.
type DestinationRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              DestinationRuleSpec `json:"spec"`
}

// DestinationRuleSpec names the host and its version subsets.
type DestinationRuleSpec struct {
	Host    string   `json:"host"`
	Subsets []Subset `json:"subsets,omitempty"`
}

// Subset is one version's pods, by their version label.
type Subset struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// VirtualService is networking.istio.io/v1 VirtualService, the fields used.
type VirtualService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              VirtualServiceSpec `json:"spec"`
}

// VirtualServiceSpec routes the host's calls.
type VirtualServiceSpec struct {
	Hosts []string    `json:"hosts"`
	HTTP  []HTTPRoute `json:"http"`
}

// HTTPRoute sends the calls any of its matches select to its destinations.
type HTTPRoute struct {
	Name  string             `json:"name,omitempty"`
	Match []HTTPMatchRequest `json:"match"`
	Route []HTTPDestination  `json:"route"`
}

// HTTPMatchRequest matches a call by path and, optionally, headers.
type HTTPMatchRequest struct {
	URI     StringMatch            `json:"uri"`
	Headers map[string]StringMatch `json:"headers,omitempty"`
}

// StringMatch is an exact string match.
type StringMatch struct {
	Exact string `json:"exact"`
}

// HTTPDestination is where a route sends its calls.
type HTTPDestination struct {
	Destination Destination `json:"destination"`
}

// Destination is a host's port, and a subset of it when set.
type Destination struct {
	Host   string       `json:"host"`
	Subset string       `json:"subset,omitempty"`
	Port   PortSelector `json:"port"`
}

// PortSelector names a Service port by number.
type PortSelector struct {
	Number uint32 `json:"number"`
}

// VersionLabel is the pod label the subsets select by, as the deployment
// guide labels pods.
const VersionLabel = "version"

// Istio is an env's Istio export.
type Istio struct {
	// DestinationRules and VirtualServices are sorted by namespace and name.
	DestinationRules []DestinationRule
	VirtualServices  []VirtualService
	// Skipped are the addresses, methods and versions left out, sorted.
	Skipped []Skipped
}

// istioMethod is one method an app's host serves on one port.
type istioMethod struct {
	route    *model.Route
	versions []string
}

// IstioObjects builds, for each app and each Service host its addresses
// name, a DestinationRule with one subset per live version and a
// VirtualService that matches each of the app's methods exactly
// (/pkg.Service/Method) and sends it to the whole host, so that canary
// weights stay Istio's business. With Options.VersionHeader, routes before
// those send a call carrying the header with a version to that subset.
//
// Both objects go to the Service's namespace: Istio looks a host's
// DestinationRule up there (after the caller's own), and one place per host
// keeps two namespaces from writing rules for the same host.
func IstioObjects(t *model.RouteTable, o Options) Istio {
	var out Istio
	type hostKey struct{ app, host string }
	type hostRoutes struct {
		ns, name string
		// ports maps a port to its methods, in method order.
		ports    map[int32][]istioMethod
		versions map[string]bool
	}
	hosts := map[hostKey]*hostRoutes{}
	for i := range t.Routes {
		r := &t.Routes[i]
		if len(r.Targets) == 0 {
			out.Skipped = append(out.Skipped, Skipped{App: r.AppID, Method: r.Method, Reason: ReasonNoLiveInstances})
			continue
		}
		if _, _, ok := splitMethod(r.Method); !ok {
			out.Skipped = append(out.Skipped, Skipped{App: r.AppID, Method: r.Method, Reason: ReasonInvalidMethod})
			continue
		}
		ns := o.namespace(r.AppID)
		for _, tg := range r.Targets {
			b, reason := ParseAddress(tg.Internal, ns)
			if reason != "" {
				out.Skipped = append(out.Skipped, Skipped{App: r.AppID, Method: r.Method, Address: tg.Internal, Reason: reason})
				continue
			}
			k := hostKey{r.AppID, b.Host()}
			h := hosts[k]
			if h == nil {
				h = &hostRoutes{ns: b.Namespace, name: b.Name, ports: map[int32][]istioMethod{}, versions: map[string]bool{}}
				hosts[k] = h
			}
			var versions []string
			for _, v := range tg.Versions {
				if len(validation.IsDNS1123Label(v)) > 0 {
					out.Skipped = append(out.Skipped, Skipped{App: r.AppID, Address: b.Host(), Version: v, Reason: ReasonInvalidVersion})
					continue
				}
				versions = append(versions, v)
				h.versions[v] = true
			}
			h.ports[b.Port] = append(h.ports[b.Port], istioMethod{route: r, versions: versions})
		}
	}

	keys := slices.SortedFunc(maps.Keys(hosts), func(a, b hostKey) int {
		return cmp.Or(cmp.Compare(a.app, b.app), cmp.Compare(a.host, b.host))
	})
	// An app's first host is named <env>.<app>; a second <env>.<app>.2, ...
	for i, k := range keys {
		n := 1
		for j := i - 1; j >= 0 && keys[j].app == k.app; j-- {
			n++
		}
		h := hosts[k]
		name := objectName(n, o.Env, k.app)
		versions := slices.Sorted(maps.Keys(h.versions))
		var conflicts []string
		dr := DestinationRule{
			TypeMeta:   metav1.TypeMeta{APIVersion: IstioGroupVersion, Kind: "DestinationRule"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Labels: o.labels()},
			Spec:       DestinationRuleSpec{Host: k.host},
		}
		for _, v := range versions {
			dr.Spec.Subsets = append(dr.Spec.Subsets, Subset{Name: v, Labels: map[string]string{VersionLabel: v}})
		}
		vs := VirtualService{
			TypeMeta:   metav1.TypeMeta{APIVersion: IstioGroupVersion, Kind: "VirtualService"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Labels: o.labels()},
			Spec:       VirtualServiceSpec{Hosts: []string{k.host}},
		}
		ports := slices.Sorted(maps.Keys(h.ports))
		if o.VersionHeader != "" {
			for _, p := range ports {
				for _, v := range versions {
					hr := HTTPRoute{Route: []HTTPDestination{{Destination: Destination{Host: k.host, Subset: v, Port: PortSelector{Number: uint32(p)}}}}}
					for _, m := range h.ports[p] {
						if slices.Contains(m.versions, v) {
							hr.Match = append(hr.Match, HTTPMatchRequest{URI: StringMatch{Exact: m.route.Method},
								Headers: map[string]StringMatch{o.VersionHeader: {Exact: v}}})
						}
					}
					if len(hr.Match) > 0 {
						vs.Spec.HTTP = append(vs.Spec.HTTP, hr)
					}
				}
			}
		}
		for _, p := range ports {
			hr := HTTPRoute{Route: []HTTPDestination{{Destination: Destination{Host: k.host, Port: PortSelector{Number: uint32(p)}}}}}
			for _, m := range h.ports[p] {
				hr.Match = append(hr.Match, HTTPMatchRequest{URI: StringMatch{Exact: m.route.Method}})
				if len(m.route.Claimants) > 0 {
					conflicts = append(conflicts, conflictLine(m.route))
				}
			}
			vs.Spec.HTTP = append(vs.Spec.HTTP, hr)
		}
		slices.Sort(conflicts)
		dr.Annotations = o.annotations(k.app, 0, 0, nil)
		vs.Annotations = o.annotations(k.app, 0, 0, conflicts)
		out.DestinationRules = append(out.DestinationRules, dr)
		out.VirtualServices = append(out.VirtualServices, vs)
	}
	sortObjects(out.DestinationRules, func(d *DestinationRule) *metav1.ObjectMeta { return &d.ObjectMeta })
	sortObjects(out.VirtualServices, func(v *VirtualService) *metav1.ObjectMeta { return &v.ObjectMeta })
	out.Skipped = sortSkipped(out.Skipped)
	return out
}

// sortObjects orders objects by namespace and name.
func sortObjects[T any](s []T, meta func(*T) *metav1.ObjectMeta) {
	slices.SortFunc(s, func(a, b T) int {
		ma, mb := meta(&a), meta(&b)
		return cmp.Or(cmp.Compare(ma.Namespace, mb.Namespace), cmp.Compare(ma.Name, mb.Name))
	})
}
