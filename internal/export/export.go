// Package export turns an env's route table into the Kubernetes objects that
// existing gateways read: Gateway API GRPCRoutes (with the ReferenceGrants
// their cross-namespace backends need) and Istio VirtualServices and
// DestinationRules. Building is a pure function of the table and Options:
// the same data gives the same objects in the same order, so an export can
// be reviewed, diffed and applied by server-side apply, by a person or by a
// controller.
package export

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acme/registry-api/internal/model"
)

// Every label and annotation the export writes has this prefix, except the
// well-known managed-by label.
const prefix = "registry.acme.io/"

// Labels and annotations on every exported object.
const (
	// LabelManagedBy marks the objects registry-api writes; a controller
	// selects what it owns by it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is LabelManagedBy's value.
	ManagedBy = "registry-api"
	// LabelEnv is the env, when the env is a valid label value.
	LabelEnv = prefix + "env"
	// AnnotationEnv is the env the object was made for.
	AnnotationEnv = prefix + "env"
	// AnnotationApp is the app whose methods the object routes.
	AnnotationApp = prefix + "app"
	// AnnotationRouteTable is the ETag of the env's routes view the object
	// was made from (GET /v1/envs/{env}/routes).
	AnnotationRouteTable = prefix + "route-table"
	// AnnotationPart is "i/n" when the CRD's limits split one app's routes
	// or one grant into n objects.
	AnnotationPart = prefix + "part"
	// AnnotationConflicts names, one per line, each method of the object
	// that other apps claim too, and who they are.
	AnnotationConflicts = prefix + "conflicts"
)

// Options say what to build for; the zero value builds objects with no
// parentRefs and no version header routes.
type Options struct {
	// Env is the env the route table belongs to.
	Env string
	// Tag is the routes view's ETag for the table, recorded on each object.
	Tag string
	// Namespaces maps each app to the namespace its objects go to (see
	// AppNamespaces); an app missing here is placed in "default".
	Namespaces map[string]string
	// Gateway is the GRPCRoutes' parent; nil leaves them unattached.
	Gateway *ParentRef
	// VersionHeader, when not empty, adds to each VirtualService routes that
	// send a request carrying this header with a live version's name to
	// that version's subset.
	VersionHeader string
}

func (o *Options) namespace(app string) string {
	if ns := o.Namespaces[app]; ns != "" {
		return ns
	}
	return "default"
}

// AppNamespaces is where each app's objects go: the namespace of its
// registry ConfigMap. An app registered from several namespaces goes to the
// first by name, so that the choice does not move with heartbeats.
func AppNamespaces(env *model.EnvIndex) map[string]string {
	out := make(map[string]string, len(env.Apps))
	for id, app := range env.Apps {
		for _, n := range app.Nodes {
			if cur, ok := out[id]; !ok || n.Namespace < cur {
				out[id] = n.Namespace
			}
		}
	}
	return out
}

// Reasons a method's address or version is left out of the export.
const (
	// ReasonIPLiteral: the address is an IP, not a Service.
	ReasonIPLiteral = "ip_literal"
	// ReasonNotService: the address is not svc:port, svc.ns:port or
	// svc.ns.svc.cluster.local:port with valid names and port.
	ReasonNotService = "not_a_service_address"
	// ReasonInvalidMethod: the method name is not /package.Service/Method
	// as a GRPCRoute match accepts it.
	ReasonInvalidMethod = "invalid_method_name"
	// ReasonNoLiveInstances: no claimant of the method has a live
	// instance, so there is nowhere to send it.
	ReasonNoLiveInstances = "no_live_instances"
	// ReasonInvalidVersion: the version cannot name an Istio subset (a
	// DNS-1123 label).
	ReasonInvalidVersion = "invalid_version"
)

// Skipped is one method address (or version) left out of an export, and why.
type Skipped struct {
	App     string `json:"app_id"`
	Method  string `json:"method,omitempty"`
	Address string `json:"address,omitempty"`
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason"`
}

func (s Skipped) String() string {
	var b strings.Builder
	b.WriteString(s.App)
	for _, f := range []string{s.Method, s.Address, s.Version} {
		if f != "" {
			b.WriteByte(' ')
			b.WriteString(f)
		}
	}
	b.WriteString(": ")
	b.WriteString(s.Reason)
	return b.String()
}

