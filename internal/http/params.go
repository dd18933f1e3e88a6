package httpapi

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/acme/registry-api/internal/model"
)

// pathParam returns the unescaped value of a path parameter.
func pathParam(r *http.Request, name string) string {
	return unescapePathValue(r, chi.URLParam(r, name))
}

// unescapePathValue undoes percent-encoding that chi left in place: chi
// routes on r.URL.RawPath when the request's escaping made one necessary.
func unescapePathValue(r *http.Request, v string) string {
	if r.URL.RawPath == "" {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// methodParam returns the gRPC method that the catch-all of
// /v1/envs/{env}/methods/* names, canonical, with its leading slash. The
// catch-all holds it either as is, without that slash, or percent-encoded,
// with or without it.
func methodParam(r *http.Request) (string, error) {
	wild := chi.URLParam(r, "*")
	if r.URL.RawPath != "" {
		m, err := url.PathUnescape(wild)
		if err != nil {
			return "", model.Errorf(model.CodeMalformedMethod, "method name is not validly percent-encoded")
		}
		if !strings.HasPrefix(m, "/") {
			m = "/" + m
		}
		return m, nil
	}
	if strings.HasPrefix(wild, "/") {
		return wild, nil
	}
	// The slash that ends ".../methods/" is the method's own leading slash:
	// slicing the path spares an allocation on the hot path.
	p := r.URL.Path
	if n := len(p) - len(wild) - 1; n >= 0 && p[n] == '/' && p[n+1:] == wild {
		return p[n:], nil
	}
	return "/" + wild, nil
}
