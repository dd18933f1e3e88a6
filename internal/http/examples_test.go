package httpapi

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/acme/registry-api/internal/model"
)

// TestProblemExamplesMatchTheirResponses checks every problem response in
// openapi.yaml: it shows at least one example, and each example is the
// problem the server would send for its code, with the response's status.
func TestProblemExamplesMatchTheirResponses(t *testing.T) {
	h := newHarness(t)
	doc := h.srv.spec.doc
	checked := 0
	check := func(where string, status int, resp *openapi3.Response) {
		t.Helper()
		mt := resp.Content.Get("application/problem+json")
		if mt == nil {
			return
		}
		if len(mt.Examples) == 0 {
			t.Errorf("%s: a %d problem without examples", where, status)
		}
		for name, ref := range mt.Examples {
			checked++
			v, ok := ref.Value.Value.(map[string]any)
			if !ok {
				t.Errorf("%s: example %s is not an object", where, name)
				continue
			}
			code, _ := v["code"].(string)
			kind, known := problemKinds[model.Code(code)]
			got, _ := v["status"].(float64)
			switch {
			case !known:
				t.Errorf("%s: example %s has code %q, which is not in the error table", where, name, code)
			case int(got) != status:
				t.Errorf("%s: example %s (%s) says status %v in a %d response", where, name, code, v["status"], status)
			case kind.status != status:
				t.Errorf("%s: example %s shows %s, which the server answers with %d, in a %d response", where, name, code, kind.status, status)
			case v["title"] != kind.title || v["type"] != problemTypePrefix+code:
				t.Errorf("%s: example %s has title %q and type %q; the server sends %q and %q", where, name, v["title"], v["type"], kind.title, problemTypePrefix+code)
			}
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for key, ref := range op.Responses.Map() {
				status, err := strconv.Atoi(key)
				if err != nil {
					t.Errorf("%s %s: response %q is not a single status", method, path, key)
					continue
				}
				check(fmt.Sprintf("%s %s %d", method, path, status), status, ref.Value)
			}
		}
	}
	if checked < 30 {
		t.Errorf("only %d problem examples checked: the walk no longer finds them", checked)
	}
}

// TestOpenRoutesDeclareNoSecurity keeps probes, metrics, the API document and
// the docs open in the document, as the router keeps them.
func TestOpenRoutesDeclareNoSecurity(t *testing.T) {
	h := newHarness(t)
	open := []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml", "/openapi.json", "/docs", "/docs/"}
	for path, item := range h.srv.spec.doc.Paths.Map() {
		op := item.GetOperation(http.MethodGet)
		if !slices.Contains(open, path) || op == nil {
			continue
		}
		if op.Security == nil || len(*op.Security) != 0 {
			t.Errorf("GET %s: security %v, want [] (open to all)", path, op.Security)
		}
		open = slices.DeleteFunc(open, func(p string) bool { return p == path })
	}
	if len(open) != 0 {
		t.Errorf("openapi.yaml lacks %v", open)
	}
}

// TestREADMEErrorTableIsTheProblemTable holds the README's table of errors
// to the server's: every code, with the status the server answers it with.
func TestREADMEErrorTableIsTheProblemTable(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| `([a-z_]+)` \\|")
	documented := map[model.Code]int{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		status, _ := strconv.Atoi(m[1])
		documented[model.Code(m[2])] = status
	}
	for code, kind := range problemKinds {
		status, ok := documented[code]
		switch {
		case !ok:
			t.Errorf("README's error table lacks %s (%d)", code, kind.status)
		case status != kind.status:
			t.Errorf("README gives %s the status %d; the server answers %d", code, status, kind.status)
		}
		delete(documented, code)
	}
	for code := range documented {
		t.Errorf("README's error table lists %s, which the server never answers", code)
	}
}

// TestDocumentedRetryIsTheStreams holds the `retry:` line that the README
// and openapi.yaml say a stream opens with to the one the server sends.
func TestDocumentedRetryIsTheStreams(t *testing.T) {
	t.Parallel()
	retry := regexp.MustCompile("`retry: ([0-9]+)`")
	for _, name := range []string{"README.md", "openapi.yaml"} {
		text, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatal(err)
		}
		said := retry.FindAllStringSubmatch(string(text), -1)
		if len(said) == 0 {
			t.Errorf("%s does not say that a stream opens with `retry: %d`", name, reconnectMillis)
		}
		for _, m := range said {
			if m[1] != strconv.Itoa(reconnectMillis) {
				t.Errorf("%s says a stream opens with `retry: %s`; the server sends retry: %d", name, m[1], reconnectMillis)
			}
		}
	}
}
