package httpapi

import (
	"bytes"
	"net/http"
	"strconv"

	"github.com/munnerz/goautoneg"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/model"
)

// The export views render an env's route table as the Kubernetes objects
// that gateways read (internal/export), as one "v1 List" in JSON or YAML:
// one document that kubectl apply takes whole and that a reviewer reads top
// to bottom. What the objects leave out is counted in X-Registry-Skipped
// and, in YAML, listed in comments before the list.

const (
	hdrSkipped = "X-Registry-Skipped"
	hdrVary    = "Vary"
)

var varyAccept = []string{"Accept"}

// exportTypes are the media types an export answers in, the default first.
var exportTypes = []string{"application/json", "application/yaml"}

// exportMediaType picks the export's media type from Accept.
func exportMediaType(r *http.Request) (string, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return exportTypes[0], nil
	}
	if ct := goautoneg.Negotiate(accept, exportTypes); ct != "" {
		return ct, nil
	}
	return "", model.Errorf(model.CodeNotAcceptable, "an export is application/json or application/yaml")
}

// exportAnswer is an export rendered: the body with its tag, its media
// type, and how many addresses it left out.
type exportAnswer struct {
	rendered    *rendered
	contentType []string
	skipped     []string
}

// buildExport makes an export's objects from an env's route table.
type buildExport func(table *model.RouteTable, opts export.Options) ([]*unstructured.Unstructured, []export.Skipped, error)

// serveExport answers an export of the path's env as a v1 List. An export
// with the server's own options (cached) is rendered once per route table
// and media type and kept with the table, like the routes view; one with
// options of the request's own is rendered for it alone.
func serveExport(w http.ResponseWriter, r *http.Request, src model.SnapshotSource, live liveness, kind string, cached bool, build buildExport) {
	ct, err := exportMediaType(r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	_, env, err := pathEnv(w, r, src)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	memo := env.Routes(live.now(), live.ttl)
	key := kind + "\x00" + ct
	if cached {
		if v, ok := renderingsOf(memo).exports.Load(key); ok {
			writeExport(w, r, v.(*exportAnswer))
			return
		}
	}
	// The objects carry the tag of the routes view they were made from.
	opts := export.Options{Env: env.Name, Tag: memo.Digest.Tag(), Namespaces: export.AppNamespaces(env)}
	objs, skipped, err := build(memo.Table, opts)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	body, err := export.EncodeList(objs)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	answer := &exportAnswer{contentType: ctJSON, skipped: []string{strconv.Itoa(len(skipped))}}
	if ct == "application/yaml" {
		answer.contentType = ctYAML
		if body, err = exportYAML(body, skipped); err != nil {
			writeProblem(w, r, err)
			return
		}
	}
	answer.rendered = &rendered{Body: body, ETag: []string{bodyETag(body)}, Length: contentLength(body)}
	if cached {
		renderingsOf(memo).exports.Store(key, answer)
	}
	writeExport(w, r, answer)
}

// handleExportGRPCRoutes serves GET /v1/envs/{env}/export/grpcroutes.
func handleExportGRPCRoutes(src model.SnapshotSource, live liveness, gateway *export.ParentRef) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		parent, own := gateway, false
		if q := r.URL.Query(); q.Has("gateway") {
			p, err := export.ParseParentRef(q.Get("gateway"))
			if err != nil {
				writeProblem(w, r, &model.Error{Code: model.CodeInvalid, Message: "query parameter \"gateway\": " + clip(err.Error(), maxDetail), Err: err})
				return
			}
			parent, own = &p, true
		}
		serveExport(w, r, src, live, "grpcroutes", !own, func(table *model.RouteTable, opts export.Options) ([]*unstructured.Unstructured, []export.Skipped, error) {
			opts.Gateway = parent
			out := export.GRPCRoutes(table, opts)
			objs, err := out.Objects()
			return objs, out.Skipped, err
		})
	}
}

// handleExportIstio serves GET /v1/envs/{env}/export/istio.
func handleExportIstio(src model.SnapshotSource, live liveness, versionHeader string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		serveExport(w, r, src, live, "istio", true, func(table *model.RouteTable, opts export.Options) ([]*unstructured.Unstructured, []export.Skipped, error) {
			opts.VersionHeader = versionHeader
			out := export.IstioObjects(table, opts)
			objs, err := out.Objects()
			return objs, out.Skipped, err
		})
	}
}

// writeExport answers an export; its ETag is the body's hash.
func writeExport(w http.ResponseWriter, r *http.Request, a *exportAnswer) {
	h := w.Header()
	h[hdrVary] = varyAccept
	h[hdrSkipped] = a.skipped
	writeRendered(w, r, a.contentType, a.rendered, true)
}

// exportYAML converts the JSON list to YAML (keys sorted, so deterministic
// too), after a comment per skipped address.
func exportYAML(list []byte, skipped []export.Skipped) ([]byte, error) {
	y, err := yaml.JSONToYAML(list)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if len(skipped) > 0 {
		buf.WriteString("# Left out of this export (see the routes view for every address):\n")
		for _, s := range skipped {
			// Quoted to ASCII: a name read from a ConfigMap cannot end the
			// comment with a line break of its own.
			line := strconv.QuoteToASCII(s.String())
			buf.WriteString("#   ")
			buf.WriteString(line[1 : len(line)-1])
			buf.WriteByte('\n')
		}
	}
	buf.Write(y)
	return buf.Bytes(), nil
}
