package model_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

// issueManifest is the manifest of the issue, as the generator writes it.
const issueManifest = `{"schema": "firefly.gateway.manifest.v1",
 "descriptor_ref": "https://minio.example/descriptor/auth/v0.0.1.pb",
 "services": [{"name": "acme.app.type.v1.AppTypeService",
               "methods": ["/acme.app.type.v1.AppTypeService/CreateType", "/acme.app.type.v1.AppTypeService/GetTypeInfo"]}],
 "routes": [{"http_method": "POST", "path": "/v1/app/type", "full_method": "/acme.app.type.v1.AppTypeService/CreateType"},
            {"http_method": "GET", "path": "/v1/app/type/{id}", "full_method": "/acme.app.type.v1.AppTypeService/GetTypeInfo"}]}`

func TestParseManifest(t *testing.T) {
	got, err := model.ParseManifest([]byte(issueManifest))
	if err != nil {
		t.Fatal(err)
	}
	want := &model.ManifestContent{
		Methods:  []string{"/acme.app.type.v1.AppTypeService/CreateType", "/acme.app.type.v1.AppTypeService/GetTypeInfo"},
		Services: 1,
		HTTP: model.HTTPBindings{
			DescriptorRef: "https://minio.example/descriptor/auth/v0.0.1.pb",
			Bindings: []model.Binding{
				{HTTPMethod: "POST", Path: "/v1/app/type", FullMethod: "/acme.app.type.v1.AppTypeService/CreateType"},
				{HTTPMethod: "GET", Path: "/v1/app/type/{id}", FullMethod: "/acme.app.type.v1.AppTypeService/GetTypeInfo"},
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseManifest = %+v, want %+v", got, want)
	}
}

func TestParseManifestCanonicalAndSorted(t *testing.T) {
	m := validManifest()
	m.DescriptorRef = ""
	m.Services = append(m.Services, model.ManifestService{Name: "acme.Empty"},
		model.ManifestService{Name: "acme.Ops", Methods: []string{"/acme.Ops/Cancel", "/acme.Ops/Cancel", "/acme.Ops/Do"}})
	m.Routes = append(m.Routes,
		model.ManifestRoute{HTTPMethod: "POST", Path: "/v1/{name=operations/*}:cancel", FullMethod: "/acme.Ops/Cancel"},
		model.ManifestRoute{HTTPMethod: "HEAD", Path: "/v1/app/type/{id=*}", FullMethod: "/acme.app.type.v1.AppTypeService/GetTypeInfo"},
		model.ManifestRoute{HTTPMethod: "GET", Path: "/v1/app/type/special", FullMethod: "/acme.Ops/Do"},
		model.ManifestRoute{HTTPMethod: "GET", Path: "/v1/%61pp/{id}:cancel", FullMethod: "/acme.Ops/Cancel"},
	)
	got, err := model.ParseManifest(marshal(t, m))
	if err != nil {
		t.Fatal(err)
	}
	wantMethods := []string{"/acme.Ops/Cancel", "/acme.Ops/Do", "/acme.app.type.v1.AppTypeService/CreateType", "/acme.app.type.v1.AppTypeService/GetTypeInfo"}
	if !reflect.DeepEqual(got.Methods, wantMethods) || got.Services != 3 || got.HTTP.DescriptorRef != "" {
		t.Errorf("ParseManifest = %q, %d services, %q", got.Methods, got.Services, got.HTTP.DescriptorRef)
	}
	var paths []string
	for _, b := range got.HTTP.Bindings {
		paths = append(paths, b.HTTPMethod+" "+b.Path)
	}
	want := []string{
		"POST /v1/app/type",
		"GET /v1/app/type/special",
		"GET /v1/app/type/{id}",
		"HEAD /v1/app/type/{id}",
		"GET /v1/app/{id}:cancel",
		"POST /v1/{name=operations/*}:cancel",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("bindings = %q, want %q", paths, want)
	}
}

func validManifest() model.Manifest {
	var m model.Manifest
	if err := json.Unmarshal([]byte(issueManifest), &m); err != nil {
		panic(err)
	}
	return m
}

func marshal(t *testing.T, m model.Manifest) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseManifestRefuses(t *testing.T) {
	type edit func(*model.Manifest)
	route := func(i int, f func(*model.ManifestRoute)) edit {
		return func(m *model.Manifest) { f(&m.Routes[i]) }
	}
	addRoute := func(r model.ManifestRoute) edit {
		return func(m *model.Manifest) { m.Routes = append(m.Routes, r) }
	}
	const get = "/acme.app.type.v1.AppTypeService/GetTypeInfo"
	for _, tc := range []struct {
		name   string
		raw    string // when set, the body instead of the edited manifest
		edit   edit
		code   model.Code
		detail string
	}{
		{name: "not JSON", raw: `{"schema":`, code: model.CodeInvalid, detail: "manifest: not valid JSON at byte 10"},
		{name: "bad JSON", raw: `{"schema" "x"}`, code: model.CodeInvalid, detail: "manifest: not valid JSON at byte"},
		{name: "empty", raw: ``, code: model.CodeInvalid, detail: "manifest: empty"},
		{name: "an array", raw: `[]`, code: model.CodeInvalid, detail: "manifest: a JSON array where an object belongs"},
		{name: "two objects", raw: issueManifest + `{}`, code: model.CodeInvalid, detail: "manifest: not valid JSON at byte"},
		{name: "unknown member", raw: strings.Replace(issueManifest, `"schema"`, `"generator": "x", "schema"`, 1), code: model.CodeInvalid, detail: "manifest.generator: unknown member"},
		{name: "unknown route member", raw: strings.Replace(issueManifest, `"full_method": "/acme.app.type.v1.AppTypeService/GetTypeInfo"`, `"full_method": "/acme.app.type.v1.AppTypeService/GetTypeInfo", "body": "*"`, 1), code: model.CodeInvalid, detail: "manifest.routes[1].body: unknown member"},
		{name: "repeated member", raw: strings.Replace(issueManifest, `"path": "/v1/app/type"`, `"path": "/v1/app/type", "path": "/v1/x"`, 1), code: model.CodeInvalid, detail: "manifest.routes[0].path: given twice"},
		{name: "mistyped path", raw: strings.Replace(issueManifest, `"path": "/v1/app/type/{id}"`, `"path": 7`, 1), code: model.CodeInvalid, detail: "manifest.routes[1].path: a JSON number where a string belongs"},
		{name: "mistyped methods", raw: strings.Replace(issueManifest, `"methods": [`, `"methods": {"a":1}, "x": [`, 1), code: model.CodeInvalid, detail: "manifest.services[0].methods: a JSON object where an array belongs"},
		{name: "mistyped schema", raw: strings.Replace(issueManifest, `"schema": "firefly.gateway.manifest.v1"`, `"schema": true`, 1), code: model.CodeInvalid, detail: "manifest.schema: a JSON boolean where a string belongs"},
		{name: "no schema", edit: func(m *model.Manifest) { m.Schema = "" }, code: model.CodeInvalid, detail: "manifest.schema: missing"},
		{name: "unknown schema", edit: func(m *model.Manifest) { m.Schema = "firefly.gateway.manifest.v2" }, code: model.CodeInvalid, detail: `manifest.schema: "firefly.gateway.manifest.v2" is not firefly.gateway.manifest.v1`},
		{name: "relative descriptor_ref", edit: func(m *model.Manifest) { m.DescriptorRef = "descriptor/auth.pb" }, code: model.CodeInvalid, detail: "manifest.descriptor_ref: \"descriptor/auth.pb\" is not an absolute URL"},
		{name: "descriptor_ref with a space", edit: func(m *model.Manifest) { m.DescriptorRef = "https://x/a b" }, code: model.CodeInvalid, detail: "manifest.descriptor_ref:"},
		{name: "unparsable descriptor_ref", edit: func(m *model.Manifest) { m.DescriptorRef = "https://[::1" }, code: model.CodeInvalid, detail: "manifest.descriptor_ref:"},
		{name: "long descriptor_ref", edit: func(m *model.Manifest) { m.DescriptorRef = "https://x/" + strings.Repeat("a", model.MaxDescriptorRef) }, code: model.CodeInvalid, detail: "manifest.descriptor_ref: longer than 2048 bytes"},
		{name: "bad service name", edit: func(m *model.Manifest) { m.Services[0].Name = "acme..Svc" }, code: model.CodeInvalid, detail: `manifest.services[0].name: "acme..Svc" is not a full gRPC service name`},
		{name: "service twice", edit: func(m *model.Manifest) { m.Services = append(m.Services, m.Services[0]) }, code: model.CodeInvalid, detail: "manifest.services[1].name: service acme.app.type.v1.AppTypeService is listed twice (services[0])"},
		{name: "malformed method", edit: func(m *model.Manifest) { m.Services[0].Methods[1] = "GetTypeInfo" }, code: model.CodeMalformedMethod, detail: `manifest.services[0].methods[1]: "GetTypeInfo" is not a full gRPC method name`},
		{name: "method of another service", edit: func(m *model.Manifest) { m.Services[0].Methods[1] = "/acme.Other/GetTypeInfo" }, code: model.CodeInvalid, detail: "manifest.services[0].methods[1]: /acme.Other/GetTypeInfo is not a method of service acme.app.type.v1.AppTypeService"},
		{name: "no http_method", edit: route(1, func(r *model.ManifestRoute) { r.HTTPMethod = "" }), code: model.CodeInvalid, detail: "manifest.routes[1].http_method: missing"},
		{name: "lower-case http_method", edit: route(1, func(r *model.ManifestRoute) { r.HTTPMethod = "get" }), code: model.CodeInvalid, detail: `manifest.routes[1].http_method: "get" is not an HTTP method in upper case`},
		{name: "wildcard http_method", edit: route(0, func(r *model.ManifestRoute) { r.HTTPMethod = "*" }), code: model.CodeInvalid, detail: `manifest.routes[0].http_method: the wildcard method "*" is not supported`},
		{name: "long http_method", edit: route(0, func(r *model.ManifestRoute) { r.HTTPMethod = strings.Repeat("A", 21) }), code: model.CodeInvalid, detail: "manifest.routes[0].http_method: longer than 20 bytes"},
		{name: "malformed template", edit: route(1, func(r *model.ManifestRoute) { r.Path = "/v1/app/type/{id" }), code: model.CodeInvalid, detail: `manifest.routes[1].path: path template "/v1/app/type/{id": at byte 13: variable is not closed by "}"`},
		{name: "template not last **", edit: route(1, func(r *model.ManifestRoute) { r.Path = "/v1/{x=**}/type" }), code: model.CodeInvalid, detail: `manifest.routes[1].path: path template "/v1/{x=**}/type": at byte 7: "**" must be the last segment`},
		{name: "relative template", edit: route(0, func(r *model.ManifestRoute) { r.Path = "v1/app/type" }), code: model.CodeInvalid, detail: `manifest.routes[0].path: path template "v1/app/type": at byte 0`},
		{name: "long template", edit: route(0, func(r *model.ManifestRoute) { r.Path = "/" + strings.Repeat("a", model.MaxPathTemplate) }), code: model.CodeInvalid, detail: "manifest.routes[0].path: longer than 1024 bytes"},
		{name: "malformed full_method", edit: route(1, func(r *model.ManifestRoute) { r.FullMethod = "acme.app.type.v1.AppTypeService.GetTypeInfo" }), code: model.CodeMalformedMethod, detail: `manifest.routes[1].full_method: "acme.app.type.v1.AppTypeService.GetTypeInfo" is not a full gRPC method name`},
		{name: "method not in services", edit: route(1, func(r *model.ManifestRoute) { r.FullMethod = "/acme.app.type.v1.AppTypeService/DeleteType" }), code: model.CodeInvalid, detail: "manifest.routes[1].full_method: /acme.app.type.v1.AppTypeService/DeleteType is not among services[].methods"},
		{name: "duplicate binding", edit: addRoute(model.ManifestRoute{HTTPMethod: "GET", Path: "/v1/app/type/{id}", FullMethod: get}), code: model.CodeInvalid, detail: "manifest.routes[2]: GET /v1/app/type/{id} matches the same requests as routes[1] (GET /v1/app/type/{id})"},
		{name: "duplicate canonical binding", edit: addRoute(model.ManifestRoute{HTTPMethod: "GET", Path: "/v1/%61pp/type/{id=*}", FullMethod: get}), code: model.CodeInvalid, detail: "manifest.routes[2]: GET /v1/%61pp/type/{id=*} matches the same requests as routes[1]"},
		{name: "duplicate under another name", edit: addRoute(model.ManifestRoute{HTTPMethod: "GET", Path: "/v1/app/type/{name}", FullMethod: get}), code: model.CodeInvalid, detail: "manifest.routes[2]: GET /v1/app/type/{name} matches the same requests as routes[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			if tc.edit != nil {
				m := validManifest()
				tc.edit(&m)
				raw = marshal(t, m)
			}
			got, err := model.ParseManifest(raw)
			var me *model.Error
			if !errors.As(err, &me) {
				t.Fatalf("ParseManifest = %+v, %v; want an *Error", got, err)
			}
			if me.Code != tc.code || !strings.Contains(me.Message, tc.detail) {
				t.Errorf("ParseManifest: %s %q; want %s with %q", me.Code, me.Message, tc.code, tc.detail)
			}
		})
	}
}

