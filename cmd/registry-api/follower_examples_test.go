//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

// The followers a gateway copies from examples/follow, run as they are
// against the server `make run` starts, behind a front that plays the
// network: it refuses each follower's first request as a replica at its
// follower cap does, and drops the connection while the server is down.

const (
	shellPath  = "/v1/envs/prod/routes"        // what follow.sh asks
	streamPath = "/v1/envs/prod/routes/events" // what follow.py asks
	// probeMethod is what the test registers and the followers must see.
	probeMethod = "/acme.probe.v1.ProbeService/Watch"
	seedMethod  = "/acme.user.v1.UserService/Login"
)

// frontRequest is one request a follower sent, when it arrived and how it
// was answered: 0 is a dropped connection, -1 not answered yet.
type frontRequest struct {
	at                           time.Time
	status                       int
	ifNoneMatch, lastEventID, pr string
}

// followFront proxies to the server and records every request by path.
type followFront struct {
	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	seen  map[string][]frontRequest
}

// frontIndex keys a proxied request's place among its path's requests.
type frontIndex struct{}

func newFollowFront(t *testing.T, base string) *followFront {
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	f := &followFront{proxy: httputil.NewSingleHostReverseProxy(target), seen: map[string][]frontRequest{}}
	f.proxy.ModifyResponse = func(resp *http.Response) error {
		f.answered(resp.Request, resp.StatusCode)
		return nil
	}
	f.proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// The server is gone: the follower sees no answer at all.
		f.answered(r, 0)
		panic(http.ErrAbortHandler)
	}
	return f
}

