package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

// maxRequestAlloc bounds the bytes one fuzzed request may allocate beyond
// a small multiple of its own size. A valid batch of 1000 methods allocates
// a few MiB; the bound is there to catch blowups (a body whose cost grows
// with its depth, an error text that quotes itself), not to measure speed.
const maxRequestAlloc = 32 << 20

// FuzzRequest sends arbitrary requests through the whole handler: limits,
// routing, authentication, validation against openapi.yaml, handlers and
// the write path over a memory store. Every answer must be one that
// openapi.yaml declares for the matched operation (or 404/405/414 for a
// path no route serves), never a 500, and every error must be a problem
// with a code from the one table.
func FuzzRequest(f *testing.F) {
	const (
		instance = "/v1/envs/prod/apps/inventory-service/instances/42"
		user     = "/v1/envs/prod/apps/user-service/instances/1795695862709570046"
	)
	register := newInventory(42).json()
	resolve := `{"methods":["/acme.user.v1.UserService/Login","/acme.order.v1.OrderService/Create"],"version":"v1"}`
	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	seeds := []struct {
		method, target, contentType, ifNoneMatch, authorization, accept string
		body                                                            string
	}{
		// Every route, with a valid request.
		{method: "GET", target: "/healthz"},
		{method: "GET", target: "/readyz"},
		{method: "GET", target: "/metrics"},
		{method: "GET", target: "/openapi.yaml"},
		{method: "GET", target: "/openapi.json", accept: "application/json"},
		{method: "GET", target: "/docs"},
		{method: "GET", target: "/docs/index.html"},
		{method: "GET", target: "/v1/envs"},
		{method: "GET", target: "/v1/envs/prod"},
		{method: "GET", target: "/v1/envs/staging"},
		{method: "GET", target: "/v1/envs/prod/apps"},
		{method: "GET", target: "/v1/envs/prod/apps/user-service?include=stale"},
		{method: "GET", target: "/v1/envs/prod/methods?service=acme.user.v1.UserService"},
		{method: "GET", target: loginPath, ifNoneMatch: `"x", *`},
		{method: "GET", target: "/v1/envs/prod/methods/%2Facme.user.v1.UserService%2FLogin"},
		{method: "GET", target: refundPath + "?version=v2"},
		{method: "GET", target: user},
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "application/json", body: resolve},
		{method: "POST", target: instancesPath, contentType: "application/json", authorization: "Bearer inventory", body: register},
		{method: "POST", target: instancesPath, contentType: "application/json", authorization: "Bearer admin", body: register},
		{method: "PUT", target: instance + "/heartbeat", authorization: "Bearer inventory"},
		{method: "PUT", target: user + "/heartbeat", authorization: "Bearer admin"},
		{method: "DELETE", target: instance, authorization: "Bearer inventory"},
		{method: "DELETE", target: user, authorization: "Bearer admin"},
		{method: "POST", target: "/v1/envs/new/apps/inventory-service/instances?namespace=shop", contentType: "application/json", authorization: "Bearer admin", body: register},
		// Hostile bodies: deep, trailing data, two values, oversize, not JSON.
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "application/json", body: deep},
		{method: "POST", target: instancesPath, contentType: "application/json", authorization: "Bearer admin", body: deep},
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "application/json", body: resolve + "]"},
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "application/json", body: resolve + resolve},
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "application/json", body: `{"methods":["` + strings.Repeat("a", maxResolveBody) + `"]}`},
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "text/plain", body: resolve},
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "application/merge-patch+json; charset=utf-8", body: resolve},
		{method: "POST", target: "/v1/envs/prod/resolve", contentType: "application/json", body: "[\"\xff\"]"},
		{method: "GET", target: "/v1/envs/prod", contentType: "application/json", body: deep},
		// Hostile targets: long, many parameters, bad percent-encoding.
		{method: "GET", target: "/v1/envs?x=" + strings.Repeat("a", maxQueryBytes)},
		{method: "GET", target: "/v1/envs/" + strings.Repeat("a", maxPathBytes)},
		{method: "GET", target: "/nowhere/" + strings.Repeat("%2F", maxPathBytes/3)},
		{method: "GET", target: "/v1/envs?" + strings.Repeat("a=1&", maxQueryParams) + "a=1"},
		{method: "GET", target: "/v1/envs/prod/methods/acme.user.v1.UserService%zzLogin"},
		{method: "GET", target: "/v1/envs/prod/apps?include=%zz"},
		{method: "GET", target: "/v1/envs/pr%00od"},
		{method: "GET", target: "/v1/envs/prod/methods/%2F%2F%2F"},
		{method: "GET", target: "//v1/envs/../envs/./prod"},
		{method: "GET", target: "/v1/envs/prod/apps/user-service/instances/99999999999999999999999"},
		// Other methods, and headers that are not what the API expects.
		{method: "HEAD", target: "/v1/envs/prod"},
		{method: "OPTIONS", target: "/v1/envs"},
		{method: "BREW", target: "/coffee"},
		{method: "PATCH", target: instance, contentType: "application/json", body: "{}"},
		{method: "TRACE", target: "/v1/envs"},
		{method: "GET", target: "/v1/envs", accept: "text/html"},
		{method: "GET", target: "/v1/envs", accept: "application/xml;q=1, */*;q=0"},
		{method: "GET", target: "/v1/envs", ifNoneMatch: strings.Repeat(`"a",`, 500)},
		{method: "DELETE", target: instance, authorization: "Bearer down"},
		{method: "DELETE", target: instance, authorization: "Basic Zm9vOmJhcg=="},
		{method: "DELETE", target: instance, authorization: "Bearer"},
		{method: "GET", target: "http://example.com/v1/envs"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.contentType, s.ifNoneMatch, s.authorization, s.accept, []byte(s.body))
	}

	// One server per worker, rebuilt after any input that changed its
	// store: every input meets the fixtures as they are in the files, so
	// a failure replays from its input alone.
	var wh *writeHarness
	var life *harnessLife
	f.Cleanup(func() {
		if life != nil {
			life.end()
		}
	})
	f.Fuzz(func(t *testing.T, method, target, contentType, ifNoneMatch, authorization, accept string, body []byte) {
		header := map[string]string{"Content-Type": contentType, "If-None-Match": ifNoneMatch, "Authorization": authorization, "Accept": accept}
		r := fuzzedRequest(method, target, header, body)
		if r == nil {
			return
		}
		if wh == nil {
			life = &harnessLife{TB: t}
			wh = newAuthHarness(life, false)
		}
		h := wh
		h.t = t
		h.logs.Reset()
		stored := storeState(t, h)

		rec := httptest.NewRecorder()
		before := allocatedBytes()
		h.srv.ServeHTTP(rec, r)
		if alloc := allocatedBytes() - before; alloc > maxRequestAlloc+16*uint64(len(target)+len(body)) {
			t.Errorf("%s %.100q with a %d-byte body allocated %d bytes", method, target, len(body), alloc)
		}
		if storeState(t, h) != stored {
			life.end()
			wh, life = nil, nil
			if rec.Code >= 300 {
				t.Errorf("%s %.100q = %d changed the store", method, target, rec.Code)
			}
		}

		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable && rec.Code != http.StatusInsufficientStorage {
			t.Fatalf("%s %.100q = %d: %.500s\nlog: %.2000s", method, target, rec.Code, rec.Body, h.logs)
		}
		if method == http.MethodHead {
			// A HEAD answer is a status and headers: a problem's body is
			// left out.
			if rec.Body.Len() != 0 || (rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json") {
				t.Fatalf("HEAD %.100q = %d %v with a %d-byte body", target, rec.Code, rec.Header(), rec.Body.Len())
			}
			return
		}
		if rec.Code >= 400 {
			p := problemOf(t, rec)
			if kind, ok := problemKinds[p.Code]; !ok || p.Code == model.CodeInternal || kind.status != rec.Code {
				t.Fatalf("%s %.100q = %d with code %q: %.500s", method, target, rec.Code, p.Code, rec.Body)
			}
		}
		// The limits answer before routing, so their statuses hold on any
		// path; checkResponse holds the rest to openapi.yaml.
		check := fuzzedRequest(method, target, header, nil)
		if rec.Code == http.StatusRequestURITooLong {
			checkProblem(t, h.srv, rec)
			return
		}
		checkResponse(t, h.srv, check, rec)
	})
}

