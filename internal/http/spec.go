package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"sigs.k8s.io/yaml"

	registryapi "github.com/acme/registry-api"
	"github.com/acme/registry-api/internal/model"
)

// apiSpec is openapi.yaml loaded once: what /openapi.* serve and what
// requests are validated against.
type apiSpec struct {
	doc      *openapi3.T
	yaml     []byte
	json     []byte
	yamlETag []string
	jsonETag []string
	// ops binds each route to its operation; written only while the server
	// is built.
	ops  map[routeKey]*operation
	opts *openapi3filter.Options
}

// operation is a route's operation in the document, ready for openapi3filter.
type operation struct {
	route *routers.Route
	// params are the operation's parameters, the path item's included.
	params []paramCheck
	body   *openapi3.RequestBody
	// maxBody caps the request body, in bytes.
	maxBody int64
}

// bodyLimits caps the body of every operation that takes one; openapi.yaml
// states each limit in its 413 answer. An operation with a body and no
// limit here fails at startup.
var bodyLimits = map[string]int64{
	"registerInstance": maxRegisterBody,
	"registerVersion":  maxRegisterBody,
	"resolveMethods":   maxResolveBody,
}

// paramCheck validates one parameter. A present plain-string parameter is
// checked against its compiled schema directly, as openapi3filter would
// after decoding it; that spares the decoding's allocations on the hot path.
// Anything else goes through openapi3filter.ValidateParameter.
type paramCheck struct {
	param *openapi3.Parameter
	// str is the schema of a plain string parameter, nil otherwise.
	str *openapi3.Schema
	// accept, when set, accepts without kin a value that str provably
	// accepts (see fastAcceptor); a value it does not accept goes to kin,
	// which says what is wrong with it.
	accept func(string) bool
	// chiKey is the chi URL parameter that carries a path parameter.
	chiKey string
	// header is a header parameter's canonical name.
	header string
}

// specPaths maps the chi patterns that the document spells differently:
// a gRPC method holds slashes, so its route is a catch-all.
var specPaths = map[string]string{
	"/v1/envs/{env}/methods/*": "/v1/envs/{env}/methods/{method}",
	"/docs/*":                  "/docs/",
}

// specPath returns the document's path for a chi route pattern.
func specPath(pattern string) string {
	if p, ok := specPaths[pattern]; ok {
		return p
	}
	return pattern
}

func loadSpec() (*apiSpec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(registryapi.OpenAPISpec)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.yaml is invalid: %w", err)
	}
	js, err := yaml.YAMLToJSON(registryapi.OpenAPISpec)
	if err != nil {
		return nil, fmt.Errorf("convert openapi.yaml to JSON: %w", err)
	}
	return &apiSpec{
		doc:      doc,
		yaml:     registryapi.OpenAPISpec,
		json:     js,
		yamlETag: []string{bodyETag(registryapi.OpenAPISpec)},
		jsonETag: []string{bodyETag(js)},
		ops:      make(map[routeKey]*operation),
		// Defaults would rewrite requests, and this API declares none. The
		// document's security requirements are the authenticate
		// middleware's, which runs before validation; kin's own check would
		// read the whole body before its size limit applies.
		opts: &openapi3filter.Options{SkipSettingDefaults: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}, nil
}