func (f *followFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	i := len(f.seen[r.URL.Path])
	f.seen[r.URL.Path] = append(f.seen[r.URL.Path], frontRequest{time.Now(), -1,
		r.Header.Get("If-None-Match"), r.Header.Get("Last-Event-ID"), r.Header.Get("Prefer")})
	f.mu.Unlock()
	if i == 0 {
		f.answered(r.WithContext(context.WithValue(r.Context(), frontIndex{}, i)), http.StatusServiceUnavailable)
		w.Header().Set("Retry-After", "3")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"type":"urn:problem-type:registry-api:too_many_followers","title":"Too many followers","status":503,"code":"too_many_followers"}`)
		return
	}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), frontIndex{}, i)))
}

func (f *followFront) answered(r *http.Request, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[r.URL.Path][r.Context().Value(frontIndex{}).(int)].status = status
}

func (f *followFront) requests(path string) []frontRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]frontRequest(nil), f.seen[path]...)
}

// follower is a follower running as a child process.
type follower struct {
	name   string
	cmd    *exec.Cmd
	out    testkit.Buffer // stdout and stderr
	exited chan struct{}
	err    error
}

func startFollower(t *testing.T, name, dir string, env []string, argv ...string) *follower {
	t.Helper()
	p := &follower{name: name, exited: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), append([]string{"LC_ALL=C", "no_proxy=*", "NO_PROXY=*", "CURL_HOME=" + t.TempDir()}, env...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	// A group of its own, so that a follower that ignores SIGTERM is
	// killed with what it started (curl, sleep).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		if p.stop(5*time.Second) != nil || t.Failed() {
			t.Logf("%s's output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the follower to exit; past timeout it
// kills its group and reports that.
func (p *follower) stop(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("still running %v after SIGTERM", timeout)
	}
}

// fileHas reports whether the file at path holds every one of want and
// none of unwanted.
func fileHas(path string, want, unwanted []string) func() (bool, string) {
	return func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				return false, fmt.Sprintf("%s lacks %s", path, w)
			}
		}
		for _, u := range unwanted {
			if strings.Contains(string(b), u) {
				return false, fmt.Sprintf("%s still holds %s", path, u)
			}
		}
		return true, ""
	}
}

// TestFollowerExamples runs examples/follow/follow.sh (blocking queries) and
// follow.py (the event stream) against a real server: each must wait out a
// 503's Retry-After, write the table, see a registration, keep its table
// and retry with growing delays while the server is down, pick up the
// restarted server's table, and exit cleanly on SIGTERM.
func TestFollowerExamples(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("examples/follow's followers need %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	startServer := func(addr string) (string, func() error) {
		t.Helper()
		cfg, err := configFrom(t,
			"REGISTRY_ADDR", addr,
			"REGISTRY_STORE", "memory",
			"REGISTRY_SEED", filepath.Join(root, "demo", "seed.yaml"),
			"REGISTRY_SEED_KEEPALIVE", "true",
		)
		if err != nil {
			t.Fatal(err)
		}
		logs := &testkit.Buffer{}
		base, stop := startServe(t, cfg, logs)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("server log:\n%s", logs)
			}
		})
		waitReady(t, base)
		return base, stop
	}
	base, stop := startServer("127.0.0.1:0")
	front := newFollowFront(t, base)
	// The followers start before anything listens at their address, as a
	// gateway may start before the registry.
	srv := httptest.NewUnstartedServer(front)
	addr := srv.Listener.Addr().String()
	if err := srv.Listener.Close(); err != nil {
		t.Fatal(err)
	}
	registry := "http://" + addr
	// Registered before the followers' cleanups, so that it runs after
	// them: Close waits for their requests to end.
	started := false
	t.Cleanup(func() {
		if started {
			srv.Close()
		}
	})
	began := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			for _, path := range []string{shellPath, streamPath} {
				for _, r := range front.requests(path) {
					t.Logf("%s at %v: %d If-None-Match=%s Last-Event-ID=%s Prefer=%s", path, r.at.Sub(began).Round(time.Millisecond), r.status, r.ifNoneMatch, r.lastEventID, r.pr)
				}
			}
		}
	})

	dir := t.TempDir()
	shFile, pyFile, reloads := filepath.Join(dir, "sh.json"), filepath.Join(dir, "py.json"), filepath.Join(dir, "reloads")
	sh := startFollower(t, "follow.sh", dir,
		[]string{"REGISTRY=" + registry, "FOLLOW_WAIT=5", "FOLLOW_MAX_BACKOFF=2"},
		"bash", filepath.Join(root, "examples", "follow", "follow.sh"), "prod", shFile, "echo reloaded >> "+shellQuote(reloads))
	py := startFollower(t, "follow.py", dir, nil,
		"python3", filepath.Join(root, "examples", "follow", "follow.py"), "prod", "-o", pyFile, "--registry", registry, "--max-backoff", "2")

	// Nothing listens: each says so and goes on.
	for _, p := range []*follower{sh, py} {
		testkit.WaitFor(t, 10*time.Second, p.name+" reports the refused connection", testkit.Until(func() bool {
			return strings.Contains(p.out.String(), "retrying in") || strings.Contains(p.out.String(), "reconnecting in")
		}))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv.Listener = ln
	srv.Start()
	started = true

	// Refused first, each writes the table once Retry-After has passed.
	testkit.WaitFor(t, 10*time.Second, "follow.sh writes the table", fileHas(shFile, []string{seedMethod}, nil))
	testkit.WaitFor(t, 10*time.Second, "follow.py writes the table", fileHas(pyFile, []string{seedMethod}, nil))
	for _, path := range []string{shellPath, streamPath} {
		reqs := front.requests(path)
		if len(reqs) < 2 || reqs[0].status != http.StatusServiceUnavailable {
			t.Fatalf("%s: requests %+v, want a 503 and then more", path, reqs)
		}
		// 3 s: longer than either follower's backoff grows (its cap, 2 s),
		// so that only honouring Retry-After passes.
		if gap := reqs[1].at.Sub(reqs[0].at); gap < 2900*time.Millisecond {
			t.Errorf("%s: asked again %v after a 503 with Retry-After: 3", path, gap)
		}
	}

	// A registration reaches both.
	register(t, base, probeMethod)
	testkit.WaitFor(t, 10*time.Second, "follow.sh writes the change", fileHas(shFile, []string{seedMethod, probeMethod}, nil))
	testkit.WaitFor(t, 10*time.Second, "follow.py writes the change", fileHas(pyFile, []string{seedMethod, probeMethod}, nil))
	testkit.WaitFor(t, 10*time.Second, "follow.py prints the change", testkit.Until(func() bool {
		return strings.Contains(py.out.String(), "prod +"+probeMethod)
	}))
	testkit.WaitFor(t, 10*time.Second, "follow.sh reloads on each table", fileHas(reloads, []string{"reloaded\nreloaded\n"}, nil))
	// The tag is carried over: the shell follower waits on the tag it holds.
	status, hdr, _ := fetch(t, base, shellPath)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d", shellPath, status)
	}
	testkit.WaitFor(t, 10*time.Second, "follow.sh waits on the current tag", func() (bool, string) {
		reqs := front.requests(shellPath)
		last := reqs[len(reqs)-1]
		return last.ifNoneMatch == hdr.Get("ETag") && last.pr == "wait=5", fmt.Sprintf("%+v", last)
	})

	// The server goes away: each keeps its table and tries again, after a
	// delay rather than in a loop, until a server answers at the same
	// address again, with only the seed. Both pick up its table; follow.py
	// reconnects with the tag it holds.
	down := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	since := func(path string) []frontRequest {
		var out []frontRequest
		for _, r := range front.requests(path) {
			if r.at.After(down) {
				out = append(out, r)
			}
		}
		return out
	}
	for _, path := range []string{shellPath, streamPath} {
		testkit.WaitFor(t, 10*time.Second, path+": the follower tries while the server is down", testkit.Until(func() bool {
			return slices.ContainsFunc(since(path), func(r frontRequest) bool { return r.status == 0 })
		}))
	}
	for _, f := range []string{shFile, pyFile} {
		if ok, why := fileHas(f, []string{probeMethod}, nil)(); !ok {
			t.Errorf("the table was lost while the server was down: %s", why)
		}
	}
	startServer(strings.TrimPrefix(base, "http://"))
	testkit.WaitFor(t, 10*time.Second, "follow.sh picks up the new server's table", fileHas(shFile, []string{seedMethod}, []string{probeMethod}))
	testkit.WaitFor(t, 10*time.Second, "follow.py picks up the new server's table", fileHas(pyFile, []string{seedMethod}, []string{probeMethod}))
	for _, path := range []string{shellPath, streamPath} {
		reqs := since(path)
		for i := 1; i < len(reqs); i++ {
			if gap := reqs[i].at.Sub(reqs[i-1].at); reqs[i-1].status == 0 && gap < 900*time.Millisecond {
				t.Errorf("%s: tried again %v after a failed attempt, want a backoff of 1 s or more", path, gap)
			}
		}
	}
	if !slices.ContainsFunc(since(streamPath), func(r frontRequest) bool { return strings.HasPrefix(r.lastEventID, `"`) }) {
		t.Errorf("follow.py never reconnected with Last-Event-ID: %+v", since(streamPath))
	}

	// SIGTERM ends each at once, with status 0 and no file half written.
	for _, p := range []*follower{sh, py} {
		if err := p.stop(3 * time.Second); err != nil {
			t.Errorf("%s on SIGTERM: %v", p.name, err)
		}
	}
	leftover, _ := filepath.Glob(filepath.Join(dir, "*.part.*"))
	if len(leftover) > 0 {
		t.Errorf("temporary files left behind: %v", leftover)
	}
}