// fuzzedRequest builds the request that net/http's server would hand the
// handler for a request line "method target HTTP/1.1" with these headers
// and body, or returns nil for input the server refuses before any handler
// runs: httptest.NewRequest would panic on some of it, and the rest never
// reaches the router in production.
func fuzzedRequest(method, target string, header map[string]string, body []byte) *http.Request {
	// The server splits the request line on spaces and refuses a method
	// that is not a token.
	if method == "" || strings.ContainsAny(target, " \r\n") || !validMethod(method) {
		return nil
	}
	// CONNECT takes an authority, which the server parses as a host, and
	// the server answers "OPTIONS *" itself.
	if method == http.MethodConnect && !strings.HasPrefix(target, "/") || method == http.MethodOptions && target == "*" {
		return nil
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil
	}
	r := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       "example.com",
		RemoteAddr: "192.0.2.1:1234",
		RequestURI: target,
		Body:       http.NoBody,
	}
	if u.Host != "" {
		r.Host = u.Host
	}
	for k, v := range header {
		// The server refuses a header value with control bytes and trims
		// the spaces around the rest.
		if strings.ContainsFunc(v, func(c rune) bool { return (c < 0x20 && c != '\t') || c == 0x7f }) {
			return nil
		}
		if v = textproto.TrimString(v); v != "" {
			r.Header.Set(k, v)
		}
	}
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return r
}

