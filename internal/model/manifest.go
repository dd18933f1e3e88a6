package model

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/acme/registry-api/internal/httprule"
)

// ManifestSchema is the schema of the gateway manifests that
// protoc-gen-gateway-manifest generates (gateway.manifest.json).
const ManifestSchema = "firefly.gateway.manifest.v1"

// MemberHTTP is the top-level entry member that keeps a registration's HTTP
// bindings (an HTTPBindings). The Go library skips it, as every member it
// does not know.
const MemberHTTP = "http"

// Limits of a manifest, beyond the body's.
const (
	// MaxDescriptorRef bounds descriptor_ref, a URL.
	MaxDescriptorRef = 2048
	// MaxPathTemplate bounds a route's path template.
	MaxPathTemplate = 1024
	// maxHTTPMethod bounds a custom HTTP method's name.
	maxHTTPMethod = 20
)

// Manifest is a gateway manifest as the generator writes it.
type Manifest struct {
	Schema string `json:"schema"`
	// DescriptorRef says where the service's descriptor set is, for a
	// transcoder; optional.
	DescriptorRef string            `json:"descriptor_ref,omitempty"`
	Services      []ManifestService `json:"services"`
	Routes        []ManifestRoute   `json:"routes"`
}

// ManifestService is a gRPC service and every one of its methods, by full
// name.
type ManifestService struct {
	Name    string   `json:"name"`
	Methods []string `json:"methods"`
}

// ManifestRoute is one google.api.http binding of a method.
type ManifestRoute struct {
	HTTPMethod string `json:"http_method"`
	Path       string `json:"path"`
	FullMethod string `json:"full_method"`
}

// Binding is a route as an entry keeps it: its path template in canonical
// form (httprule.Template.String), so that equal bindings compare equal.
type Binding struct {
	HTTPMethod string `json:"http_method"`
	Path       string `json:"path"`
	FullMethod string `json:"full_method"`
}

// HTTPBindings is what an entry keeps of its manifest beside its methods,
// under MemberHTTP.
type HTTPBindings struct {
	DescriptorRef string `json:"descriptor_ref,omitempty"`
	// Bindings are sorted by path, then HTTP method.
	Bindings []Binding `json:"bindings"`
}

// ManifestContent is what a registration takes from a manifest.
type ManifestContent struct {
	// Methods are services[].methods, sorted, without duplicates.
	Methods []string
	// Services is how many services the manifest lists, the entry's
	// proto_count.
	Services int
	HTTP     HTTPBindings
}

// ParseManifest reads and validates a manifest, as the file holds it. It
// refuses, with an *Error whose message names the offending member (for
// example manifest.routes[3].path), a manifest that is not JSON of the
// manifest's shape (unknown members included), of another schema, with a
// malformed service or method name, a method listed under another service,
// a descriptor_ref that is not an absolute URL, a route whose HTTP method
// is not one, whose path is not a valid template or whose full_method is
// not in services[], and two routes of the same HTTP method whose templates
// match the same paths (httprule.Template.Pattern).
func ParseManifest(raw []byte) (*ManifestContent, error) {
	var m Manifest
	if err := decodeStrict(raw, &m); err != nil {
		return nil, err
	}
	if m.Schema != ManifestSchema {
		if m.Schema == "" {
			return nil, Errorf(CodeInvalid, "manifest.schema: missing; the schema must be %s", ManifestSchema)
		}
		return nil, Errorf(CodeInvalid, "manifest.schema: %q is not %s", m.Schema, ManifestSchema)
	}
	if err := checkDescriptorRef(m.DescriptorRef); err != nil {
		return nil, err
	}
	out := &ManifestContent{Services: len(m.Services), HTTP: HTTPBindings{DescriptorRef: m.DescriptorRef}}
	for i, s := range m.Services {
		at := fmt.Sprintf("manifest.services[%d]", i)
		if !ValidServiceName(s.Name) {
			return nil, Errorf(CodeInvalid, "%s.name: %q is not a full gRPC service name (<package>.<Service>)", at, s.Name)
		}
		if j := slices.IndexFunc(m.Services[:i], func(o ManifestService) bool { return o.Name == s.Name }); j >= 0 {
			return nil, Errorf(CodeInvalid, "%s.name: service %s is listed twice (services[%d])", at, s.Name, j)
		}
		for j, method := range s.Methods {
			if !ValidMethodName(method) {
				return nil, Errorf(CodeMalformedMethod, "%s.methods[%d]: %q is not a full gRPC method name (/<package>.<Service>/<Method>)", at, j, method)
			}
			if ServiceOf(method) != s.Name {
				return nil, Errorf(CodeInvalid, "%s.methods[%d]: %s is not a method of service %s", at, j, method, s.Name)
			}
			out.Methods = append(out.Methods, method)
		}
	}
	slices.Sort(out.Methods)
	out.Methods = slices.Compact(out.Methods)
	bindings, err := manifestBindings(m.Routes, out.Methods)
	if err != nil {
		return nil, err
	}
	out.HTTP.Bindings = bindings
	return out, nil
}

