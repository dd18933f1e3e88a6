package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOverTheWire serves from a real listener, so the client's encoding of
// the method name and the server's parsing of it are the real ones.
func TestOverTheWire(t *testing.T) {
	h := newHarness(t)
	ts := httptest.NewServer(h.srv)
	defer ts.Close()

	var bodies []string
	for _, path := range []string{
		loginPath,
		"/v1/envs/prod/methods/%2Facme.user.v1.UserService%2FLogin",
		"/v1/envs/prod/methods/acme.user.v1.UserService%2FLogin",
	} {
		rec := fetch(t, h.srv, ts, http.MethodGet, path, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		bodies = append(bodies, rec.Body.String())
	}
	if bodies[0] != bodies[1] || bodies[0] != bodies[2] {
		t.Errorf("the spellings of one method resolve differently:\n%s", strings.Join(bodies, "\n"))
	}
	rec := fetch(t, h.srv, ts, http.MethodPost, "/v1/envs/prod/resolve", `{"methods":["/acme.user.v1.UserService/Login"]}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), bodies[0][:40]) {
		t.Errorf("POST resolve: %d %s", rec.Code, rec.Body)
	}
}

// fetch sends a request to ts and checks the answer like harness.do does.
func fetch(t *testing.T, srv *server, ts *httptest.Server, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rec := httptest.NewRecorder()
	for k, v := range resp.Header {
		rec.Header()[k] = v
	}
	rec.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(rec, resp.Body); err != nil {
		t.Fatal(err)
	}
	checkResponse(t, srv, httptest.NewRequest(method, path, nil), rec)
	return rec
}
