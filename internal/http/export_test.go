package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"sigs.k8s.io/yaml"

	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/model"
)

// exportList is the part of an export a test reads.
type exportList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      []struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name        string            `json:"name"`
			Namespace   string            `json:"namespace"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec map[string]any `json:"spec"`
	} `json:"items"`
}

func (l *exportList) names() []string {
	var out []string
	for _, it := range l.Items {
		out = append(out, it.Kind+" "+it.Metadata.Namespace+"/"+it.Metadata.Name)
	}
	return out
}

func TestExportGRPCRoutes(t *testing.T) {
	h := newHarness(t)
	rec := h.get("/v1/envs/qa/export/grpcroutes?gateway=infra/public/grpc")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %s: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	golden(t, "export-grpcroutes-qa", rec)
	var l exportList
	decode(t, rec, &l)
	// pay-service registers from firefly and shop: its route goes to the
	// first, and its Service is in qa, which grants it. pay-legacy wins
	// Charge, which pay-service claims too.
	want := []string{
		"GRPCRoute firefly/qa.pay-legacy",
		"GRPCRoute firefly/qa.pay-service",
		"GRPCRoute shop/qa.audit-service",
		"ReferenceGrant qa/qa.grpcroutes-from-firefly",
	}
	if got := l.names(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("objects\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The objects carry the tag of the routes view they were made from.
	tag := h.get("/v1/envs/qa/routes").Header().Get("ETag")
	if got := l.Items[0].Metadata.Annotations[export.AnnotationRouteTable]; got != tag {
		t.Errorf("route-table annotation %q, want the routes view's ETag %q", got, tag)
	}
	if got := l.Items[0].Metadata.Annotations[export.AnnotationConflicts]; !strings.Contains(got, "/acme.pay.v1.PayService/Charge also claimed by pay-service") {
		t.Errorf("conflicts annotation %q", got)
	}
	// 10.0.0.12 and 10.0.0.13 are IP literals; ghost-service is down.
	if got := rec.Header().Get(hdrSkipped); got != "3" {
		t.Errorf("%s: %q, want 3", hdrSkipped, got)
	}
	if got := rec.Header().Get("Vary"); got != "Accept" {
		t.Errorf("Vary %q", got)
	}
}

func TestExportYAML(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/v1/envs/qa/export/grpcroutes", "/v1/envs/qa/export/istio"} {
		js := h.get(path)
		rec := h.do(request{target: path, header: map[string]string{"Accept": "application/yaml"}})
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/yaml" {
			t.Fatalf("%s: status %d %s: %s", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		if !strings.HasPrefix(rec.Body.String(), "# Left out of this export") || !strings.Contains(rec.Body.String(), "#   pay-service /acme.pay.v1.PayService/Refund 10.0.0.12:9000: ip_literal\n") {
			t.Errorf("%s: YAML does not list what it left out:\n%s", path, rec.Body)
		}
		// The same objects as the JSON, which has another tag.
		fromYAML, err := yaml.YAMLToJSON(rec.Body.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(fromYAML, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(js.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
			t.Errorf("%s: YAML and JSON differ:\n%s\n%s", path, ja, jb)
		}
		if rec.Header().Get("ETag") == js.Header().Get("ETag") {
			t.Errorf("%s: YAML and JSON share ETag %s", path, js.Header().Get("ETag"))
		}
	}
}

func TestExportIstio(t *testing.T) {
	h := newHarness(t)
	srv, err := newServer(Deps{Log: zerolog.New(h.logs), Snapshots: h.src, Now: h.clock.Now, Prometheus: h.registry, IstioVersionHeader: "x-version"})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	rec := h.get("/v1/envs/qa/export/istio")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	golden(t, "export-istio-qa", rec)
	var l exportList
	decode(t, rec, &l)
	// Each in its Service's namespace.
	want := []string{
		"DestinationRule firefly/qa.pay-legacy",
		"DestinationRule qa/qa.pay-service",
		"DestinationRule shop/qa.audit-service",
		"VirtualService firefly/qa.pay-legacy",
		"VirtualService qa/qa.pay-service",
		"VirtualService shop/qa.audit-service",
	}
	if got := l.names(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("objects\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(rec.Body.String(), `"headers":{"x-version":{"exact":"v1"}}`) {
		t.Errorf("no version header route: %s", rec.Body)
	}
}

func TestExportDefaultGateway(t *testing.T) {
	h := newHarness(t)
	gw := &export.ParentRef{Namespace: "infra", Name: "public"}
	srv, err := newServer(Deps{Log: zerolog.New(h.logs), Snapshots: h.src, Now: h.clock.Now, Prometheus: h.registry, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	for _, tt := range []struct{ target, want string }{
		{"/v1/envs/qa/export/grpcroutes", `"parentRefs":[{"name":"public","namespace":"infra"}]`},
		{"/v1/envs/qa/export/grpcroutes?gateway=edge/gw/tls", `"parentRefs":[{"name":"gw","namespace":"edge","sectionName":"tls"}]`},
		// One request's ?gateway= is its own: the next gets the default.
		{"/v1/envs/qa/export/grpcroutes", `"parentRefs":[{"name":"public","namespace":"infra"}]`},
	} {
		rec := h.get(tt.target)
		if !strings.Contains(rec.Body.String(), tt.want) {
			t.Errorf("%s: want %s in %s", tt.target, tt.want, rec.Body)
		}
	}
	if _, err := newServer(Deps{Snapshots: h.src, IstioVersionHeader: "X-Version"}); err == nil {
		t.Error("an uppercase version header was accepted")
	}
}

func TestExportConditional(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/v1/envs/qa/export/grpcroutes", "/v1/envs/qa/export/istio"} {
		get := h.get(path)
		head := h.do(request{method: http.MethodHead, target: path})
		if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("ETag") != get.Header().Get("ETag") ||
			head.Header().Get("Content-Length") != get.Header().Get("Content-Length") || head.Header().Get(hdrSkipped) != get.Header().Get(hdrSkipped) {
			t.Errorf("HEAD %s: %d %v, GET's headers %v", path, head.Code, head.Header(), get.Header())
		}
		rec := h.do(request{target: path, header: map[string]string{"If-None-Match": get.Header().Get("ETag")}})
		if rec.Code != http.StatusNotModified {
			t.Errorf("%s with its tag: %d", path, rec.Code)
		}
		// A version that dies changes the export, and so its tag.
		h.clock.Add(30 * 1e9)
		if again := h.get(path); again.Header().Get("ETag") == get.Header().Get("ETag") {
			t.Errorf("%s: same tag after every instance died", path)
		}
		h.clock.Set(t0)
	}
}

func TestExportErrors(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		target, accept string
		status         int
		code           model.Code
	}{
		{"/v1/envs/nope/export/grpcroutes", "", http.StatusNotFound, model.CodeEnvNotFound},
		{"/v1/envs/nope/export/istio", "", http.StatusNotFound, model.CodeEnvNotFound},
		{"/v1/envs/qa/export/grpcroutes?gateway=public", "", http.StatusBadRequest, model.CodeInvalid},
		{"/v1/envs/qa/export/grpcroutes?gateway=Infra/public", "", http.StatusBadRequest, model.CodeInvalid},
		{"/v1/envs/qa/export/grpcroutes?gateway=infra/pub_lic", "", http.StatusBadRequest, model.CodeInvalid},
		{"/v1/envs/qa/export/grpcroutes?gateway=", "", http.StatusBadRequest, model.CodeInvalid},
		{"/v1/envs/qa/export/grpcroutes", "text/html", http.StatusNotAcceptable, model.CodeNotAcceptable},
		{"/v1/envs/qa/export/istio", "application/xml, text/*;q=0.5", http.StatusNotAcceptable, model.CodeNotAcceptable},
	}
	for _, tt := range tests {
		req := request{target: tt.target}
		if tt.accept != "" {
			req.header = map[string]string{"Accept": tt.accept}
		}
		rec := h.do(req)
		if rec.Code != tt.status || problemOf(t, rec).Code != tt.code {
			t.Errorf("%s (Accept %q): %d %s, want %d %s", tt.target, tt.accept, rec.Code, rec.Body, tt.status, tt.code)
		}
	}
	for _, accept := range []string{"*/*", "application/*", "application/yaml;q=0.1, application/json"} {
		rec := h.do(request{target: "/v1/envs/qa/export/istio", header: map[string]string{"Accept": accept}})
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("Accept %q: %d %s", accept, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}
