package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/write"
)

// A version registration is one entry for a version of an app, registered
// once however many pods run it and kept alive by the ready endpoints of the
// Service that network.internal names (see model.VersionLeaseID).

// versionView is a version registration as GET answers it, and as PUT does
// with written added.
type versionView struct {
	Env        string              `json:"env"`
	AppID      string              `json:"app_id"`
	Version    string              `json:"version"`
	Namespace  string              `json:"namespace"`
	Key        string              `json:"key"`
	LeaseID    int64               `json:"lease_id,string"`
	Keepalive  string              `json:"keepalive"`
	Service    serviceView         `json:"service"`
	AliveWhile string              `json:"alive_while"`
	Alive      bool                `json:"alive"`
	Endpoints  []readyEndpointView `json:"endpoints"`
	RunDate    string              `json:"run_date"`
	Network    networkView         `json:"network"`
	Kernel     kernelView          `json:"kernel"`
	Methods    []string            `json:"methods"`
	ProtoCount int                 `json:"proto_count"`
	// Written is PUT's alone: false when the entry was already as sent.
	Written *bool `json:"written,omitempty"`
}

// readyEndpointView is one endpoint that keeps a version registration alive.
type readyEndpointView struct {
	Pod      string `json:"pod"`
	NodeName string `json:"node_name,omitempty"`
	Zone     string `json:"zone,omitempty"`
}

// serviceView names the Kubernetes Service whose endpoints keep a version
// registration alive.
type serviceView struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// newVersionView renders the version registration n with the nodes the
// index made of it, one per ready endpoint.
func newVersionView(n *model.Node, indexed []*model.Node) versionView {
	svc := serviceOf(n)
	eps := make([]readyEndpointView, 0, len(indexed))
	for _, in := range indexed {
		if e := in.Endpoint; e != nil {
			eps = append(eps, readyEndpointView{Pod: e.Pod, NodeName: e.Node, Zone: e.Zone})
		}
	}
	slices.SortFunc(eps, func(a, b readyEndpointView) int { return strings.Compare(a.Pod, b.Pod) })
	return versionView{
		Env:        n.Env,
		AppID:      n.AppID,
		Version:    n.Version,
		Namespace:  n.Namespace,
		Key:        n.Key,
		LeaseID:    n.LeaseID,
		Keepalive:  model.KeepaliveService,
		Service:    serviceView{Namespace: svc.Namespace, Name: svc.Name},
		AliveWhile: aliveWhile(svc, n.Version),
		Alive:      len(eps) > 0,
		Endpoints:  eps,
		RunDate:    formatTime(n.RunDate),
		Network:    newNetworkView(n.Network),
		Kernel:     newKernelView(n.Kernel),
		Methods:    nonNil(n.Methods),
		ProtoCount: n.ProtoCount,
	}
}

// serviceOf is the Service a version registration names.
func serviceOf(n *model.Node) model.ServiceRef {
	if svc, ok := model.ServiceOfNode(n); ok {
		return svc
	}
	// Written by hand past the API's check: the address is still the best
	// guess of a name.
	return model.ServiceRef{Namespace: n.Namespace, Name: n.Network.Internal}
}

// aliveWhile says, for the operator reading an answer, what keeps a version
// registration alive.
func aliveWhile(svc model.ServiceRef, version string) string {
	return fmt.Sprintf("Service %s in namespace %s has ready endpoints on pods labelled version=%s "+
		"(when none of its pods has a version label, any ready endpoint); registry-api follows its EndpointSlices, no pod heartbeats",
		svc.Name, svc.Namespace, version)
}

// handlePutVersion serves PUT /v1/envs/{env}/apps/{appId}/versions/{version}.
// It answers 201 when the entry is new and 200 when it was there, rewritten
// or already as sent.
func handlePutVersion(wd writeDeps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		env, app, version := pathParam(r, "env"), pathParam(r, "appId"), pathParam(r, "version")
		reg, err := decodeVersionRegistration(r.Body)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		if err := recordVersionRegistrant(r, &reg); err != nil {
			writeProblem(w, r, err)
			return
		}
		ns, err := wd.chooseNamespace(r, env)
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		reg.Namespace, reg.Env, reg.AppID, reg.Version = ns, env, app, version
		res, err := wd.writer.RegisterVersion(r.Context(), reg, wd.guard(r, auth.ActionRegister, ns))
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		// The write is in the snapshot already (the writer's OnWritten):
		// its endpoints are the ones the index knows.
		var indexed []*model.Node
		if env := current(wd.snaps).Envs[env]; env != nil {
			indexed = versionNodes(env.Apps[app], version)
		}
		v := newVersionView(res.Node, indexed)
		written := !res.Unchanged
		v.Written = &written
		status := http.StatusOK
		if res.Created {
			status = http.StatusCreated
			w.Header().Set("Location", versionPath(env, app, version))
		}
		encode(w, r, status, v)
	}
}

