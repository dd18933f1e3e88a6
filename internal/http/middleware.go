package httpapi

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/acme/registry-api/internal/model"
)

// recorder is the ResponseWriter that observe hands down: it remembers what
// the request log and metrics report, including the error writeProblem saw.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	err    error
	// retryHeartbeat is the Retry-After of retryHeartbeat problems.
	retryHeartbeat []string
	// capture, when set, remembers the answer to keep it (answers.go).
	capture *capture
	// pattern is the route that answered, which routing reports (routed)
	// or a kept answer carries; empty when no route matched.
	pattern string
	// routed is the router's copy of the request, with its path values;
	// nil when the router did not run (a replayed answer).
	routed *http.Request
	// metrics, when set, are the route's series, resolved beforehand.
	metrics *routeMetrics
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
		if rec.capture != nil {
			rec.capture.writeHeader(status, rec.ResponseWriter.Header())
		}
	}
	rec.ResponseWriter.WriteHeader(status)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.capture != nil {
		rec.capture.write(b)
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// observe logs every request, records its metrics and turns a panic into a
// 500 problem. It runs before routing, which reports its route (routed).
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := recorderPool.Get().(*recorder)
		*rec = recorder{ResponseWriter: w, retryHeartbeat: s.retryHeartbeat}
		s.serveRecovering(next, rec, r)
		elapsed := time.Since(start)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}

		pattern, rm := rec.pattern, rec.metrics
		if rm == nil {
			rm = s.metrics.forRoute(r.Method, pattern)
		}
		rm.observe(status, elapsed.Seconds())

		level := zerolog.InfoLevel
		switch {
		case status >= 500 && !describesData(rec.err):
			level = zerolog.ErrorLevel
		case status >= 400:
			// The client's doing, or the registry's content: worth seeing,
			// not the service failing.
			level = zerolog.WarnLevel
		case pattern == "/healthz" || pattern == "/readyz" || pattern == "/metrics":
			level = zerolog.DebugLevel
		}
		if ev := s.log.WithLevel(level); ev != nil {
			ev.Str("route", rm.route).
				Str("method", r.Method).
				Str("path", clip(r.URL.Path, maxLoggedPath)).
				Int("status", status).
				Int64("bytes", rec.bytes).
				Dur("duration", elapsed)
			if rec.err != nil {
				// Bounded: an error may quote what a client sent.
				ev.Str("code", string(model.ErrorCode(rec.err))).Str(zerolog.ErrorFieldName, clip(rec.err.Error(), maxLoggedError))
			}
			ev.Msg("request")
		}
		*rec = recorder{}
		recorderPool.Put(rec)
	})
}

// routed is the router's first middleware: it tells observe, outside the
// router, which route answered. r is the router's own copy of the request,
// on which chi fills in r.Pattern while routing.
func routed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Deferred: a handler that panics is still logged and counted
		// under its route.
		defer func() {
			if rec, ok := w.(*recorder); ok {
				rec.pattern, rec.routed = r.Pattern, r
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// describesData reports whether a 5xx answer states what the registry holds
// (nothing alive, not read yet, full) rather than a failure of the service.
func describesData(err error) bool {
	switch model.ErrorCode(err) {
	case model.CodeNoLiveInstances, model.CodeNotReady, model.CodeRegistryFull:
		return true
	case model.CodeOverloaded:
		// The load's doing, not a fault: under a flood, one error line per
		// shed request would bury the service's real failures.
		return true
	}
	return false
}

func (s *server) serveRecovering(next http.Handler, rec *recorder, r *http.Request) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v) // the server's way to abort a response; let it
		}
		err := fmt.Errorf("panic: %v", v)
		s.log.Error().Str("path", r.URL.Path).Str("stack", string(debug.Stack())).Err(err).Msg("handler panicked")
		if rec.status == 0 {
			writeProblem(rec, r, err)
		} else {
			rec.err = err
		}
	}()
	next.ServeHTTP(rec, r)
}

// validate checks a request against its operation in openapi.yaml before the
// handler runs. It sits inside the routed group, so r.Pattern names the route.
func (s *server) validate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.spec.validateRequest(w, r); err != nil {
			writeProblem(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// notFound answers requests that match no route.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, model.Errorf(model.CodeNotFound, "no route for %s", quoteValue(r.URL.EscapedPath())))
}

// docsNotFound answers a path below /docs that names no Swagger UI file,
// naming the path as the client sent it, before /docs was stripped.
func docsNotFound(w http.ResponseWriter, r *http.Request) {
	u := *r.URL
	u.Path, u.RawPath = "/docs"+u.Path, ""
	r2 := *r
	r2.URL = &u
	notFound(w, &r2)
}

// allowedMethods are those of methods that routes serve on r's path, for
// an Allow header.
func allowedMethods(routes chi.Routes, r *http.Request, methods []string) []string {
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	var allowed []string
	for _, m := range methods {
		if routes.Match(chi.NewRouteContext(), routeMethod(m), path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// methodNotAllowed answers requests whose path is routed for other methods,
// listing those in Allow; chi hands a custom handler no such list, so it
// asks the router.
func methodNotAllowed(routes chi.Routes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		allowed := allowedMethods(routes, r, knownMethods[:])
		if len(allowed) == 0 {
			// chi routes an unknown method here whatever the path; a path
			// that no method serves is unknown.
			notFound(w, r)
			return
		}
		w.Header().Set(hdrAllow, strings.Join(allowed, ", "))
		writeProblem(w, r, model.Errorf(model.CodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.EscapedPath()))
	}
}
