package httpapi

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                  false,
		"gzip":              true,
		"GZIP":              true,
		"x-gzip":            true,
		"br, gzip;q=0.5":    true,
		"gzip;q=0":          false,
		"gzip; q=0.0":       false,
		"identity":          false,
		"*":                 true,
		"*;q=0":             false,
		"gzip;q=0, *":       false,
		"deflate, *;q=0.1":  true,
		"gzip;q=nonsense":   true,
		"br;q=1, gzip;q=1 ": true,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if header != "" {
			r.Header.Set("Accept-Encoding", header)
		}
		if got := acceptsGzip(r); got != want {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", header, got, want)
		}
	}
}

// largeRegistry publishes an env whose routes view and exports are large
// enough to be compressed: 20 apps of 3 instances, 20 methods each.
func largeRegistry(h *harness) {
	h.src.Publish(buildSnapshot(t0, appNodes(20, 3)...))
}

func gunzip(t *testing.T, body []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Large answers go compressed to a client that asks: the same content under
// a tag of its own, revalidated against that tag; small ones stay plain.
func TestLargeAnswersCompressed(t *testing.T) {
	h := newHarness(t)
	largeRegistry(h)
	gz := map[string]string{"Accept-Encoding": "gzip"}
	for _, target := range []string{
		"/v1/envs/prod/routes",
		"/v1/routes",
		"/v1/envs/prod/routes?version=v1",
		"/v1/envs/prod/export/grpcroutes",
		"/v1/envs/prod/export/istio",
	} {
		plain := h.get(target)
		packed := h.do(request{target: target, header: gz})
		again := h.do(request{target: target, header: gz})
		if plain.Code != http.StatusOK || packed.Code != http.StatusOK {
			t.Fatalf("%s: %d, %d", target, plain.Code, packed.Code)
		}
		if plain.Body.Len() < minGzipBytes {
			t.Fatalf("%s: %d bytes, too small for the test", target, plain.Body.Len())
		}
		if got := packed.Header().Get("Content-Encoding"); got != "gzip" {
			t.Errorf("%s: Content-Encoding %q", target, got)
		}
		if plain.Header().Get("Content-Encoding") != "" {
			t.Errorf("%s: compressed without being asked", target)
		}
		for _, rec := range []*httptest.ResponseRecorder{plain, packed} {
			if vary := rec.Header().Values("Vary"); len(vary) != 1 || !strings.HasSuffix(vary[0], "Accept-Encoding") {
				t.Errorf("%s: Vary %q", target, vary)
			}
		}
		if !bytes.Equal(gunzip(t, packed.Body.Bytes()), plain.Body.Bytes()) {
			t.Errorf("%s: the compressed answer decodes to other bytes", target)
		}
		if !bytes.Equal(packed.Body.Bytes(), again.Body.Bytes()) {
			t.Errorf("%s: two compressions differ", target)
		}
		plainTag, packedTag := plain.Header().Get("ETag"), packed.Header().Get("ETag")
		if packedTag == plainTag || packedTag != gzipTag(plainTag) || again.Header().Get("ETag") != packedTag {
			t.Errorf("%s: tags plain %s, gzip %s, again %s", target, plainTag, packedTag, again.Header().Get("ETag"))
		}
		if packed.Header().Get("Content-Length") != strconv.Itoa(packed.Body.Len()) {
			t.Errorf("%s: Content-Length %s for %d bytes", target, packed.Header().Get("Content-Length"), packed.Body.Len())
		}
		if packed.Body.Len()*3 > plain.Body.Len() {
			t.Errorf("%s: %d bytes compressed from %d", target, packed.Body.Len(), plain.Body.Len())
		}
		// Each form revalidates against its own tag only.
		if rec := h.do(request{target: target, header: map[string]string{"Accept-Encoding": "gzip", "If-None-Match": packedTag}}); rec.Code != http.StatusNotModified {
			t.Errorf("%s: revalidating the gzip tag: %d", target, rec.Code)
		}
		if rec := h.do(request{target: target, header: map[string]string{"If-None-Match": packedTag}}); rec.Code != http.StatusOK {
			t.Errorf("%s: the gzip tag revalidated a plain answer: %d", target, rec.Code)
		}
		head := h.do(request{method: http.MethodHead, target: target, header: gz})
		if head.Header().Get("Content-Length") != packed.Header().Get("Content-Length") || head.Header().Get("ETag") != packedTag {
			t.Errorf("%s: HEAD %v, GET %v", target, head.Header(), packed.Header())
		}
	}

	// A small answer stays plain, whatever the client accepts.
	small := h.do(request{target: "/v1/envs/prod/routes?app=app-3&service=acme.app3.v1.Service", header: gz})
	if small.Header().Get("Content-Encoding") != "" || small.Header().Get("Vary") != "" {
		t.Errorf("a %d-byte answer: %v", small.Body.Len(), small.Header())
	}
}

// A blocked query holding the compressed form's tag waits while the table
// stays, and is answered compressed when it changes.
func TestBlockingQueryOnCompressedTag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var nodes []node
		for app := range 20 {
			var ms []string
			for m := range 20 {
				ms = append(ms, "/acme.app"+strconv.Itoa(app)+".v1.Service/M"+strconv.Itoa(m))
			}
			nodes = append(nodes, node{app: "app-" + strconv.Itoa(app), version: "v1", internal: "app-" + strconv.Itoa(app) + ":8080",
				lease: int64(app + 1), runDate: start, methods: ms})
		}
		src := newSource(buildSnapshot(start, nodes...))
		srv := followServer(t, src, nil)
		packed := serve(t, srv, "/v1/routes", map[string]string{"Accept-Encoding": "gzip"})
		tag := packed.Header().Get("ETag")
		b := &blocked{done: make(chan struct{})}
		go func() {
			defer close(b.done)
			b.rec = serve(t, srv, "/v1/routes", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": tag, "Prefer": "wait=60"})
		}()
		synctest.Wait()
		if b.answered() {
			t.Fatalf("answered at once: %d", b.rec.Code)
		}
		src.Publish(buildSnapshot(start, nodes[1:]...))
		synctest.Wait()
		if !b.answered() {
			t.Fatal("a change did not answer the query")
		}
		if b.rec.Code != http.StatusOK || b.rec.Header().Get("Content-Encoding") != "gzip" || b.rec.Header().Get("ETag") == tag {
			t.Errorf("after the change: %d %v", b.rec.Code, b.rec.Header())
		}
	})
}

// A resolution is rendered per request and stays plain, however large: only
// route tables and exports are compressed.
func TestResolutionNotCompressed(t *testing.T) {
	h := newHarness(t)
	h.src.Publish(buildSnapshot(t0, appNodes(10, 20)...))
	rec := h.do(request{target: "/v1/envs/prod/methods/acme.app3.v1.Service/M5", header: map[string]string{"Accept-Encoding": "gzip"}})
	if rec.Code != http.StatusOK || rec.Body.Len() < minGzipBytes {
		t.Fatalf("%d, %d bytes: too small for the test", rec.Code, rec.Body.Len())
	}
	if rec.Header().Get("Content-Encoding") != "" || rec.Header().Get("Vary") != "" {
		t.Errorf("a resolution: %v", rec.Header())
	}
}
