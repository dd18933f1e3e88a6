package httpapi

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
)

// Large answers (route tables, exports) go gzip-compressed to clients that
// ask for it: a gateway re-reading every env's table reads a tenth of the
// bytes. A rendering is compressed once, on first ask, and kept beside the
// plain one; the compressed form has a strong tag of its own, derived from
// the plain one's, so every replica answers the same tag for it too. Small
// answers stay plain: compressing them costs more than it saves.

// minGzipBytes is the smallest body worth compressing.
const minGzipBytes = 4096

var encGzip = []string{"gzip"}

const (
	hdrAcceptEncoding  = "Accept-Encoding"
	hdrContentEncoding = "Content-Encoding"
)

// acceptsGzip reads Accept-Encoding (RFC 9110 12.5.3): gzip (or x-gzip)
// with a weight above zero, or else "*" with one.
func acceptsGzip(r *http.Request) bool {
	gzipQ, anyQ := -1.0, -1.0
	for _, line := range r.Header[hdrAcceptEncoding] {
		for part := range strings.SplitSeq(line, ",") {
			name, params, _ := strings.Cut(part, ";")
			q := weight(params)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "gzip", "x-gzip":
				gzipQ = max(gzipQ, q)
			case "*":
				anyQ = max(anyQ, q)
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return anyQ > 0
}

// weight is a coding's q parameter, 1 when absent or malformed.
func weight(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		if q, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil && q >= 0 && q <= 1 {
			return q
		}
	}
	return 1
}

// compresses reports whether out goes to r compressed, and marks the answer
// as varying with Accept-Encoding when out is large enough to be.
func compresses(w http.ResponseWriter, r *http.Request, out *rendered) bool {
	if len(out.Body) < minGzipBytes {
		return false
	}
	addVary(w.Header())
	return acceptsGzip(r)
}

// representation is what out is sent to r as: itself, or its compressed
// form with Content-Encoding set.
func representation(w http.ResponseWriter, r *http.Request, out *rendered) *rendered {
	if !compresses(w, r, out) {
		return out
	}
	w.Header()[hdrContentEncoding] = encGzip
	return out.Compressed(gzipRendering)
}

// writeRendered answers out, compressed where it goes so when it is
// compressible: a route table or an export, not a resolution, whose
// rendering is small and per request (a 304 when the request's
// If-None-Match holds the tag of what it would be sent as).
func writeRendered(w http.ResponseWriter, r *http.Request, contentType []string, out *rendered, compressible bool) {
	rep := out
	if compressible {
		rep = representation(w, r, out)
	}
	writeBody(w, r, http.StatusOK, contentType, rep.Body, rep.ETag, rep.Length)
}

// representedTag is the tag of what out is sent to r as, without
// compressing it.
func representedTag(r *http.Request, out *rendered, compressible bool) string {
	if compressible && len(out.Body) >= minGzipBytes && acceptsGzip(r) {
		return gzipTag(out.ETag[0])
	}
	return out.ETag[0]
}

// gzipRendering compresses a rendering. gzip writes no time or name here, so
// the same body compresses to the same bytes everywhere.
func gzipRendering(out *rendered) *rendered {
	var buf bytes.Buffer
	buf.Grow(len(out.Body) / 8)
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	_, _ = zw.Write(out.Body)
	_ = zw.Close()
	body := buf.Bytes()
	return &rendered{Body: body, ETag: []string{gzipTag(out.ETag[0])}, Length: contentLength(body)}
}

// gzipTag is the compressed form's strong tag: a hash of the plain form's,
// so that it changes exactly when the plain one does.
func gzipTag(plain string) string {
	return bodyETag([]byte(plain + ";gzip"))
}

// addVary adds Accept-Encoding to Vary, which holds nothing else or Accept
// (an export's), as one value.
func addVary(h http.Header) {
	switch cur := h[hdrVary]; {
	case len(cur) == 0:
		h[hdrVary] = varyAcceptEncoding
	case cur[0] == "Accept":
		h[hdrVary] = varyAcceptAndEncoding
	}
}

var (
	varyAcceptEncoding    = []string{hdrAcceptEncoding}
	varyAcceptAndEncoding = []string{"Accept, " + hdrAcceptEncoding}
)
