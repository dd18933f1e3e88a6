package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header values are assigned as prebuilt slices under canonical keys: it
// saves an allocation and a canonicalization per header on every response.
var (
	ctJSON    = []string{"application/json"}
	ctProblem = []string{"application/problem+json"}
	ctYAML    = []string{"application/yaml"}
	noCache   = []string{"no-cache"}
	noSniff   = []string{"nosniff"}
)

const (
	hdrContentType  = "Content-Type"
	hdrContentLen   = "Content-Length"
	hdrETag         = "Etag"
	hdrCacheControl = "Cache-Control"
	hdrNoSniff      = "X-Content-Type-Options"
	hdrSyncedAt     = "X-Registry-Synced-At"
	hdrRetryAfter   = "Retry-After"
	hdrAllow        = "Allow"
	hdrIfNoneMatch  = "If-None-Match"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encode writes v as a JSON body with status: the one way out for JSON.
func encode(w http.ResponseWriter, r *http.Request, status int, v any) {
	writeJSON(w, r, status, ctJSON, v)
}

// encodeJSON appends v to buf as the API writes JSON: no HTML escaping (a
// gRPC method's "<" and ">" stay as they are), a final newline. Every JSON
// body the API renders is encoded here.
func encodeJSON(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// marshal is encodeJSON into a new buffer.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := encodeJSON(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, contentType []string, v any) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		// Huge bodies are not worth keeping around.
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	buf.Reset()
	if err := encodeJSON(buf, v); err != nil {
		// Only a bug makes a view unencodable; writeProblem's own body is
		// encodable, so this cannot recurse.
		writeProblem(w, r, err)
		return
	}
	writeBody(w, r, status, contentType, buf.Bytes(), nil, nil)
}

// writeBody writes a rendered body. Successful GETs carry a strong ETag, the
// given one or a hash of body, and answer a matching If-None-Match with 304.
// Content-Length is set, the given one or body's, so that HEAD answers with
// the headers of GET and skips only the body.
func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType []string, body []byte, etag, length []string) {
	h := w.Header()
	if status < 300 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if etag == nil {
			etag = []string{bodyETag(body)}
		}
		h[hdrETag] = etag
		h[hdrCacheControl] = noCache
		if inm := r.Header[hdrIfNoneMatch]; len(inm) > 0 && etagMatches(inm, etag[0]) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if length == nil {
		length = contentLength(body)
	}
	h[hdrContentType] = contentType
	h[hdrContentLen] = length
	h[hdrNoSniff] = noSniff
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// contentLength is body's Content-Length header value.
func contentLength(body []byte) []string {
	return []string{strconv.Itoa(len(body))}
}

// bodyETag is a strong entity tag: the quoted FNV-64a hash of body.
func bodyETag(body []byte) string {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
		digits = "0123456789abcdef"
	)
	var h uint64 = offset
	for _, c := range body {
		h ^= uint64(c)
		h *= prime
	}
	var b [18]byte
	b[0], b[17] = '"', '"'
	for i := 16; i >= 1; i-- {
		b[i] = digits[h&0xf]
		h >>= 4
	}
	return string(b[:])
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 13.1.2):
// "*" or any listed tag whose opaque part equals etag's.
func etagMatches(header []string, etag string) bool {
	etag = strings.TrimPrefix(etag, "W/")
	for _, line := range header {
		for line != "" {
			line = strings.TrimLeft(line, " \t,")
			if line == "" {
				break
			}
			if line[0] == '*' {
				return true
			}
			line = strings.TrimPrefix(line, "W/")
			if line == "" || line[0] != '"' {
				return false // malformed: ignore the rest
			}
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				return false
			}
			if line[:end+2] == etag {
				return true
			}
			line = line[end+2:]
		}
	}
	return false
}

// formatTime is how the API writes instants: RFC 3339 in UTC.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
