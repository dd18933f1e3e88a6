package swaggerui

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestIndexServesHTML(t *testing.T) {
	h := Handler(http.NotFoundHandler())

	rec := get(t, h, "/", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /: status %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /: Content-Type %q, want text/html", ct)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`src="./swagger-ui-bundle.js"`,
		`src="./swagger-initializer.js"`,
		`href="./swagger-ui.css"`,
		`<div id="swagger-ui"></div>`,
		"<title>registry-api — API docs</title>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /: body lacks %s", want)
		}
	}

	// http.FileServer canonicalises /index.html to the directory with a
	// relative redirect, which keeps working under the /docs prefix.
	rec = get(t, h, "/index.html", nil)
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "./" {
		t.Errorf("GET /index.html: status %d Location %q, want 301 ./", rec.Code, rec.Header().Get("Location"))
	}
}

func TestUnderDocsPrefix(t *testing.T) {
	// Mounted the way the router does it.
	mux := http.NewServeMux()
	mux.Handle("/docs/", http.StripPrefix("/docs", Handler(http.NotFoundHandler())))

	rec := get(t, mux, "/docs/", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "swagger-ui-bundle.js") {
		t.Fatalf("GET /docs/: status %d, body without bundle reference", rec.Code)
	}
	rec = get(t, mux, "/docs/swagger-ui.css", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /docs/swagger-ui.css: status %d", rec.Code)
	}
	rec = get(t, mux, "/docs/index.html", nil)
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusMovedPermanently || loc != "./" {
		t.Errorf("GET /docs/index.html: status %d Location %q, want 301 ./", rec.Code, loc)
	}
}

func TestAssets(t *testing.T) {
	h := Handler(http.NotFoundHandler())
	for _, tc := range []struct {
		path    string
		ctype   string // substring of Content-Type
		minSize int
	}{
		{"/swagger-ui-bundle.js", "javascript", 500_000},
		{"/swagger-ui.css", "text/css", 50_000},
		{"/swagger-initializer.js", "javascript", 100},
		{"/index.css", "text/css", 10},
		{"/favicon-32x32.png", "image/png", 100},
		{"/favicon-16x16.png", "image/png", 100},
	} {
		rec := get(t, h, tc.path, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", tc.path, rec.Code)
			continue
		}
		if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if n := rec.Body.Len(); n < tc.minSize {
			t.Errorf("GET %s: %d bytes, want at least %d", tc.path, n, tc.minSize)
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", tc.path, got)
		}
	}

	if rec := get(t, h, "/swagger-ui-bundle.js.map", nil); rec.Code != http.StatusNotFound {
		t.Errorf("source map served: status %d, want 404", rec.Code)
	}
}

func TestRevalidation(t *testing.T) {
	h := Handler(http.NotFoundHandler())
	for _, p := range []string{"/", "/swagger-ui-bundle.js"} {
		rec := get(t, h, p, nil)
		etag := rec.Header().Get("ETag")
		if etag == "" || rec.Header().Get("Cache-Control") != "no-cache" {
			t.Fatalf("GET %s: ETag %q Cache-Control %q", p, etag, rec.Header().Get("Cache-Control"))
		}
		rec = get(t, h, p, http.Header{"If-None-Match": {etag}})
		if rec.Code != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: status %d, want 304", p, rec.Code)
		}
	}
}

func TestNoSourceMapReferences(t *testing.T) {
	for _, name := range []string{"swagger-ui-bundle.js", "swagger-ui.css"} {
		b, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "sourceMappingURL=") {
			t.Errorf("%s references a source map that is not shipped", name)
		}
	}
}

// The page must load nothing from outside the server: clusters are air-gapped.
func TestNoExternalReferences(t *testing.T) {
	cdn := regexp.MustCompile(`(?i)unpkg|cdn|jsdelivr|https?://|//[a-z0-9.-]+\.[a-z]{2,}/`)
	for _, name := range []string{"index.html", "swagger-initializer.js", "index.css"} {
		b, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		if m := cdn.Find(b); m != nil {
			t.Errorf("%s references an external host (%q)", name, m)
		}
	}

	b, err := fs.ReadFile(FS(), "swagger-initializer.js")
	if err != nil {
		t.Fatal(err)
	}
	init := string(b)
	for _, want := range []string{
		`url: "../openapi.yaml"`, // relative: works behind a path prefix
		"validatorUrl: null",     // no external validator badge
		"tryItOutEnabled: false",
		`dom_id: "#swagger-ui"`,
	} {
		if !strings.Contains(init, want) {
			t.Errorf("swagger-initializer.js lacks %s", want)
		}
	}
}

func TestVersionMatchesPackageJSON(t *testing.T) {
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	if got := pkg.Dependencies["swagger-ui-dist"]; got != Version {
		t.Errorf("package.json pins swagger-ui-dist %q, Version is %q", got, Version)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(Version) {
		t.Errorf("Version %q is not an exact release", Version)
	}
}

func TestLicenseShipped(t *testing.T) {
	b, err := fs.ReadFile(FS(), "LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Apache License") {
		t.Error("LICENSE is not the Apache License text")
	}
}