// manifestBindings validates routes against methods, sorted, and returns
// them in canonical form.
func manifestBindings(routes []ManifestRoute, methods []string) ([]Binding, error) {
	type key struct{ httpMethod, pattern string }
	seen := make(map[key]int, len(routes))
	bindings := make([]Binding, 0, len(routes))
	for i, r := range routes {
		at := fmt.Sprintf("manifest.routes[%d]", i)
		if err := checkHTTPMethod(r.HTTPMethod); err != nil {
			return nil, Errorf(CodeInvalid, "%s.http_method: %v", at, err)
		}
		if len(r.Path) > MaxPathTemplate {
			return nil, Errorf(CodeInvalid, "%s.path: longer than %d bytes", at, MaxPathTemplate)
		}
		tmpl, err := httprule.Parse(r.Path)
		if err != nil {
			return nil, Errorf(CodeInvalid, "%s.path: %v", at, err)
		}
		if !ValidMethodName(r.FullMethod) {
			return nil, Errorf(CodeMalformedMethod, "%s.full_method: %q is not a full gRPC method name (/<package>.<Service>/<Method>)", at, r.FullMethod)
		}
		if _, found := slices.BinarySearch(methods, r.FullMethod); !found {
			return nil, Errorf(CodeInvalid, "%s.full_method: %s is not among services[].methods", at, r.FullMethod)
		}
		k := key{r.HTTPMethod, tmpl.Pattern()}
		if j, dup := seen[k]; dup {
			return nil, Errorf(CodeInvalid, "%s: %s %s matches the same requests as routes[%d] (%s %s)", at, r.HTTPMethod, r.Path, j, routes[j].HTTPMethod, routes[j].Path)
		}
		seen[k] = i
		bindings = append(bindings, Binding{HTTPMethod: r.HTTPMethod, Path: tmpl.String(), FullMethod: r.FullMethod})
	}
	slices.SortFunc(bindings, compareBindings)
	return bindings, nil
}

func compareBindings(a, b Binding) int {
	return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(a.HTTPMethod, b.HTTPMethod))
}

// ReadHTTPBindings reads an entry's MemberHTTP value, which an older writer
// or a hand edit may have left in any shape: bindings it cannot use (an HTTP
// method that is not one, a malformed template or gRPC method name) are
// dropped and reported by dropped; the paths of the rest are made
// canonical. An error means the value is not an HTTPBindings at all.
func ReadHTTPBindings(raw []byte) (h HTTPBindings, dropped int, err error) {
	if err := json.Unmarshal(raw, &h); err != nil {
		return HTTPBindings{}, 0, fmt.Errorf("read entry member %q: %w", MemberHTTP, err)
	}
	kept := h.Bindings[:0]
	for _, b := range h.Bindings {
		tmpl, err := httprule.Parse(b.Path)
		if err != nil || checkHTTPMethod(b.HTTPMethod) != nil || !ValidMethodName(b.FullMethod) {
			dropped++
			continue
		}
		b.Path = tmpl.String()
		kept = append(kept, b)
	}
	h.Bindings = kept
	slices.SortFunc(h.Bindings, compareBindings)
	return h, dropped, nil
}