// bind finds the operation that serves method on the chi pattern; HEAD is
// validated as the GET operation, as the document's description says.
func (s *apiSpec) bind(method, pattern string) error {
	path := specPath(pattern)
	item := s.doc.Paths.Value(path)
	if item == nil {
		return fmt.Errorf("route %s %s: path %s is not in openapi.yaml", method, pattern, path)
	}
	op := item.GetOperation(routeMethod(method))
	if op == nil {
		return fmt.Errorf("route %s %s: openapi.yaml has no %s operation on %s", method, pattern, method, path)
	}
	o := &operation{
		route: &routers.Route{
			Spec:      s.doc,
			Path:      path,
			PathItem:  item,
			Method:    method,
			Operation: op,
		},
	}
	if op.RequestBody != nil {
		o.body = op.RequestBody.Value
		limit, ok := bodyLimits[op.OperationID]
		if !ok {
			return fmt.Errorf("route %s %s: operation %s takes a body but has no size limit", method, pattern, op.OperationID)
		}
		o.maxBody = limit
	}
	params := slices.Clone(op.Parameters)
	for _, ref := range item.Parameters {
		if op.Parameters.GetByInAndName(ref.Value.In, ref.Value.Name) == nil {
			params = append(params, ref)
		}
	}
	for _, ref := range params {
		p := ref.Value
		pc := paramCheck{param: p}
		if p.Content == nil && p.Schema != nil && plainString(p.Schema.Value) && (p.Style == "" || p.Style == openapi3.SerializationSimple) {
			pc.str = p.Schema.Value
			pc.accept = fastAcceptor(pc.str)
		}
		switch p.In {
		case openapi3.ParameterInPath:
			pc.chiKey = p.Name
			if !strings.Contains(pattern, "{"+p.Name+"}") {
				if !strings.HasSuffix(pattern, "/*") {
					return fmt.Errorf("route %s %s: no chi parameter carries path parameter %q", method, pattern, p.Name)
				}
				pc.chiKey = "*"
			}
		case openapi3.ParameterInHeader:
			pc.header = http.CanonicalHeaderKey(p.Name)
		}
		o.params = append(o.params, pc)
	}
	s.ops[routeKey{method, pattern}] = o
	return nil
}

// plainString reports whether a value of schema is validated as is, without
// decoding.
func plainString(schema *openapi3.Schema) bool {
	return schema.Type.Is(openapi3.TypeString) && schema.AllOf == nil && schema.AnyOf == nil && schema.OneOf == nil && schema.Not == nil
}

// patternMatchers match, without a regexp, the patterns of the parameters
// that every read carries (env, app id, gRPC method, service): kin's
// regexp was a fifth of a resolution's time in the handler (BENCHMARKS.md,
// "Small reads"). Each accepts
// exactly what its pattern's regexp accepts (TestPatternMatchers); a schema
// with any other pattern is left to kin.
var patternMatchers = map[string]func(string) bool{
	`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`:                                              isDNSLabel,
	`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`:            isDNSSubdomain,
	`^/?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/[A-Za-z_][A-Za-z0-9_]*$`: isMethodPathValue,
	`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`:                          isDottedName,
}