// register registers an instance of app follow-probe that serves method, as
// README's "Register" does.
func register(t *testing.T, base, method string) {
	t.Helper()
	body := `{"version":"v1","network":{"internal":"follow-probe:9000"},"methods":["` + method + `"],"keepalive":"client"}`
	resp, err := httpClient.Post(base+"/v1/envs/prod/apps/follow-probe/instances", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register = %d: %s", resp.StatusCode, b)
	}
}

// TestFollowPyParsesEventStream holds follow.py to the event stream format
// beyond what the server happens to write today: a byte order mark, CRLF
// line ends, comments, data over several lines, a field without a space
// after its colon, an event type it does not know, an event cut off by the
// connection's end, a retry, and a reset.
func TestFollowPyParsesEventStream(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("examples/follow/follow.py needs python3: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	streams := []string{
		crlf("\ufeffretry: 50\n: hello\n\n" +
			"event: snapshot\nid: \"t1\"\ndata: {\"env\":\"qa\",\n" +
			"data:\"routes\":[{\"method\":\"/a.A/One\",\"app_id\":\"a\",\"targets\":[]},\n" +
			"data: {\"method\":\"/a.A/Three\",\"app_id\":\"a\",\"targets\":[]}]}\n\n" +
			": ping\n\n" +
			"event: unknown-kind\ndata: {}\n\n" +
			"event: change\nid: \"t2\"\ndata: {\"tag\":\"\\\"t2\\\"\",\"envs\":[{\"env\":\"qa\",\n" +
			"data: \"added\":[{\"method\":\"/a.A/Two\",\"app_id\":\"a\",\"targets\":[]}],\"changed\":[],\"removed\":[\"/a.A/Three\"]}]}\n\n" +
			"event: change\nid: \"cut\"\ndata: {\"tag\":\"\\\"cut\\\"\",\"envs\":[{\"env\":\"qa\",\"added\":[{\"method\":\"/a.A/Cut\",\"app_id\":\"a\",\"targets\":[]}],\"changed\":[],\"removed\":[]}]}\n"),
		"event: change\nid: \"t3\"\ndata: {\"tag\":\"\\\"t3\\\"\",\"envs\":[{\"env\":\"qa\",\"added\":[],\"changed\":[{\"method\":\"/a.A/One\",\"app_id\":\"b\",\"targets\":[]}],\"removed\":[]}]}\n\n" +
			"event: unknown-kind\nid: \"u1\"\ndata: {}\n\n" +
			"event: reset\ndata: {\"reason\":\"slow\"}\n\n",
	}
	var (
		mu      sync.Mutex
		ids     []string
		openAt  []time.Time
		closeAt []time.Time
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/envs/qa/routes/events" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		n := len(ids)
		ids, openAt = append(ids, r.Header.Get("Last-Event-ID")), append(openAt, time.Now())
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		if n >= len(streams) {
			w.WriteHeader(http.StatusOK)
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, streams[n])
		mu.Lock()
		closeAt = append(closeAt, time.Now())
		mu.Unlock()
	}))
	t.Cleanup(fake.Close)

	out := filepath.Join(t.TempDir(), "qa.json")
	py := startFollower(t, "follow.py", t.TempDir(), nil,
		"python3", filepath.Join(root, "examples", "follow", "follow.py"), "qa", "-o", out, "--registry", fake.URL)
	testkit.WaitFor(t, 10*time.Second, "follow.py reconnects after the reset", testkit.Until(func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ids) > len(streams)
	}))
	want := `{"env":"qa","routes":[{"method":"/a.A/One","app_id":"b","targets":[]},{"method":"/a.A/Two","app_id":"a","targets":[]}]}` + "\n"
	testkit.WaitFor(t, 10*time.Second, "follow.py writes the table", func() (bool, string) {
		b, err := os.ReadFile(out)
		return string(b) == want, fmt.Sprintf("%s (%v), want %s", b, err, want)
	})
	if err := py.stop(3 * time.Second); err != nil {
		t.Errorf("follow.py on SIGTERM: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := []string{ids[1], ids[2]}; got[0] != `"t2"` || got[1] != `"t3"` {
		t.Errorf("Last-Event-ID on reconnecting = %q, want the last applied event's id each time: \"t2\", \"t3\"", got)
	}
	// retry: 50 is honoured: the default is 1 s.
	if gap := openAt[1].Sub(closeAt[0]); gap > 900*time.Millisecond {
		t.Errorf("reconnected %v after the stream ended, want about the 50 ms the stream's retry asks", gap)
	}
	for _, line := range []string{`snapshot "t1" qa:2`, `change "t2" qa +/a.A/Two -/a.A/Three`, `change "t3" qa ~/a.A/One`} {
		if !strings.Contains(py.out.String(), line+"\n") {
			t.Errorf("follow.py printed no line %q", line)
		}
	}
}
