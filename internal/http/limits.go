package httpapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/jsonscan"
	"github.com/acme/registry-api/internal/metrics"
	"github.com/acme/registry-api/internal/model"
)

// Limits that no valid request comes near. They are checked before routing
// or validation, so that a hostile request costs a few microseconds and a
// bounded number of bytes whatever its shape. openapi.yaml and the README
// state each of them.
const (
	// maxPathBytes caps the escaped path: a gRPC method name (at most 1024
	// bytes) percent-encoded whole, with its env, still fits.
	maxPathBytes = 4096
	// maxQueryBytes caps the raw query string.
	maxQueryBytes = 2048
	// maxQueryParams caps the number of query parameters; no route takes
	// more than a handful.
	maxQueryParams = 16
	// maxJSONDepth caps the nesting of a request body: the deepest valid
	// request nests objects and arrays two levels deep.
	maxJSONDepth = 8
	// maxResolveBody caps a batch resolution's body: 1000 method names of
	// 250 bytes each, with room to spare. Longer names fit in smaller batches.
	maxResolveBody = 256 << 10
	// maxDetailValue caps how much of a request's own value a problem's
	// detail or a log line quotes back.
	maxDetailValue = 64
	// maxDetail caps a validation problem's detail.
	maxDetail = 300
	// maxLoggedError caps the error text of a request's log line.
	maxLoggedError = 512
	// maxLoggedPath caps the path of a request's log line.
	maxLoggedPath = 256
)

// LargestBody is the largest request body any route takes: a body budget
// (Deps.MaxBodyBytes) below it would refuse valid requests.
const LargestBody = max(maxResolveBody, maxRegisterBody)

// Defaults of the limits an operator can change (Deps).
const (
	// defaultMaxInFlight bounds concurrent requests. Reads answer in
	// microseconds; writes wait for their batch and the API server, about a
	// tenth of a second, so a few hundred in flight is a busy cluster.
	defaultMaxInFlight = 512
	// defaultBodyReadTimeout bounds how long a request body may take to
	// arrive: a 256 KiB body needs well under a second on any cluster network.
	defaultBodyReadTimeout = 10 * time.Second
	// defaultMaxBodyBytes bounds the bytes of request bodies a replica holds
	// at once. The in-flight cap alone lets 512 slow bodies of 256 KiB hold
	// 128 MiB, more while they grow, on top of the registry itself
	// (BENCHMARKS.md, "Memory under hostile load"). Valid bodies are a few
	// KiB: 128 full batches fit.
	defaultMaxBodyBytes = 32 << 20
)

// checkTarget refuses a request whose target is larger than any route
// takes, before chi or the validator look at it.
func checkTarget(r *http.Request) error {
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	if len(path) > maxPathBytes {
		return model.Errorf(model.CodeURITooLong, "the request path is %d bytes long; at most %d are accepted", len(path), maxPathBytes)
	}
	q := r.URL.RawQuery
	if len(q) > maxQueryBytes {
		return model.Errorf(model.CodeURITooLong, "the query string is %d bytes long; at most %d are accepted", len(q), maxQueryBytes)
	}
	if q != "" {
		if n := strings.Count(q, "&") + strings.Count(q, ";") + 1; n > maxQueryParams {
			return model.Errorf(model.CodeURITooLong, "the query string has %d parameters; at most %d are accepted", n, maxQueryParams)
		}
	}
	return nil
}

// readBody reads a JSON request body whole, within limit bytes and the
// server's body deadline, and checks that it is exactly one JSON value
// nested at most maxJSONDepth deep. It runs before the validator, whose
// error texts and allocations grow with a body's depth.
//
// A body that is not JSON by its Content-Type is left to the validator,
// which refuses it as unsupported after reading nothing.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	// Given the connection's own writer, MaxBytesReader also tells the
	// server to close the connection rather than drain the rest.
	if rec, ok := w.(*recorder); ok {
		w = rec.ResponseWriter
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		// The deadline was for the body alone: an answer may take its time,
		// and a read deadline left on the connection would end it. After a
		// failed read it stays, so that the server's drain of the rest of
		// the body fails at once too and the connection closes.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, tooLarge(limit)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, &model.Error{Code: model.CodeRequestTimeout, Message: "the request body did not arrive in time", Err: err}
		case errors.As(err, new(*model.Error)):
			return nil, err // the body budget's
		default:
			return nil, &model.Error{Code: model.CodeInvalid, Message: "the request body could not be read", Err: err}
		}
	}
	if err := checkJSON(body, maxJSONDepth); err != nil {
		return nil, err
	}
	return body, nil
}

func tooLarge(limit int64) error {
	return model.Errorf(model.CodePayloadTooLarge, "request body is larger than %d bytes", limit)
}