// decodeStrict reads one JSON object into m, refusing unknown and repeated
// members, and turns the decoder's complaints into messages that name the
// member. It decodes with encoding/json/v2's reference implementation
// because its errors carry the JSON pointer of the offending value,
// indexes included.
func decodeStrict(raw []byte, m *Manifest) error {
	err := jsonv2.Unmarshal(raw, m, jsonv2.RejectUnknownMembers(true))
	if err == nil {
		return nil
	}
	var semantic *jsonv2.SemanticError
	var syntactic *jsontext.SyntacticError
	msg := "manifest: not a gateway manifest"
	switch {
	case len(bytes.TrimSpace(raw)) == 0:
		msg = "manifest: empty"
	case errors.As(err, &syntactic) && errors.Is(err, jsontext.ErrDuplicateName):
		msg = memberPath(syntactic.JSONPointer) + ": given twice"
	case errors.As(err, &syntactic):
		msg = fmt.Sprintf("manifest: not valid JSON at byte %d", syntactic.ByteOffset)
	case errors.As(err, &semantic) && errors.Is(err, jsonv2.ErrUnknownName):
		msg = memberPath(semantic.JSONPointer) + ": unknown member"
	case errors.As(err, &semantic) && semantic.GoType != nil:
		msg = fmt.Sprintf("%s: a JSON %s where %s belongs", memberPath(semantic.JSONPointer), jsonKind(semantic.JSONKind), goKind(semantic.GoType.Kind()))
	}
	return &Error{Code: CodeInvalid, Message: msg, Err: err}
}

// memberPath writes a JSON pointer into a manifest as a path in the style
// of the other messages: manifest.routes[3].path.
func memberPath(p jsontext.Pointer) string {
	var b strings.Builder
	b.WriteString("manifest")
	for tok := range p.Tokens() {
		if tok != "" && strings.Trim(tok, "0123456789") == "" {
			b.WriteString("[" + tok + "]")
		} else {
			b.WriteString("." + tok)
		}
	}
	return b.String()
}

func jsonKind(k jsontext.Kind) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	}
	return k.String()
}

func goKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct:
		return "an object"
	}
	return k.String()
}

// checkDescriptorRef accepts an absent descriptor_ref or an absolute URL.
func checkDescriptorRef(ref string) error {
	if ref == "" {
		return nil
	}
	if len(ref) > MaxDescriptorRef {
		return Errorf(CodeInvalid, "manifest.descriptor_ref: longer than %d bytes", MaxDescriptorRef)
	}
	u, err := url.Parse(ref)
	if err != nil || !u.IsAbs() || strings.ContainsFunc(ref, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return Errorf(CodeInvalid, "manifest.descriptor_ref: %q is not an absolute URL", ref)
	}
	return nil
}

// checkHTTPMethod accepts GET, PUT, POST, DELETE, PATCH and a custom method
// (google.api.http's custom kind, HEAD or OPTIONS for example) written as
// an upper-case token. The wildcard kind "*" is refused: a binding of every
// method would conflict with every other binding of its path.
func checkHTTPMethod(m string) error {
	switch {
	case m == "":
		return errors.New("missing")
	case m == "*":
		return errors.New(`the wildcard method "*" is not supported; bind each method`)
	case len(m) > maxHTTPMethod:
		return fmt.Errorf("longer than %d bytes", maxHTTPMethod)
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; !('A' <= c && c <= 'Z' || i > 0 && c == '-') {
			return fmt.Errorf("%q is not an HTTP method in upper case (GET, PUT, POST, DELETE, PATCH or a custom one)", m)
		}
	}
	return nil
}

// ValidServiceName reports whether s is a full gRPC service name:
// <package>.<Service>, dot-separated identifiers, as ValidMethodName has it
// before its method.
func ValidServiceName(s string) bool {
	return ValidMethodName("/" + s + "/M")
}
