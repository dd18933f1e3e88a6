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

// exportEnv is what both exports start from: the media type, the env and
// its route table at now, with the Options naming its env and tag.
func exportEnv(w http.ResponseWriter, r *http.Request, src model.SnapshotSource, live liveness) (string, *model.RouteTable, export.Options, error) {
	ct, err := exportMediaType(r)
	if err != nil {
		return "", nil, export.Options{}, err
	}
	_, env, err := pathEnv(w, r, src)
	if err != nil {
		return "", nil, export.Options{}, err
	}
	now := live.now()
	// The objects carry the tag of the routes view they were made from.
	view, err := renderRoutes(env, routeFilter{}, now, live.ttl)
	if err != nil {
		return "", nil, export.Options{}, err
	}
	opts := export.Options{Env: env.Name, Tag: view.ETag[0], Namespaces: export.AppNamespaces(env)}
	return ct, env.Routes(now, live.ttl).Table, opts, nil
}

// handleExportGRPCRoutes serves GET /v1/envs/{env}/export/grpcroutes.
func handleExportGRPCRoutes(src model.SnapshotSource, live liveness, gateway *export.ParentRef) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		parent := gateway
		if q := r.URL.Query(); q.Has("gateway") {
			p, err := export.ParseParentRef(q.Get("gateway"))
			if err != nil {
				writeProblem(w, r, &model.Error{Code: model.CodeInvalid, Message: "query parameter \"gateway\": " + clip(err.Error(), maxDetail), Err: err})
				return
			}
			parent = &p
		}
		ct, table, opts, err := exportEnv(w, r, src, live)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		opts.Gateway = parent
		out := export.GRPCRoutes(table, opts)
		objs, err := out.Objects()
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeExport(w, r, ct, objs, out.Skipped)
	}
}

// handleExportIstio serves GET /v1/envs/{env}/export/istio.
func handleExportIstio(src model.SnapshotSource, live liveness, versionHeader string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ct, table, opts, err := exportEnv(w, r, src, live)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		opts.VersionHeader = versionHeader
		out := export.IstioObjects(table, opts)
		objs, err := out.Objects()
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeExport(w, r, ct, objs, out.Skipped)
	}
}

// writeExport answers objs as a v1 List in ct; its ETag is the body's hash.
func writeExport(w http.ResponseWriter, r *http.Request, ct string, objs []*unstructured.Unstructured, skipped []export.Skipped) {
	body, err := export.EncodeList(objs)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	contentType := ctJSON
	if ct == "application/yaml" {
		contentType = ctYAML
		if body, err = exportYAML(body, skipped); err != nil {
			writeProblem(w, r, err)
			return
		}
	}
	h := w.Header()
	h[hdrVary] = varyAccept
	h[hdrSkipped] = []string{strconv.Itoa(len(skipped))}
	writeBody(w, r, http.StatusOK, contentType, body, nil, nil)
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
