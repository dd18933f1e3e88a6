package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/testkit"
)

// readmeBlock is a ```sh block of README.md with the readme-test annotation
// in the HTML comment just before it, if any.
type readmeBlock struct {
	line   int // of the opening fence
	script string
	// skip is the reason a block cannot run locally; empty when it runs.
	skip string
	// expect lists the statuses of 4xx and 5xx answers that the block shows
	// on purpose.
	expect []int
}

var readmeAnnotation = regexp.MustCompile(`^<!--\s*readme-test:\s*(skip|expect)\s+(.*?)\s*-->$`)

// readmeBlocks extracts the ```sh blocks of a Markdown file. An annotation
// is `<!-- readme-test: skip (reason) -->` or `<!-- readme-test: expect 404 409 -->`
// on the line before the fence (blank lines between are allowed).
func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks     []readmeBlock
		cur        *readmeBlock
		annotation string
		annLine    int
		fence      string
	)
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur != nil {
			if trimmed == fence {
				blocks = append(blocks, *cur)
				cur, fence = nil, ""
				continue
			}
			cur.script += line + "\n"
			continue
		}
		if fence != "" {
			// Inside a block of another language.
			if trimmed == fence {
				fence = ""
			}
			continue
		}
		if m := readmeAnnotation.FindStringSubmatch(trimmed); m != nil {
			annotation, annLine = trimmed, n
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			lang := strings.TrimLeft(trimmed, "`")
			fence = trimmed[:len(trimmed)-len(lang)]
			if lang != "sh" {
				if annotation != "" {
					t.Errorf("%s:%d: readme-test annotation before a ```%s block, not a ```sh one", path, annLine, lang)
				}
				annotation = ""
				continue
			}
			blk := readmeBlock{line: n}
			if annotation != "" {
				m := readmeAnnotation.FindStringSubmatch(annotation)
				switch m[1] {
				case "skip":
					reason := strings.TrimSuffix(strings.TrimPrefix(m[2], "("), ")")
					if strings.TrimSpace(reason) == "" || !strings.HasPrefix(m[2], "(") {
						t.Errorf("%s:%d: a skipped block needs a reason: <!-- readme-test: skip (why) -->", path, annLine)
					}
					blk.skip = reason
				case "expect":
					for _, f := range strings.Fields(m[2]) {
						status, err := strconv.Atoi(f)
						if err != nil || status < 400 || status > 599 {
							t.Errorf("%s:%d: expect takes 4xx and 5xx statuses, not %q", path, annLine, f)
						}
						blk.expect = append(blk.expect, status)
					}
				}
			}
			annotation = ""
			cur = &blk
			continue
		}
		if trimmed != "" {
			annotation = ""
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: ```sh block is not closed", path, cur.line)
	}
	return blocks
}

// answer is one request a block made and the status it got.
type answer struct {
	method, uri, contentType string
	status                   int
}

// answerLog is filled by a reverse proxy in front of the server with every
// answer, so that a failure is seen even when curl -s keeps quiet about it.
type answerLog struct {
	mu      sync.Mutex
	answers []answer
}

func (l *answerLog) take() []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.answers
	l.answers = nil
	return out
}

// assignedName finds the shell variables a script assigns at the start of a
// line (REGISTRY=..., etag=$(...)); later blocks see them, as they would in
// the reader's terminal.
var assignedName = regexp.MustCompile(`(?m)^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=`)

// TestREADMEShellBlocks runs every ```sh block of README.md, in order and as
// written, against the server that `make run` starts (memory store, the demo
// seed, the seed kept alive), listening on a free port that replaces
// localhost:8080 and is $REGISTRY. A block fails when a command fails (set -euo pipefail), when
// any answer is a 5xx or a problem that its annotation does not expect, or
// when it sends no request at all; the run fails when the blocks leave the
// server holding other entries than the seed's. Blocks that need a cluster, docker or the
// build itself carry `<!-- readme-test: skip (reason) -->`.
func TestREADMEShellBlocks(t *testing.T) {
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's examples need %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"))
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```sh blocks")
	}

	logs := &testkit.Buffer{}
	base := startMakeRun(t, logs)

	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	log := &answerLog{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		log.mu.Lock()
		defer log.mu.Unlock()
		log.answers = append(log.answers, answer{resp.Request.Method, resp.Request.URL.RequestURI(), resp.Header.Get("Content-Type"), resp.StatusCode})
		return nil
	}
	front := httptest.NewServer(proxy)
	defer front.Close()
	addr := strings.TrimPrefix(front.URL, "http://")

	state := filepath.Join(t.TempDir(), "state.sh")
	if err := os.WriteFile(state, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	curlHome := t.TempDir()
	var carried []string
	ran := 0
	for _, blk := range blocks {
		name := fmt.Sprintf("README.md:%d", blk.line)
		if blk.skip != "" {
			t.Logf("%s: skipped (%s)", name, blk.skip)
			continue
		}
		ran++
		for _, m := range assignedName.FindAllStringSubmatch(blk.script, -1) {
			if !slices.Contains(carried, m[1]) {
				carried = append(carried, m[1])
			}
		}
		script := "set -euo pipefail\n. " + shellQuote(state) + "\n" +
			strings.ReplaceAll(blk.script, "localhost:8080", addr) +
			"\ndeclare -p " + strings.Join(carried, " ") + " 2>/dev/null > " + shellQuote(state) + " || true\n"
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", script)
		cmd.Dir = root
		// $REGISTRY is the server for a block that uses it without setting
		// it. A proxy or a ~/.curlrc of the machine must not change what curl
		// does.
		cmd.Env = append(os.Environ(), "REGISTRY=http://"+addr, "LC_ALL=C", "no_proxy=*", "NO_PROXY=*", "CURL_HOME="+curlHome)
		out, err := cmd.CombinedOutput()
		cancel()
		answers := log.take()
		t.Logf("%s: %d requests in %v", name, len(answers), time.Since(began).Round(time.Millisecond))
		if err != nil {
			t.Errorf("%s: the block fails: %v\n--- block ---\n%s--- output ---\n%s", name, err, blk.script, out)
		}
		if len(answers) == 0 {
			t.Errorf("%s: the block sent no request to the server: does it still name localhost:8080?\n%s", name, blk.script)
		}
		for _, a := range answers {
			problem := strings.HasPrefix(a.contentType, "application/problem+json")
			if (a.status >= 500 || problem) && !slices.Contains(blk.expect, a.status) {
				t.Errorf("%s: %s %s answered %d (%s), which the block does not expect (<!-- readme-test: expect %d -->)",
					name, a.method, a.uri, a.status, a.contentType, a.status)
			}
		}
		for _, want := range blk.expect {
			if !slices.ContainsFunc(answers, func(a answer) bool { return a.status == want }) {
				t.Errorf("%s: the block expects a %d answer and got none", name, want)
			}
		}
	}
	if ran == 0 {
		t.Error("every ```sh block of README.md is skipped")
	}
	// A reader who runs the examples leaves `make run` as they found it: an
	// instance a block registers and leaves behind would clutter every later
	// view until its TTL and GC.
	holdsTheSeed(t, base, "the README's blocks")
	if t.Failed() {
		t.Logf("server log:\n%s", logs)
	}
}

