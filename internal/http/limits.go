package httpapi

import (
	"net/http"
	"strings"
	"time"

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
	// DefaultMaxInFlight bounds concurrent requests. Reads answer in
	// microseconds; writes wait for their batch and the API server, about a
	// tenth of a second, so a few hundred in flight is a busy cluster.
	DefaultMaxInFlight = 512
	// DefaultBodyReadTimeout bounds how long a request body may take to
	// arrive: a 256 KiB body needs well under a second on any cluster network.
	DefaultBodyReadTimeout = 10 * time.Second
	// DefaultMaxBodyBytes bounds the bytes of request bodies a replica holds
	// at once. The in-flight cap alone lets 512 slow bodies of 256 KiB hold
	// 128 MiB, more while they grow, on top of the registry itself
	// (BENCHMARKS.md, "Memory under hostile load"). Valid bodies are a few
	// KiB: 128 full batches fit.
	DefaultMaxBodyBytes = 32 << 20
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