// sortSkipped orders s and drops repeats: a version is judged once per
// host, an address once per method.
func sortSkipped(s []Skipped) []Skipped {
	slices.SortFunc(s, func(a, b Skipped) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Method, b.Method),
			cmp.Compare(a.Address, b.Address), cmp.Compare(a.Version, b.Version), cmp.Compare(a.Reason, b.Reason))
	})
	return slices.Compact(s)
}

// ParentRef names the Gateway (and optionally its listener) GRPCRoutes
// attach to: <namespace>/<name>[/<sectionName>].
type ParentRef struct {
	Namespace   string
	Name        string
	SectionName string
}

// ParseParentRef reads <namespace>/<name>[/<sectionName>].
func ParseParentRef(s string) (ParentRef, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ParentRef{}, fmt.Errorf("gateway %q: want <namespace>/<name>[/<sectionName>]", s)
	}
	p := ParentRef{Namespace: parts[0], Name: parts[1]}
	if len(parts) == 3 {
		p.SectionName = parts[2]
		if errs := validation.IsDNS1123Subdomain(p.SectionName); len(errs) > 0 {
			return ParentRef{}, fmt.Errorf("gateway %q: section name: %s", s, errs[0])
		}
	}
	if errs := validation.IsDNS1123Label(p.Namespace); len(errs) > 0 {
		return ParentRef{}, fmt.Errorf("gateway %q: namespace: %s", s, errs[0])
	}
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		return ParentRef{}, fmt.Errorf("gateway %q: name: %s", s, errs[0])
	}
	return p, nil
}

func (p ParentRef) String() string {
	s := p.Namespace + "/" + p.Name
	if p.SectionName != "" {
		s += "/" + p.SectionName
	}
	return s
}

// ValidHeaderName reports whether h can be the Istio version header: a
// lowercase HTTP field name (Istio matches headers in lowercase).
func ValidHeaderName(h string) bool {
	if h == "" || len(h) > 256 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// objectName joins parts with dots into an object name (a DNS-1123
// subdomain of at most 253 bytes). Parts that do not fit are lowercased,
// stripped of other characters and shortened, and then a hash of the
// original parts is appended so that different inputs keep different names.
// n > 1 appends ".n" (the n-th part of a split).
func objectName(n int, parts ...string) string {
	const room = 8 // for ".n"
	name := strings.Join(parts, ".")
	if len(name) > validation.DNS1123SubdomainMaxLength-room || len(validation.IsDNS1123Subdomain(name)) > 0 {
		h := fnv.New32a()
		h.Write([]byte(name))
		clean := sanitize(name)
		sum := fmt.Sprintf("%08x", h.Sum32())
		limit := validation.DNS1123SubdomainMaxLength - room - len(sum) - 1
		if len(clean) > limit {
			clean = strings.TrimRight(clean[:limit], "-.")
		}
		if clean == "" {
			name = "x" + sum
		} else {
			name = clean + "-" + sum
		}
	}
	if n > 1 {
		name += fmt.Sprintf(".%d", n)
	}
	return name
}

// sanitize keeps what a DNS-1123 subdomain allows, lowercased, with every
// other byte a dash and no dash or dot at the ends of a label.
func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.') {
			b[i] = '-'
		}
	}
	labels := strings.Split(string(b), ".")
	kept := labels[:0]
	for _, l := range labels {
		if l = strings.Trim(l, "-"); l != "" {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, ".")
}

// labels are on every object of the export.
func (o *Options) labels() map[string]string {
	l := map[string]string{LabelManagedBy: ManagedBy}
	if len(validation.IsValidLabelValue(o.Env)) == 0 {
		l[LabelEnv] = o.Env
	}
	return l
}

func (o *Options) annotations(app string, part, parts int, conflicts []string) map[string]string {
	a := map[string]string{AnnotationEnv: o.Env}
	if app != "" {
		a[AnnotationApp] = app
	}
	if o.Tag != "" {
		a[AnnotationRouteTable] = o.Tag
	}
	if parts > 1 {
		a[AnnotationPart] = fmt.Sprintf("%d/%d", part, parts)
	}
	if len(conflicts) > 0 {
		a[AnnotationConflicts] = strings.Join(conflicts, "\n")
	}
	return a
}

// conflictLine names the other claimants of a method whose route the
// winner's object holds.
func conflictLine(r *model.Route) string {
	others := make([]string, 0, len(r.Claimants))
	for _, c := range r.Claimants {
		if c.AppID != r.AppID {
			others = append(others, c.AppID)
		}
	}
	return r.Method + " also claimed by " + strings.Join(others, ", ")
}