// holdsTheSeed fails the test unless the server at base holds the entries
// of demo/seed.yaml and no others, after what ran.
func holdsTheSeed(t *testing.T, base, after string) {
	t.Helper()
	seed, err := store.LoadSeedFile(filepath.Join("..", "..", "demo", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, cm := range seed {
		env, _ := model.EnvFromConfigMapName(cm.Name)
		for key := range cm.Data {
			want[env+"/"+key] = true
		}
	}
	held := heldEntries(t, base)
	for _, entry := range slices.Sorted(maps.Keys(held)) {
		if !want[entry] {
			t.Errorf("after %s the server holds %s, which demo/seed.yaml does not: it was left registered", after, entry)
		}
	}
	for _, entry := range slices.Sorted(maps.Keys(want)) {
		if !held[entry] {
			t.Errorf("after %s the server lacks the seed's %s: it was overwritten or removed", after, entry)
		}
	}
}

// heldEntries lists every entry the server at base reads, alive, stale or
// invalid, as env/key.
func heldEntries(t *testing.T, base string) map[string]bool {
	t.Helper()
	get := func(path string, v any) {
		t.Helper()
		status, _, body := fetch(t, base, path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	held := map[string]bool{}
	var envs struct{ Envs []struct{ Env string } }
	get("/v1/envs", &envs)
	for _, e := range envs.Envs {
		var detail struct {
			InvalidEntries []struct{ Key string } `json:"invalid_entries"`
		}
		get("/v1/envs/"+url.PathEscape(e.Env), &detail)
		for _, inv := range detail.InvalidEntries {
			held[e.Env+"/"+inv.Key] = true
		}
		var apps struct {
			Apps []struct {
				AppID string `json:"app_id"`
			}
		}
		get("/v1/envs/"+url.PathEscape(e.Env)+"/apps", &apps)
		for _, a := range apps.Apps {
			var app struct{ Instances []struct{ Key string } }
			get("/v1/envs/"+url.PathEscape(e.Env)+"/apps/"+url.PathEscape(a.AppID)+"?include=stale", &app)
			for _, in := range app.Instances {
				held[e.Env+"/"+in.Key] = true
			}
		}
	}
	return held
}

// shellQuote quotes s for bash.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestREADMEBlocksParse checks the extraction on a sample, so that a README
// block cannot slip through unrun.
func TestREADMEBlocksParse(t *testing.T) {
	md := "# x\n\n```sh\ncurl -s localhost:8080/v1/envs\n```\n\n<!-- readme-test: skip (needs a cluster) -->\n```sh\nkubectl get pods\n```\n" +
		"<!-- readme-test: expect 404 -->\n\n```sh\ncurl -s localhost:8080/v1/envs/qa\n```\n```json\n{\"a\": 1}\n```\n````md\n```sh\nnot a block\n```\n````\n"
	path := filepath.Join(t.TempDir(), "README.md")
	if err := os.WriteFile(path, []byte(md), 0o600); err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, path)
	if len(blocks) != 3 {
		t.Fatalf("%d blocks, want 3: %+v", len(blocks), blocks)
	}
	if blocks[0].skip != "" || blocks[0].script != "curl -s localhost:8080/v1/envs\n" || blocks[0].line != 3 {
		t.Errorf("block 1 = %+v", blocks[0])
	}
	if blocks[1].skip != "needs a cluster" {
		t.Errorf("block 2 skip = %q", blocks[1].skip)
	}
	if !slices.Equal(blocks[2].expect, []int{404}) || blocks[2].skip != "" {
		t.Errorf("block 3 = %+v", blocks[2])
	}
}