// handleGetVersion serves GET /v1/envs/{env}/apps/{appId}/versions/{version}.
func handleGetVersion(src model.SnapshotSource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		env, app, err := pathApp(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		version := pathParam(r, "version")
		if nodes := versionNodes(app, version); len(nodes) > 0 {
			encode(w, r, http.StatusOK, newVersionView(nodes[0], nodes))
			return
		}
		writeProblem(w, r, model.Errorf(model.CodeVersionNotFound,
			"version %s of app %s is not registered in env %s (PUT /v1/envs/%s/apps/%s/versions/%s registers it)",
			version, app.ID, env.Name, env.Name, app.ID, version))
	}
}

// versionNodes are the nodes the index made of app's registration of
// version: one per ready endpoint, or the entry alone.
func versionNodes(app *model.App, version string) []*model.Node {
	if app == nil {
		return nil
	}
	lease := model.VersionLeaseID(app.ID, version)
	var out []*model.Node
	for _, n := range app.Nodes {
		if n.LeaseID == lease && n.ServiceKept {
			out = append(out, n)
		}
	}
	return out
}

// handleDeleteVersion serves DELETE /v1/envs/{env}/apps/{appId}/versions/{version}.
// A registration already gone is no error.
func handleDeleteVersion(wd writeDeps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		env, app, version := pathParam(r, "env"), pathParam(r, "appId"), pathParam(r, "version")
		ns, err := wd.chooseNamespace(r, env)
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		lease := model.VersionLeaseID(app, version)
		if err := wd.writer.Deregister(r.Context(), ns, env, app, lease, wd.guard(r, auth.ActionDeregister, ns)); err != nil {
			writeFailure(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// decodeVersionRegistration reads a version registration's body: an
// instance registration's, less what the path or the server decides (the
// version, the lease id, the keepalive), with network.internal naming a
// Kubernetes Service, whose endpoints keep the entry alive.
func decodeVersionRegistration(body io.Reader) (write.Registration, error) {
	reg, keepalive, err := decodeRegistration(body)
	if err != nil {
		return write.Registration{}, err
	}
	// The document refuses these members; a request that got past it must
	// not have them taken as asked.
	switch {
	case reg.LeaseID != 0:
		return write.Registration{}, model.Errorf(model.CodeInvalid, "request body field /lease_id: a version registration's lease id is derived from the app and the version; leave it out")
	case reg.Version != "":
		return write.Registration{}, model.Errorf(model.CodeInvalid, "request body field /version: the version is the path's; leave it out")
	case keepalive != "":
		return write.Registration{}, model.Errorf(model.CodeInvalid, "request body field /keepalive: a version registration is kept alive by its Service's ready endpoints; leave it out")
	}
	if _, err := model.ParseServiceAddress(reg.Network.Internal); err != nil {
		return write.Registration{}, model.Errorf(model.CodeInvalid, "request body field /network/internal: %v", err)
	}
	return reg, nil
}

// recordVersionRegistrant marks reg as kept alive by its Service and, with
// authentication, records who registered it. The pod a token is bound to is
// left out: every pod of a rollout sends the same registration, which stays
// one entry and one write, and outlives each of them.
func recordVersionRegistrant(r *http.Request, reg *write.Registration) error {
	ka, err := json.Marshal(model.KeepaliveService)
	if err != nil {
		return fmt.Errorf("encode %s: %w", model.MemberKeepalive, err)
	}
	reg.Extra = map[string]json.RawMessage{model.MemberKeepalive: ka}
	id, ok := identityFrom(r.Context())
	if !ok {
		return nil
	}
	rb := id.RegisteredBy()
	rb.Pod = nil
	by, err := json.Marshal(rb)
	if err != nil {
		return fmt.Errorf("encode %s: %w", model.MemberRegisteredBy, err)
	}
	reg.Extra[model.MemberRegisteredBy] = by
	return nil
}

// versionPath is the URL of a version registration.
func versionPath(env, app, version string) string {
	return "/v1/envs/" + env + "/apps/" + app + "/versions/" + version
}