// validMethod is the server's rule: a method is an HTTP token (RFC 9110).
func validMethod(method string) bool {
	return method != "" && !strings.ContainsFunc(method, func(c rune) bool {
		return !(c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)))
	})
}

// harnessLife outlives the input that builds a harness: the harness's
// cleanups run when end is called, not when that input's test ends.
type harnessLife struct {
	testing.TB
	cleanups []func()
}

func (l *harnessLife) Cleanup(f func())         { l.cleanups = append(l.cleanups, f) }
func (l *harnessLife) Context() context.Context { return context.Background() }

func (l *harnessLife) end() {
	for i := len(l.cleanups) - 1; i >= 0; i-- {
		l.cleanups[i]()
	}
}

// storeState names the version of every ConfigMap in the store: the
// memory store bumps a version on every change.
func storeState(t *testing.T, wh *writeHarness) string {
	cms, err := wh.store.Store.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, cm := range cms.Items {
		b.WriteString(cm.Namespace + "/" + cm.Name + "@" + cm.ResourceVersion + " ")
	}
	return b.String()
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

// allocatedBytes is the bytes the process has allocated so far; unlike
// runtime.ReadMemStats it does not stop the world.
func allocatedBytes() uint64 {
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}

// TestFuzzedRequestMatchesTheServer holds fuzzedRequest to what a real
// server hands its handler for the same bytes on the wire.
func TestFuzzedRequestMatchesTheServer(t *testing.T) {
	type seen struct {
		Method, RequestURI, Path, RawPath, RawQuery, Host string
		Header                                            map[string]string
		Body                                              string
	}
	got := make(chan seen, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Host,
			map[string]string{"Accept": r.Header.Get("Accept"), "Content-Type": r.Header.Get("Content-Type")}, string(b)}
	}))
	defer ts.Close()
	for _, tc := range []struct {
		method, target, accept string
		body                   string
	}{
		{method: "GET", target: "/v1/envs/prod/methods/%2Facme.user.v1.UserService%2FLogin?version=v1"},
		{method: "BREW", target: "//a/../b/%2F%41", accept: " \ttext/html \t"},
		{method: "POST", target: "/v1/envs/prod/resolve", body: `{"methods":[]}`},
		{method: "OPTIONS", target: "/v1/envs"},
		{method: "GET", target: "http://example.com/v1/envs?x"},
	} {
		header := map[string]string{"Accept": tc.accept, "Content-Type": "application/json"}
		want := fuzzedRequest(tc.method, tc.target, header, []byte(tc.body))
		if want == nil {
			t.Fatalf("%s %s refused", tc.method, tc.target)
		}
		raw := tc.method + " " + tc.target + " HTTP/1.1\r\nHost: example.com\r\nAccept: " + tc.accept +
			"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(tc.body)) + "\r\nConnection: close\r\n\r\n" + tc.body
		conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.target, err)
		}
		resp.Body.Close()
		conn.Close()
		var s seen
		select {
		case s = <-got:
		default:
			t.Fatalf("%s %s: the handler did not run; the server answered %d", tc.method, tc.target, resp.StatusCode)
		}
		b, _ := io.ReadAll(want.Body)
		w := seen{want.Method, want.RequestURI, want.URL.Path, want.URL.RawPath, want.URL.RawQuery, want.Host,
			map[string]string{"Accept": want.Header.Get("Accept"), "Content-Type": want.Header.Get("Content-Type")}, string(b)}
		if gj, wj := mustJSON(t, s), mustJSON(t, w); gj != wj {
			t.Errorf("%s %s: server saw %s, fuzzedRequest built %s", tc.method, tc.target, gj, wj)
		}
	}
}

// TestFuzzedRequestRefusesWhatTheServerRefuses checks that what
// fuzzedRequest skips is answered 400 by net/http's server itself, before
// any handler runs.
func TestFuzzedRequestRefusesWhatTheServerRefuses(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("%s %s reached the handler", r.Method, r.RequestURI)
	}))
	defer ts.Close()
	for _, tc := range []struct{ method, target, accept string }{
		{method: "GET", target: "/v1/envs/%zz"},
		{method: "GET", target: "v1/envs"},
		{method: "G(T", target: "/v1/envs"},
		{method: "GET", target: "/v1/envs", accept: "text/\x01html"},
	} {
		if fuzzedRequest(tc.method, tc.target, map[string]string{"Accept": tc.accept}, nil) != nil {
			t.Errorf("%s %s built", tc.method, tc.target)
		}
		conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		raw := tc.method + " " + tc.target + " HTTP/1.1\r\nHost: example.com\r\nAccept: " + tc.accept + "\r\n\r\n"
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.target, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s: the server answered %d, want 400", tc.method, tc.target, resp.StatusCode)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