// fastAcceptor returns a check that accepts only values schema accepts, or
// nil when schema asks for more than it can judge. It accepts ASCII only,
// whose length in UTF-16 (what JSON Schema counts) is its length in bytes.
func fastAcceptor(schema *openapi3.Schema) func(string) bool {
	if schema.Format != "" || len(schema.Enum) > 0 || !schema.Type.Is(openapi3.TypeString) {
		return nil
	}
	match := isASCII
	if schema.Pattern != "" {
		if match = patternMatchers[schema.Pattern]; match == nil {
			return nil
		}
	}
	minLen, maxLen := schema.MinLength, uint64(math.MaxInt)
	if schema.MaxLength != nil {
		maxLen = *schema.MaxLength
	}
	return func(v string) bool {
		return uint64(len(v)) >= minLen && uint64(len(v)) <= maxLen && isASCII(v) && match(v)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// isMethodPathValue matches a gRPC method name with or without its leading
// slash. The router hands it the name with its slash, so the hot path
// allocates nothing.
func isMethodPathValue(s string) bool {
	if strings.HasPrefix(s, "/") {
		return model.ValidMethodName(s)
	}
	return s != "" && model.ValidMethodName("/"+s)
}

// isDNSLabel matches ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$.
func isDNSLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isDNSSubdomain matches dot-separated DNS labels.
func isDNSSubdomain(s string) bool {
	for {
		label, rest, more := strings.Cut(s, ".")
		if !isDNSLabel(label) {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

// isDottedName matches dot-separated identifiers ([A-Za-z_][A-Za-z0-9_]*),
// a gRPC service's full name.
func isDottedName(s string) bool {
	for {
		part, rest, more := strings.Cut(s, ".")
		if part == "" || part[0] >= '0' && part[0] <= '9' {
			return false
		}
		for i := 0; i < len(part); i++ {
			if c := part[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
		if !more {
			return true
		}
		s = rest
	}
}

// noQuery stands for an absent query string, sparing openapi3filter a parse.
var noQuery = url.Values{}

// plainQuery reports whether url.ParseQuery would read raw as written: it
// has no escapes to decode, no '+' for a space and no ';', which makes
// ParseQuery fail. Such a query is read in place, with no map built.
func plainQuery(raw string) bool {
	return !strings.ContainsAny(raw, "%+;")
}

// plainQueryValue returns the first value of name in a plainQuery and how
// many times name occurs, as url.ParseQuery would see them.
func plainQueryValue(raw, name string) (first string, n int) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		key, value, _ := strings.Cut(pair, "=")
		if pair == "" || key != name {
			continue
		}
		if n == 0 {
			first = value
		}
		n++
	}
	return first, n
}

// validateRequest checks r against its route's operation; chi has routed r.
func (s *apiSpec) validateRequest(w http.ResponseWriter, r *http.Request) error {
	op := s.ops[routeKey{r.Method, r.Pattern}]
	if op == nil {
		return nil // not a route of the validated group
	}
	ctx := r.Context()
	// openapi3filter's input is built only for the checks that need it.
	var in *openapi3filter.RequestValidationInput
	input := func() (*openapi3filter.RequestValidationInput, error) {
		if in != nil {
			return in, nil
		}
		var err error
		in, err = s.input(r, op)
		return in, err
	}

	var query url.Values
	plain := plainQuery(r.URL.RawQuery)
	if !plain {
		// url.Values drops what it cannot decode: a filter written
		// ?include=%zz would be ignored, not refused.
		var err error
		if query, err = url.ParseQuery(r.URL.RawQuery); err != nil {
			return &model.Error{Code: model.CodeInvalid, Message: "the query string cannot be decoded: " + clip(err.Error(), 120), Err: err}
		}
	}
	for _, pc := range op.params {
		p := pc.param
		switch p.In {
		case openapi3.ParameterInPath:
			if pc.str != nil {
				v, err := pathValue(r, pc.chiKey)
				if err != nil {
					return err
				}
				if pc.accept != nil && pc.accept(v) {
					continue
				}
				if err := pc.str.VisitJSONString(v); err != nil {
					return requestError(&openapi3filter.RequestError{Parameter: p, Err: err})
				}
				continue
			}
		case openapi3.ParameterInHeader:
			values := r.Header[pc.header]
			if len(values) == 0 && !p.Required {
				continue
			}
			if pc.str != nil && len(values) == 1 {
				if pc.accept != nil && pc.accept(values[0]) {
					continue
				}
				if err := pc.str.VisitJSONString(values[0]); err != nil {
					return requestError(&openapi3filter.RequestError{Parameter: p, Err: err})
				}
				continue
			}
		case openapi3.ParameterInQuery:
			if r.URL.RawQuery == "" && !p.Required {
				continue
			}
			// A filter given once, non-empty: checked as a path parameter is
			// (VisitJSONString checks no enum: those go the long way).
			if pc.str != nil && len(pc.str.Enum) == 0 {
				var first string
				var n int
				if plain {
					first, n = plainQueryValue(r.URL.RawQuery, p.Name)
				} else if values := query[p.Name]; len(values) > 0 {
					first, n = values[0], len(values)
				}
				if n == 0 && !p.Required {
					continue
				}
				if n == 1 && first != "" {
					if pc.accept != nil && pc.accept(first) {
						continue
					}
					if err := pc.str.VisitJSONString(first); err != nil {
						return requestError(&openapi3filter.RequestError{Parameter: p, Err: err})
					}
					continue
				}
			}
		}
		in, err := input()
		if err != nil {
			return err
		}
		if err := openapi3filter.ValidateParameter(ctx, in, p); err != nil {
			return requestError(err)
		}
	}
	if op.body != nil {
		// The body is bounded and checked for shape before the validator
		// sees it: its errors and allocations grow with a body's depth.
		body, err := readBody(w, r, op.maxBody)
		if err != nil {
			return err
		}
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		in, err := input()
		if err != nil {
			return err
		}
		if err := openapi3filter.ValidateRequestBody(ctx, in, op.body); err != nil {
			return requestError(err)
		}
	}
	return nil
}

// input is what openapi3filter validates r against op with.
func (s *apiSpec) input(r *http.Request, op *operation) (*openapi3filter.RequestValidationInput, error) {
	in := &openapi3filter.RequestValidationInput{
		Request:    r,
		Route:      op.route,
		Options:    s.opts,
		PathParams: make(map[string]string),
	}
	if r.URL.RawQuery == "" {
		in.QueryParams = noQuery
	}
	for _, pc := range op.params {
		if pc.chiKey != "" {
			v, err := pathValue(r, pc.chiKey)
			if err != nil {
				return nil, err
			}
			in.PathParams[pc.param.Name] = v
		}
	}
	return in, nil
}

// pathValue returns the value a path parameter has in r: the chi parameter
// unescaped, or for the catch-all the canonical gRPC method it names.
func pathValue(r *http.Request, chiKey string) (string, error) {
	if chiKey == "*" {
		return methodParam(r)
	}
	return pathParam(r, chiKey), nil
}

// requestError turns a validation failure into one short line that names
// the parameter or body field and the problem. kin's own error text dumps
// the schema and the value, and grows with the square of a body's depth,
// so it is never formatted: neither the detail nor the log carries it.
func requestError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return boundedError(model.CodePayloadTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit))
	}
	var re *openapi3filter.RequestError
	if !errors.As(err, &re) {
		return boundedError(model.CodeInvalid, "request does not match the API document")
	}
	var se *openapi3.SchemaError
	hasSchemaErr := errors.As(re.Err, &se)
	switch {
	case re.Parameter != nil && re.Parameter.In == openapi3.ParameterInPath && re.Parameter.Name == "leaseId" && hasSchemaErr:
		raw, _ := se.Value.(string)
		return leaseParamError(raw)
	case re.Parameter != nil:
		code := model.CodeInvalid
		if re.Parameter.In == openapi3.ParameterInPath && re.Parameter.Name == "method" {
			code = model.CodeMalformedMethod
		}
		return boundedError(code, fmt.Sprintf("%s parameter %q: %s", re.Parameter.In, re.Parameter.Name, failure(re, se)))
	case re.RequestBody != nil:
		switch {
		case strings.HasPrefix(re.Reason, "header Content-Type"):
			return boundedError(model.CodeUnsupportedMedia, "request body must be application/json")
		case errors.Is(re.Err, openapi3filter.ErrInvalidRequired):
			return boundedError(model.CodeInvalid, "request body is required")
		case !hasSchemaErr:
			return boundedError(model.CodeInvalid, "request body is not valid JSON")
		}
		field := clip("/"+strings.Join(se.JSONPointer(), "/"), maxDetailValue)
		if field == "/methods" && se.SchemaField == "maxItems" {
			return boundedError(model.CodeTooManyMethods, fmt.Sprintf("request body field %s: %s", field, failure(re, se)))
		}
		if field == "/lease_id" && se.SchemaField == "oneOf" {
			return &model.Error{Code: model.CodeInvalid, Message: leaseIDMessage, Err: err}
		}
		if field == "/methods" && se.SchemaField == "oneOf" {
			// kin names the combinator, not the forms it allows.
			return boundedError(model.CodeInvalid, "request body field /methods: must be an array of gRPC method names or an object mapping each to true")
		}
		return boundedError(model.CodeInvalid, fmt.Sprintf("request body field %s: %s", field, failure(re, se)))
	}
	return boundedError(model.CodeInvalid, firstLine(re.Reason))
}

func boundedError(code model.Code, msg string) error {
	return &model.Error{Code: code, Message: clip(msg, maxDetail)}
}

// failure says in a few words what is wrong with a value.
func failure(re *openapi3filter.RequestError, se *openapi3.SchemaError) string {
	switch {
	case se != nil && se.Reason != "":
		return se.Reason
	case se != nil:
		return fmt.Sprintf("does not satisfy %q", se.SchemaField)
	case errors.Is(re.Err, openapi3filter.ErrInvalidRequired):
		return "is required"
	case errors.Is(re.Err, openapi3filter.ErrInvalidEmptyValue):
		return "must not be empty"
	case re.Err != nil:
		// Not a SchemaError (that case is above): a short parse failure.
		return clip(firstLine(re.Err.Error()), maxDetail)
	}
	return firstLine(re.Reason)
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// headersRead lists the request headers that the operations of method on
// patterns declare as parameters, each once.
func (s *apiSpec) headersRead(method string, patterns map[string]bool) []string {
	var out []string
	for key, op := range s.ops {
		if key.method != method || !patterns[key.pattern] {
			continue
		}
		for _, pc := range op.params {
			if pc.header != "" && !slices.Contains(out, pc.header) {
				out = append(out, pc.header)
			}
		}
	}
	slices.Sort(out)
	return out
}