// isJSON reports whether a Content-Type names JSON (application/json or a
// +json type).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// checkJSON checks in one pass, without allocating, that b holds exactly
// one JSON value nested at most maxDepth deep, in valid UTF-8. It stops at
// the first byte that breaks a rule, so a hostile body costs at most its
// length.
func checkJSON(b []byte, maxDepth int) error {
	s := jsonscan.Scanner[[]byte]{B: b, MaxDepth: maxDepth, UTF8: true}
	s.Space()
	if s.Pos == len(b) {
		return model.Errorf(model.CodeInvalid, "request body is empty; a JSON value is required")
	}
	if err := s.Value(); err != nil {
		var syntax *jsonscan.SyntaxError
		switch {
		case errors.As(err, &syntax) && syntax.EOF:
			return model.Errorf(model.CodeInvalid, "request body is not valid JSON: it ends early, %s", syntax.What)
		case errors.As(err, &syntax):
			return model.Errorf(model.CodeInvalid, "request body is not valid JSON: at byte %d, %s", syntax.Offset, syntax.What)
		}
		return model.Errorf(model.CodeInvalid, "request body nests deeper than %d levels", maxDepth)
	}
	s.Space()
	if s.Pos != len(b) {
		return model.Errorf(model.CodeInvalid, "request body has data after its JSON value, at byte %d: %s", s.Pos, quoteValue(b[s.Pos:]))
	}
	return nil
}

// quoteValue quotes at most maxDetailValue bytes of a client's value, for a
// problem's detail or a log line.
func quoteValue[T ~string | ~[]byte](v T) string {
	s := string(v[:min(len(v), maxDetailValue)])
	q := strconv.Quote(s)
	if len(v) > maxDetailValue {
		q += fmt.Sprintf(" (%d more bytes)", len(v)-maxDetailValue)
	}
	return q
}

// clip cuts s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("… (%d bytes cut)", len(s)-cut)
}

// admission holds the per-replica limits every request passes before it is
// routed: the shape of its target, the deadline of its body, the cap on
// concurrent requests and the budget of the bytes their bodies hold.
type admission struct {
	maxInFlight  int64
	bodyTimeout  time.Duration
	maxBodyBytes int64
	inFlight     atomic.Int64
	bodyBytes    atomic.Int64
	metrics      *admissionMetrics
}

// budgetedBody counts the bytes read from a request's body against the
// replica's body budget, until its request is answered. A read that takes
// the replica past the budget fails as overloaded: what is held is held by
// bodies still arriving, which the budget frees as they are answered.
type budgetedBody struct {
	io.ReadCloser
	a    *admission
	w    http.ResponseWriter
	held int64
}

func (b *budgetedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.held += int64(n)
	if total := b.a.bodyBytes.Add(int64(n)); total > b.a.maxBodyBytes && n > 0 {
		b.a.metrics.shed.Inc()
		// What remains of this body is not worth waiting for: the server's
		// drain of it fails at once and the connection closes.
		_ = http.NewResponseController(b.w).SetReadDeadline(time.Now())
		return 0, model.Errorf(model.CodeOverloaded,
			"this replica holds %d bytes of request bodies, its limit; retry in a second", b.a.maxBodyBytes)
	}
	return n, err
}

func (b *budgetedBody) release() { b.a.bodyBytes.Add(-b.held) }

// admit applies admission to every request. A request beyond the cap is
// answered 503 at once rather than queued: a queue would hold its memory
// and answer it late, when its client may have given up. Probes and
// metrics are never shed, so that an overloaded replica is seen as such
// rather than restarted.
func (s *server) admit(next http.Handler) http.Handler {
	a := s.admission
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkTarget(r); err != nil {
			writeProblem(w, r, err)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			// Cleared by readBody once the body is in; left on for a body
			// no handler reads, it bounds the server's drain of it too.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.bodyTimeout))
			// In place, not on a copy: routing fills in r.Pattern for
			// observe to log. r is chi's own copy of the server's request.
			body := &budgetedBody{ReadCloser: r.Body, a: a, w: w}
			defer body.release()
			r.Body = body
		}
		if exemptFromCap(r) {
			next.ServeHTTP(w, r)
			return
		}
		if n := a.inFlight.Add(1); n > a.maxInFlight {
			a.inFlight.Add(-1)
			a.metrics.shed.Inc()
			writeProblem(w, r, model.Errorf(model.CodeOverloaded,
				"this replica is answering %d requests, its limit; retry in a second", a.maxInFlight))
			return
		}
		a.metrics.inFlight.Inc()
		defer func() {
			a.inFlight.Add(-1)
			a.metrics.inFlight.Dec()
		}()
		next.ServeHTTP(w, r)
	})
}

// exemptFromCap reports whether r is one of the requests the in-flight cap
// does not count: the probes and the metrics, and the event streams and
// blocked queries, which stay open for minutes and have their own cap
// (Deps.MaxFollowers): counted here, a few hundred gateways following the
// registry would shed every ordinary read.
func exemptFromCap(r *http.Request) bool {
	if longLived(r) {
		return true
	}
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

type admissionMetrics struct {
	inFlight prometheus.Gauge
	shed     prometheus.Counter
}

func newAdmissionMetrics(reg prometheus.Registerer) (*admissionMetrics, error) {
	inFlight, err := metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "registry_api_http_in_flight_requests",
		Help: "HTTP requests being answered that count against REGISTRY_MAX_IN_FLIGHT.",
	}))
	if err != nil {
		return nil, err
	}
	shed, err := metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "registry_api_http_shed_total",
		Help: "HTTP requests answered 503 overloaded because REGISTRY_MAX_IN_FLIGHT requests were in flight, or because request bodies held the replica's body budget.",
	}))
	if err != nil {
		return nil, err
	}
	return &admissionMetrics{inFlight: inFlight, shed: shed}, nil
}
