package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-chi/chi/v5"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/write"
)

// maxRegisterBody caps a registration's body: one instance's methods fit
// many times over, and a write path must not buffer megabytes per request.
const maxRegisterBody = 64 << 10

// readMethods are the methods a read-only server may still allow on a path.
var readMethods = []string{http.MethodGet, http.MethodHead}

// writeDeps is what the write handlers share.
type writeDeps struct {
	writer Writer
	snaps  model.SnapshotSource
	live   liveness
	// namespace is where writes to an env that no watched namespace holds go.
	namespace string
	// authenticated says that every write carries its caller's identity,
	// which policy judges.
	authenticated bool
	policy        auth.Policy
}

// registerRequest is the body of a registration. The network and kernel
// shapes are those of the entry; methods come as a list or as the wire map;
// the lease id as a decimal string or a number. Members left out take the
// values the Go library would write: empty strings, and proto_count derived
// from the methods.
type registerRequest struct {
	LeaseID    json.RawMessage `json:"lease_id"`
	Version    string          `json:"version"`
	Network    networkView     `json:"network"`
	Methods    json.RawMessage `json:"methods"`
	Kernel     kernelView      `json:"kernel"`
	ProtoCount *int            `json:"proto_count"`
	Keepalive  string          `json:"keepalive"`
}

// handleRegister serves POST /v1/envs/{env}/apps/{appId}/instances.
func handleRegister(wd writeDeps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		env, app := pathParam(r, "env"), pathParam(r, "appId")
		reg, keepalive, err := decodeRegistration(r.Body)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		keepalive, err = recordRegistrant(r.Context(), &reg, keepalive)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		ns, err := wd.chooseNamespace(r, env)
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		reg.Namespace, reg.Env, reg.AppID = ns, env, app
		res, err := wd.writer.Register(r.Context(), reg, wd.guard(r, auth.ActionRegister, ns))
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		w.Header().Set("Location", instancePath(env, app, res.LeaseID))
		encode(w, r, http.StatusCreated, registrationView{
			LeaseID:                  res.LeaseID,
			Key:                      res.Key,
			TTLSeconds:               wholeSeconds(wd.live.ttl),
			HeartbeatIntervalSeconds: wholeSeconds(res.HeartbeatInterval),
			Keepalive:                keepalive,
			Instance:                 newInstanceView(res.Node, wd.live.now(), wd.live.ttl),
		})
	}
}

// handleHeartbeat serves PUT /v1/envs/{env}/apps/{appId}/instances/{leaseId}/heartbeat.
func handleHeartbeat(wd writeDeps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		in, err := wd.instanceOf(r)
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		res, err := wd.writer.Heartbeat(r.Context(), in.namespace, in.env, in.app, in.lease, wd.guard(r, auth.ActionHeartbeat, in.namespace))
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		encode(w, r, http.StatusOK, heartbeatView{
			LeaseID:                  res.LeaseID,
			Key:                      res.Key,
			TTLSeconds:               wholeSeconds(wd.live.ttl),
			HeartbeatIntervalSeconds: wholeSeconds(res.HeartbeatInterval),
			RunDate:                  formatTime(res.Node.RunDate),
		})
	}
}

// handleDeregister serves DELETE /v1/envs/{env}/apps/{appId}/instances/{leaseId}.
// An instance already gone is no error: a preStop hook may run twice.
func handleDeregister(wd writeDeps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		in, err := wd.instanceOf(r)
		if err != nil {
			writeFailure(w, r, err)
			return
		}
		if err := wd.writer.Deregister(r.Context(), in.namespace, in.env, in.app, in.lease, wd.guard(r, auth.ActionDeregister, in.namespace)); err != nil {
			writeFailure(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// refuseWrites answers every request of the write routes on a server that
// takes no writes, before validation: whatever the request, it would fail.
// Allow lists what the path still serves.
func refuseWrites(routes chi.Routes) func(http.Handler) http.Handler {
	return func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(hdrAllow, strings.Join(allowedMethods(routes, r, readMethods), ", "))
			writeProblem(w, r, model.Errorf(model.CodeReadOnly,
				"this registry-api is read-only: it serves the registry but does not register, heartbeat or deregister instances (%s refused)", r.Method))
		})
	}
}

