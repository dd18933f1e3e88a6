package httpapi

import (
	"fmt"
	"time"

	"github.com/acme/registry-api/internal/model"
)

// resolutionMemo is a method's rendered resolution and the liveness state
// it was rendered for, kept on the method (model.Method.Derived).
type resolutionMemo struct {
	AliveCounts []int
	// Body is nil when no claimant had a live instance.
	Body []byte
	ETag []string
	// ContentLength is Body's Content-Length header value.
	ContentLength []string
}

// conflictRule states model.Method.Winner for clients.
const conflictRule = "the first claimant by app id that has an alive instance wins; when none has one, the first by app id"

// resolve renders the resolution of method in env at the request's moment,
// as a JSON body with its ETag and Content-Length, or fails with a
// *model.Error.
//
// Without a version filter the rendering is memoized on the method: the
// alive instances of a claim are a prefix of its freshest-first nodes, so the
// claims' alive counts determine the whole body.
func resolve(env *model.EnvIndex, method, version string, live liveness) (body []byte, etag, length []string, err error) {
	m := env.Methods[method]
	if m == nil {
		if !model.ValidMethodName(method) {
			return nil, nil, nil, model.Errorf(model.CodeMalformedMethod, "%q is not a full gRPC method name (/<package>.<Service>/<Method>)", method)
		}
		return nil, nil, nil, model.Errorf(model.CodeMethodNotFound, "no app registers %s in env %q", method, env.Name)
	}
	now := live.now()
	if version == "" {
		if memo, _ := m.Derived.Load().(*resolutionMemo); memo != nil && memoCurrent(memo, m, live, now) {
			if memo.Body == nil {
				return nil, nil, nil, noLiveInstances(m, env, "")
			}
			return memo.Body, memo.ETag, memo.ContentLength, nil
		}
	}

	counts := make([]int, len(m.Claims))
	for i, c := range m.Claims {
		counts[i] = model.AliveCount(c.Nodes, now, live.ttl)
	}
	winner := m.Winner(now, live.ttl)
	claim := m.Claims[winner]
	nodes := claim.Nodes[:counts[winner]]
	if version != "" {
		nodes = filterVersion(nodes, version)
	}
	if len(nodes) == 0 {
		if version == "" {
			// Remember the failure too: a method whose instances all died
			// is asked for again and again by retrying clients.
			m.Derived.Store(&resolutionMemo{AliveCounts: counts})
		}
		return nil, nil, nil, noLiveInstances(m, env, version)
	}

	route := m.RouteFor(now, live.ttl, version)
	view := resolutionView{
		Method:    m.Name,
		AppID:     claim.AppID,
		Targets:   newTargetViews(route.Targets),
		Instances: make([]resolvedInstanceView, len(nodes)),
	}
	for i, n := range nodes {
		view.Instances[i] = resolvedInstanceView{
			Key:          n.Key,
			LeaseID:      n.LeaseID,
			Namespace:    n.Namespace,
			Version:      n.Version,
			RunDate:      formatTime(n.RunDate),
			Network:      newNetworkView(n.Network),
			Kernel:       newKernelView(n.Kernel),
			endpointView: newEndpointView(n),
		}
	}
	if len(m.Claims) > 1 {
		view.Conflict = &conflictView{Claimants: make([]claimantView, len(m.Claims)), Rule: conflictRule}
		for i, c := range m.Claims {
			view.Conflict.Claimants[i] = claimantView{AppID: c.AppID, AliveInstances: counts[i]}
		}
	}
	body, err = marshal(view)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode resolution of %s: %w", m.Name, err)
	}
	// The tag follows the route alone (see routeETag), not the instance
	// details that move with every heartbeat.
	if etag, err = routeETag(&route); err != nil {
		return nil, nil, nil, err
	}
	length = contentLength(body)
	if version == "" {
		m.Derived.Store(&resolutionMemo{AliveCounts: counts, Body: body, ETag: etag, ContentLength: length})
	}
	return body, etag, length, nil
}

// memoCurrent reports whether memo was rendered for the alive counts that
// m's claims have at now.
func memoCurrent(memo *resolutionMemo, m *model.Method, live liveness, now time.Time) bool {
	if len(memo.AliveCounts) != len(m.Claims) {
		return false
	}
	for i, c := range m.Claims {
		if model.AliveCount(c.Nodes, now, live.ttl) != memo.AliveCounts[i] {
			return false
		}
	}
	return true
}

// noLiveInstances explains an empty resolution: a version that no claimant
// has, alive or stale, is not there to wait for (404); otherwise instances
// exist but none is alive, which a retry may change (503).
func noLiveInstances(m *model.Method, env *model.EnvIndex, version string) error {
	if version != "" && !hasVersion(m, version) {
		return model.Errorf(model.CodeVersionNotFound, "no instance of version %q, alive or stale, registers %s in env %q", version, m.Name, env.Name)
	}
	if version != "" {
		return model.Errorf(model.CodeNoLiveInstances, "no live instance of version %q serves %s in env %q", version, m.Name, env.Name)
	}
	return model.Errorf(model.CodeNoLiveInstances, "every instance that registers %s in env %q is stale", m.Name, env.Name)
}

// hasVersion reports whether any node of any claim of m has version.
func hasVersion(m *model.Method, version string) bool {
	for _, c := range m.Claims {
		for _, n := range c.Nodes {
			if n.Version == version {
				return true
			}
		}
	}
	return false
}

func filterVersion(nodes []*model.Node, version string) []*model.Node {
	var out []*model.Node
	for _, n := range nodes {
		if n.Version == version {
			out = append(out, n)
		}
	}
	return out
}
