// Package swaggerui serves Swagger UI for the API's OpenAPI document.
//
// The assets come from the npm package swagger-ui-dist at the version pinned
// in package.json and are embedded so /docs works without internet access
// (clusters are air-gapped; no CDN is referenced). Refresh them with
// `make swagger-ui`.
package swaggerui

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// Version is the swagger-ui-dist release embedded in dist/. It must match
// package.json; `make swagger-ui` rewrites it and a test checks it.
const Version = "5.35.0"

//go:embed dist
var embedded embed.FS

// FS returns the embedded Swagger UI files, rooted at dist/.
func FS() fs.FS {
	sub, err := fs.Sub(embedded, "dist")
	if err != nil {
		panic(err) // "dist" is a literal valid path; cannot fail.
	}
	return sub
}

// Handler serves the Swagger UI page and its assets relative to whatever
// prefix the caller has stripped, e.g.
//
//	r.Handle("/docs/*", http.StripPrefix("/docs", swaggerui.Handler()))
//
// The page uses relative URLs only (assets, and ../openapi.yaml for the
// spec), so the caller must redirect "/docs" to "/docs/". A path that
// names no embedded file is handed to notFound, so that the caller answers
// it in the API's own error shape.
func Handler(notFound http.Handler) http.Handler {
	files := FS()
	etags := contentETags(files)
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Embedded files have no modification time, so without an ETag every
		// load would re-download the ~2 MB bundle; with one, "no-cache"
		// revalidates cheaply and never serves stale assets after an upgrade.
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		etag, ok := etags[name]
		if !ok {
			notFound.ServeHTTP(w, r)
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/index.html") {
			h.Set("ETag", etag)
		}
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		fileServer.ServeHTTP(w, r)
	})
}

// contentETags maps each embedded file to a strong ETag of its content.
func contentETags(files fs.FS) map[string]string {
	etags := make(map[string]string)
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags[name] = `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
		return nil
	})
	if err != nil {
		panic(err) // embedded files are always readable.
	}
	return etags
}
