package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// BenchmarkResolveHandler measures the hot path through the full handler:
// router, request log, metrics, validation against openapi.yaml, handler.
func BenchmarkResolveHandler(b *testing.B) {
	for _, bc := range []struct{ name, target string }{
		{"plain", loginPath},
		{"percent-encoded", "/v1/envs/prod/methods/%2Facme.user.v1.UserService%2FLogin"},
		{"conflict", chargePath},
		{"version", refundPath + "?version=v2"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchServer(b)
			r := httptest.NewRequest(http.MethodGet, bc.target, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			checkResponse(b, h, r, w)
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w.Body.Reset()
				h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkResolveNotModified is a gateway revalidating its cached answer.
func BenchmarkResolveNotModified(b *testing.B) {
	h := benchServer(b)
	r := httptest.NewRequest(http.MethodGet, loginPath, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	r.Header.Set("If-None-Match", w.Header().Get("ETag"))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

func benchServer(b *testing.B) *server {
	b.Helper()
	h, err := newServer(Deps{
		// Info, like production: every request is logged.
		Log:        zerolog.New(io.Discard).Level(zerolog.InfoLevel),
		Snapshots:  newSource(fixtureSnapshot(b)),
		Now:        func() time.Time { return t0 },
		Prometheus: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkSmallReads serves the load test's small read views (make
// loadtest) through the full handler over a 200-instance env, with the
// production logger at info: what each request pays on top of its body.
func BenchmarkSmallReads(b *testing.B) {
	nodes := benchEnvNodes()
	for _, bc := range []struct{ name, target string }{
		{"resolution", "/v1/envs/prod/methods/acme.app3.v1.Service/M5"},
		{"routes of one app", "/v1/envs/prod/routes?app=app-3"},
		{"empty answer", "/v1/envs/prod/routes?app=app-none"},
	} {
		b.Run(bc.name, func(b *testing.B) { benchServe(b, nodes, bc.target) })
		b.Run(bc.name+"/bare handler", func(b *testing.B) { benchBare(b, nodes, bc.target) })
	}
}

// benchBare is the baseline of benchServe: a bare handler that writes the
// registry's answer to target, headers and body, as the load test's does.
func benchBare(b *testing.B, nodes []node, target string) {
	h, err := newServer(Deps{Log: zerolog.Nop(), Snapshots: newSource(buildSnapshot(t0, nodes...)),
		Now: func() time.Time { return t0 }, Prometheus: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	header, body := w.Header().Clone(), w.Body.Bytes()
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		dst := w.Header()
		for k, v := range header {
			dst[k] = v
		}
		_, _ = w.Write(body)
	})
	r := httptest.NewRequest(http.MethodGet, target, nil)
	w = httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		w.Body.Reset()
		bare.ServeHTTP(w, r)
	}
}
