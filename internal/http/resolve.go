package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/acme/registry-api/internal/model"
)

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
		if memo := m.Memo.Load(); memo != nil && memoCurrent(memo, m, live, now) {
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
			m.Memo.Store(&model.RenderMemo{AliveCounts: counts})
		}
		return nil, nil, nil, noLiveInstances(m, env, version)
	}

	view := resolutionView{
		Method:    m.Name,
		AppID:     claim.AppID,
		Targets:   targets(nodes),
		Instances: make([]resolvedInstanceView, len(nodes)),
	}
	for i, n := range nodes {
		view.Instances[i] = resolvedInstanceView{
			Key:       n.Key,
			LeaseID:   n.LeaseID,
			Namespace: n.Namespace,
			Version:   n.Version,
			RunDate:   formatTime(n.RunDate),
			Network:   newNetworkView(n.Network),
			Kernel:    newKernelView(n.Kernel),
		}
	}
	if len(m.Claims) > 1 {
		view.Conflict = &conflictView{Claimants: make([]claimantView, len(m.Claims)), Rule: conflictRule}
		for i, c := range m.Claims {
			view.Conflict.Claimants[i] = claimantView{AppID: c.AppID, AliveInstances: counts[i]}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(view); err != nil {
		return nil, nil, nil, fmt.Errorf("encode resolution of %s: %w", m.Name, err)
	}
	body = buf.Bytes()
	etag = []string{bodyETag(body)}
	length = contentLength(body)
	if version == "" {
		m.Memo.Store(&model.RenderMemo{AliveCounts: counts, Body: body, ETag: etag, ContentLength: length})
	}
	return body, etag, length, nil
}

// memoCurrent reports whether memo was rendered for the alive counts that
// m's claims have at now.
func memoCurrent(memo *model.RenderMemo, m *model.Method, live liveness, now time.Time) bool {
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

// targets groups nodes, freshest first, by the address clients connect to:
// Service DNS names first, as they survive pod restarts, then IP literals;
// within each, freshest heartbeat first.
func targets(nodes []*model.Node) []targetView {
	var out []targetView
	index := make(map[string]int, len(nodes))
	for _, n := range nodes {
		i, ok := index[n.Network.Internal]
		if !ok {
			i = len(out)
			index[n.Network.Internal] = i
			// The first node seen is the freshest: its external address wins.
			out = append(out, targetView{Internal: n.Network.Internal, External: n.Network.External})
		}
		t := &out[i]
		t.Instances++
		if !slices.Contains(t.Versions, n.Version) {
			t.Versions = append(t.Versions, n.Version)
		}
	}
	for i := range out {
		slices.Sort(out[i].Versions)
	}
	slices.SortStableFunc(out, func(a, b targetView) int {
		ai, bi := isIPLiteral(a.Internal), isIPLiteral(b.Internal)
		switch {
		case ai == bi:
			return 0
		case bi:
			return -1
		}
		return 1
	})
	return out
}

// isIPLiteral reports whether an address's host is an IP rather than a name.
func isIPLiteral(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return net.ParseIP(host) != nil
}
