package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/acme/registry-api/internal/testkit"
)

// TestPrefilledExamplesSucceed sends every operation of openapi.yaml as
// Swagger UI's "Try it out" prefills it: each parameter's example, the
// request body's example, path parameters percent-encoded as the UI does
// (encodeURIComponent). Against the server `make run` starts, each must
// succeed as prefilled. Reads go first and the deregistration last, as a
// reader trying the page top to bottom would not, so that no example
// depends on another's side effect but the write examples' own order.
func TestPrefilledExamplesSucceed(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromFile(filepath.Join(root, "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := startMakeRun(t, &testkit.Buffer{})

	type call struct {
		method, path string
		op           *openapi3.Operation
		params       openapi3.Parameters
	}
	var calls []call
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			calls = append(calls, call{method, path, op, append(slices.Clone(op.Parameters), item.Parameters...)})
		}
	}
	order := map[string]int{http.MethodGet: 0, http.MethodPost: 1, http.MethodPut: 2, http.MethodDelete: 3}
	slices.SortFunc(calls, func(a, b call) int {
		if d := order[a.method] - order[b.method]; d != 0 {
			return d
		}
		return strings.Compare(a.path, b.path)
	})
	if len(calls) < 20 {
		t.Fatalf("only %d operations in openapi.yaml: the walk no longer finds them", len(calls))
	}

	for _, c := range calls {
		target := c.path
		query := url.Values{}
		header := http.Header{}
		for _, ref := range c.params {
			p := ref.Value
			example := p.Example
			if example == nil && p.Schema != nil && p.Schema.Value != nil {
				example = p.Schema.Value.Example
			}
			if example == nil {
				if p.Required {
					t.Errorf("%s %s: required parameter %s has no example for Swagger UI to prefill", c.method, c.path, p.Name)
				}
				continue
			}
			v, ok := example.(string)
			if !ok {
				t.Errorf("%s %s: parameter %s's example %v is not a string: Swagger UI shows it rounded or reformatted", c.method, c.path, p.Name, example)
				continue
			}
			switch p.In {
			case openapi3.ParameterInPath:
				target = strings.Replace(target, "{"+p.Name+"}", url.PathEscape(v), 1)
			case openapi3.ParameterInQuery:
				query.Set(p.Name, v)
			case openapi3.ParameterInHeader:
				header.Set(p.Name, v)
			}
		}
		var body io.Reader
		if c.op.RequestBody != nil {
			mt := c.op.RequestBody.Value.Content.Get("application/json")
			if mt == nil || mt.Example == nil {
				t.Errorf("%s %s: the request body has no example; Swagger UI would make one up from the schema", c.method, c.path)
				continue
			}
			raw, err := json.Marshal(mt.Example)
			if err != nil {
				t.Fatal(err)
			}
			body = bytes.NewReader(raw)
			header.Set("Content-Type", "application/json")
		}
		if len(query) > 0 {
			target += "?" + query.Encode()
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		req, err := http.NewRequestWithContext(ctx, c.method, base+target, body)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Errorf("%s %s: %v", c.method, target, err)
			continue
		}
		// An event stream never ends: its status and first bytes are enough.
		var got []byte
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			got = make([]byte, 64)
			n, _ := io.ReadAtLeast(resp.Body, got, 1)
			got = got[:n]
		} else {
			got, _ = io.ReadAll(resp.Body)
		}
		resp.Body.Close()
		cancel()
		if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotModified {
			t.Errorf("%s %s as Swagger UI prefills it: %d %s", c.method, target, resp.StatusCode, got)
		}
	}
	// The write examples act on an instance of their own: one that reused a
	// seeded entry's lease id would overwrite it, and the deregistration
	// would remove it from the demo.
	holdsTheSeed(t, base, "the prefilled examples")
}