// The same path template under another HTTP method, or another verb, is
// another binding.
func TestParseManifestAcceptsNearDuplicates(t *testing.T) {
	m := validManifest()
	m.Routes = append(m.Routes,
		model.ManifestRoute{HTTPMethod: "DELETE", Path: "/v1/app/type/{id}", FullMethod: "/acme.app.type.v1.AppTypeService/CreateType"},
		model.ManifestRoute{HTTPMethod: "GET", Path: "/v1/app/type/{id}:check", FullMethod: "/acme.app.type.v1.AppTypeService/CreateType"},
		model.ManifestRoute{HTTPMethod: "GET", Path: "/v1/app/type/special", FullMethod: "/acme.app.type.v1.AppTypeService/CreateType"},
	)
	if _, err := model.ParseManifest(marshal(t, m)); err != nil {
		t.Fatal(err)
	}
}

func TestReadHTTPBindings(t *testing.T) {
	raw := `{"descriptor_ref":"https://x/d.pb","bindings":[
		{"http_method":"GET","path":"/v1/b/{id=*}","full_method":"/a.S/Get"},
		{"http_method":"get","path":"/v1/a","full_method":"/a.S/Get"},
		{"http_method":"GET","path":"/v1/{","full_method":"/a.S/Get"},
		{"http_method":"GET","path":"/v1/c","full_method":"a.S.Get"},
		{"http_method":"POST","path":"/v1/%61","full_method":"/a.S/Create"}],"future":1}`
	h, dropped, err := model.ReadHTTPBindings([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := model.HTTPBindings{DescriptorRef: "https://x/d.pb", Bindings: []model.Binding{
		{HTTPMethod: "POST", Path: "/v1/a", FullMethod: "/a.S/Create"},
		{HTTPMethod: "GET", Path: "/v1/b/{id}", FullMethod: "/a.S/Get"},
	}}
	if !reflect.DeepEqual(h, want) || dropped != 3 {
		t.Errorf("ReadHTTPBindings = %+v, %d dropped; want %+v, 3", h, dropped, want)
	}
	if _, _, err := model.ReadHTTPBindings([]byte(`[]`)); err == nil {
		t.Error("ReadHTTPBindings accepted an array")
	}
}

// An entry registered from a manifest keeps its bindings under MemberHTTP;
// the index and the library's reader (encoding/json into its ServiceNode,
// unknown members skipped) read it as any entry, and the bindings read back.
func TestManifestEntry(t *testing.T) {
	content, err := model.ParseManifest([]byte(issueManifest))
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, m := range content.Methods {
		methods[m] = true
	}
	node := model.ServiceNode{ProtoCount: content.Services, LeaseID: 7, RunDate: "2026-11-26 12:24:22", Methods: methods,
		Network: model.Network{Internal: "app-type:8080"}, Meta: model.Meta{Env: "prod", AppID: "app-type", Version: "v1"}}
	member, err := json.Marshal(content.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := model.BuildEntry(nil, node, map[string]json.RawMessage{model.MemberHTTP: member})
	if err != nil {
		t.Fatal(err)
	}
	parsed, warnings, err := model.ParseEntry("firefly", "prod", "app-type.7", raw, model.ParseOptions{})
	if err != nil || len(warnings) > 0 || !reflect.DeepEqual(parsed.Methods, content.Methods) {
		t.Fatalf("ParseEntry(%s) = %+v, %q, %v", raw, parsed, warnings, err)
	}
	var library model.ServiceNode
	if err := json.Unmarshal(raw, &library); err != nil || !reflect.DeepEqual(library, node) {
		t.Fatalf("the library reads %+v, %v; want %+v", library, err, node)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		t.Fatal(err)
	}
	back, dropped, err := model.ReadHTTPBindings(members[model.MemberHTTP])
	if err != nil || dropped != 0 || !reflect.DeepEqual(back, content.HTTP) {
		t.Errorf("ReadHTTPBindings = %+v, %d, %v; want %+v", back, dropped, err, content.HTTP)
	}
}