// chooseNamespace picks the namespace a write to env goes to (see
// write.ChooseNamespace). Until every watched namespace has been read,
// where an env lives is unknown, so writes wait like readiness does.
func (wd writeDeps) chooseNamespace(r *http.Request, env string) (string, error) {
	snap := current(wd.snaps)
	if !snap.Ready() {
		return "", model.Errorf(model.CodeNotReady, "registry-api has not read the registry from every watched namespace yet; retry")
	}
	var requested string
	if r.URL.RawQuery != "" {
		requested = r.URL.Query().Get("namespace")
	}
	if requested == "" {
		// A ServiceAccount may write only in its own namespace: that is
		// where its writes go unless it names one (admins aside).
		if id, ok := identityFrom(r.Context()); ok && id.IsServiceAccount() && !wd.policy.Admins.Match(id) && watches(snap, id.Namespace) {
			requested = id.Namespace
		}
	}
	return write.ChooseNamespace(snap, env, requested, wd.namespace)
}

// writeFailure answers a failed write. A caller whose deadline passed may
// still see its write applied, so that is a 503 to retry, not a 500; 503s
// say when to retry.
func writeFailure(w http.ResponseWriter, r *http.Request, err error) {
	var me *model.Error
	if !errors.As(err, &me) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		err = &model.Error{Code: model.CodeStoreUnavailable, Message: "the write did not complete in time and may still be applied; retry", Err: err}
	}
	writeProblem(w, r, err)
}

// instance is the registered instance a heartbeat or deregistration names.
type instance struct {
	namespace, env, app string
	lease               int64
}

// instanceOf reads the instance from the path and picks its namespace.
func (wd writeDeps) instanceOf(r *http.Request) (instance, error) {
	lease, err := leaseParam(r)
	if err != nil {
		return instance{}, err
	}
	env := pathParam(r, "env")
	ns, err := wd.chooseNamespace(r, env)
	if err != nil {
		return instance{}, err
	}
	return instance{namespace: ns, env: env, app: pathParam(r, "appId"), lease: lease}, nil
}

// leaseParam reads {leaseId} with strconv, never through a float64, and only
// in its canonical decimal form, so that an instance has exactly one URL.
func leaseParam(r *http.Request) (int64, error) {
	return parseLeaseID(pathParam(r, "leaseId"))
}

// parseLeaseID reads a lease id as {leaseId} carries it.
func parseLeaseID(raw string) (int64, error) {
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != raw {
		return 0, leaseParamError(raw)
	}
	return id, nil
}

// leaseParamError is the one answer to a {leaseId} that is not a lease id,
// whether the document's pattern or leaseParam finds it out.
func leaseParamError(raw string) error {
	return boundedError(model.CodeInvalid, fmt.Sprintf(
		`path parameter "leaseId": %q is not an integer from 1 to 9223372036854775807 in plain decimal`, clip(raw, maxDetailValue)))
}

// watches reports whether snap's poller reads namespace.
func watches(snap *model.Snapshot, namespace string) bool {
	return snap.Namespaces.Has(namespace)
}

// recordRegistrant adds to reg who registers it and who keeps it alive, and
// returns the latter: the leader for a pod-bound token unless the request
// asks for "client", the client otherwise. Without authentication nothing is
// recorded, and nobody but the client can keep the entry alive.
func recordRegistrant(ctx context.Context, reg *write.Registration, keepalive string) (string, error) {
	id, ok := identityFrom(ctx)
	switch {
	case keepalive == model.KeepalivePod && !ok:
		return "", model.Errorf(model.CodeInvalid,
			`request body field /keepalive: "pod" needs authentication (REGISTRY_AUTH=kubernetes) with a token bound to a pod; this server authenticates nobody`)
	case keepalive == model.KeepalivePod && id.Pod == nil:
		return "", model.Errorf(model.CodeInvalid,
			`request body field /keepalive: "pod" needs a token bound to a pod (a projected ServiceAccount token mounted in the pod); this token names no pod`)
	case keepalive == "" && ok && id.Pod != nil:
		keepalive = model.KeepalivePod
	case keepalive == "":
		keepalive = model.KeepaliveClient
	}
	if !ok {
		return keepalive, nil
	}
	by, err := json.Marshal(id.RegisteredBy())
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", model.MemberRegisteredBy, err)
	}
	ka, err := json.Marshal(keepalive)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", model.MemberKeepalive, err)
	}
	reg.Extra = map[string]json.RawMessage{model.MemberRegisteredBy: by, model.MemberKeepalive: ka}
	return keepalive, nil
}

// decodeRegistration reads a registration body that the API document has
// already checked, and checks what the document cannot express. It returns
// the requested keepalive apart: the registration records it only with the
// caller's identity.
func decodeRegistration(body io.Reader) (write.Registration, string, error) {
	var req registerRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return write.Registration{}, "", &model.Error{Code: model.CodeInvalid, Message: "request body is not a valid registration", Err: err}
	}
	lease, err := leaseIDOf(req.LeaseID)
	if err != nil {
		return write.Registration{}, "", err
	}
	methods, err := methodsOf(req.Methods)
	if err != nil {
		return write.Registration{}, "", err
	}
	if err := checkInternal(req.Network.Internal); err != nil {
		return write.Registration{}, "", err
	}
	// The library writes how many gRPC services the server registered; each
	// service contributes its methods, so their distinct services count them.
	protoCount := serviceCount(methods)
	if req.ProtoCount != nil {
		protoCount = *req.ProtoCount
	}
	return write.Registration{
		LeaseID:    lease,
		Version:    req.Version,
		Network:    model.Network{SN: req.Network.SN, Internal: req.Network.Internal, External: req.Network.External},
		Methods:    methods,
		Kernel:     model.Kernel{Language: req.Kernel.Language, Version: req.Kernel.Version},
		ProtoCount: protoCount,
	}, req.Keepalive, nil
}

// leaseIDOf reads the body's lease_id, a decimal string or a number, with
// strconv and never through a float64; absent or null is 0, which asks the
// writer to choose one.
func leaseIDOf(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			text = ""
		}
	}
	id, err := strconv.ParseInt(text, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != text {
		// A number past int64 slips through the document's check, which
		// compares numbers as float64.
		return 0, &model.Error{Code: model.CodeInvalid, Message: leaseIDMessage, Err: err}
	}
	return id, nil
}

const leaseIDMessage = "request body field /lease_id: must be an integer from 1 to 9223372036854775807, as a decimal string or a number"

// serviceCount is how many distinct gRPC services methods, sorted, name.
func serviceCount(methods []string) int {
	n := 0
	for i, m := range methods {
		if i == 0 || model.ServiceOf(m) != model.ServiceOf(methods[i-1]) {
			n++
		}
	}
	return n
}

// methodsOf reads methods as a list of names or as the entry's own map of
// name to true (names mapped to false are not registered), sorted and
// without duplicates.
func methodsOf(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	var names []string
	var err error
	switch {
	case len(raw) > 0 && raw[0] == '[':
		err = json.Unmarshal(raw, &names)
	case len(raw) > 0 && raw[0] == '{':
		var set map[string]bool
		if err = json.Unmarshal(raw, &set); err == nil {
			for name, on := range set {
				if on {
					names = append(names, name)
				}
			}
		}
	default:
		err = errors.New("neither an array nor an object")
	}
	if err != nil {
		return nil, &model.Error{Code: model.CodeInvalid,
			Message: `request body field /methods: must be an array of gRPC method names or an object mapping each to true`, Err: err}
	}
	for _, name := range names {
		if !model.ValidMethodName(name) {
			return nil, model.Errorf(model.CodeMalformedMethod,
				"request body field /methods: %q is not a full gRPC method name (/<package>.<Service>/<Method>)", name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// checkInternal requires network.internal to be host:port with a port from 1
// to 65535: it is what callers dial.
func checkInternal(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err != nil:
	case host == "":
		err = errors.New("the host is empty")
	case strings.ContainsFunc(host, unicode.IsSpace):
		err = errors.New("the host contains white space")
	default:
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || n == 0 {
			err = fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	if err != nil {
		return &model.Error{Code: model.CodeInvalid,
			Message: fmt.Sprintf("request body field /network/internal: %q is not host:port: %v", addr, err)}
	}
	return nil
}

// instancePath is the URL of an instance, the Location of its registration.
func instancePath(env, app string, lease int64) string {
	return "/v1/envs/" + env + "/apps/" + app + "/instances/" + strconv.FormatInt(lease, 10)
}

// wholeSeconds renders an interval for shell clients: whole seconds, at
// least one, so that `sleep` never spins.
func wholeSeconds(d time.Duration) int64 {
	return max(int64(d/time.Second), 1)
}
