package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// fakeReviewer answers TokenReviews from a table of tokens.
type fakeReviewer struct {
	mu        sync.Mutex
	users     map[string]authenticationv1.UserInfo
	audiences []string // answered in status.audiences; nil echoes the request
	err       error
	gate      chan struct{} // when set, reviews wait for it
	calls     atomic.Int64
	lastSpec  authenticationv1.TokenReviewSpec
}

func (f *fakeReviewer) Create(ctx context.Context, tr *authenticationv1.TokenReview, _ metav1.CreateOptions) (*authenticationv1.TokenReview, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSpec = tr.Spec
	if f.err != nil {
		return nil, f.err
	}
	out := tr.DeepCopy()
	u, ok := f.users[tr.Spec.Token]
	if !ok {
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: false, Error: "invalid bearer token"}
		return out, nil
	}
	aud := f.audiences
	if aud == nil {
		aud = tr.Spec.Audiences
	}
	out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: u, Audiences: aud}
	return out, nil
}

func (f *fakeReviewer) allow(token string, u authenticationv1.UserInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users == nil {
		f.users = map[string]authenticationv1.UserInfo{}
	}
	f.users[token] = u
}

func saUser(ns, name string) authenticationv1.UserInfo {
	return authenticationv1.UserInfo{
		Username: "system:serviceaccount:" + ns + ":" + name,
		UID:      "uid-" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
}

// jwt builds an unsigned token with the given exp claim (none when 0); the
// fake reviewer stands in for the signature check.
func jwt(exp time.Time, salt string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims := fmt.Sprintf(`{"sub":%q}`, salt)
	if !exp.IsZero() {
		claims = fmt.Sprintf(`{"sub":%q,"exp":%d}`, salt, exp.Unix())
	}
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("signature-"+salt))
}

func newAuth(t *testing.T, rv *fakeReviewer, c *testkit.Clock, opts Options) *Authenticator {
	t.Helper()
	opts.Reviewer = rv
	opts.Now = c.Now
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustAuth(t *testing.T, a *Authenticator, token string) Identity {
	t.Helper()
	id, err := a.Authenticate(t.Context(), token)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return id
}

func wantCode(t *testing.T, err error, code model.Code) {
	t.Helper()
	if got := model.ErrorCode(err); err == nil || got != code {
		t.Fatalf("error %v: code %s, want %s", err, got, code)
	}
}

func TestAuthenticateIdentity(t *testing.T) {
	rv := &fakeReviewer{}
	c := testkit.NewClock(t0)
	a := newAuth(t, rv, c, Options{})
	pod := saUser("team-a", "worker")
	pod.Extra = map[string]authenticationv1.ExtraValue{
		ExtraPodName:                             {"worker-7d9f"},
		ExtraPodUID:                              {"0b5c-uid"},
		"authentication.kubernetes.io/node-name": {"node-1"},
	}
	rv.allow("pod-token", pod)
	rv.allow("sa-token", saUser("team-a", "client"))
	rv.allow("user-token", authenticationv1.UserInfo{Username: "jane", Groups: []string{"ops"}})
	rv.allow("odd-token", authenticationv1.UserInfo{Username: "system:serviceaccount:only-namespace"})

	id := mustAuth(t, a, "pod-token")
	if id.Username != "system:serviceaccount:team-a:worker" || id.UID != "uid-worker" || id.Namespace != "team-a" ||
		id.ServiceAccount != "worker" || id.Pod == nil || *id.Pod != (model.PodRef{Name: "worker-7d9f", UID: "0b5c-uid"}) {
		t.Errorf("pod-bound identity = %+v", id)
	}
	rb := id.RegisteredBy()
	if rb.Username != id.Username || rb.UID != id.UID || rb.Namespace != "team-a" || rb.Pod == nil || rb.Pod.UID != "0b5c-uid" {
		t.Errorf("RegisteredBy = %+v", rb)
	}
	if got := rv.lastSpec.Audiences; len(got) != 1 || got[0] != DefaultAudience {
		t.Errorf("reviewed for audiences %q, want [%s]", got, DefaultAudience)
	}
	if id := mustAuth(t, a, "sa-token"); id.Pod != nil || !id.IsServiceAccount() || id.RegisteredBy().Pod != nil {
		t.Errorf("unbound identity = %+v", id)
	}
	if id := mustAuth(t, a, "user-token"); id.IsServiceAccount() || id.Namespace != "" || id.Groups[0] != "ops" {
		t.Errorf("user identity = %+v", id)
	}
	if id := mustAuth(t, a, "odd-token"); id.IsServiceAccount() {
		t.Errorf("malformed ServiceAccount name read as one: %+v", id)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	rv := &fakeReviewer{}
	c := testkit.NewClock(t0)
	a := newAuth(t, rv, c, Options{Audiences: []string{"registry-api", " "}})

	_, err := a.Authenticate(t.Context(), "")
	wantCode(t, err, model.CodeUnauthorized)
	if rv.calls.Load() != 0 {
		t.Error("a missing token was sent for review")
	}

	_, err = a.Authenticate(t.Context(), "forged")
	wantCode(t, err, model.CodeUnauthorized)
	if !strings.Contains(err.Error(), "registry-api") {
		t.Errorf("rejection %q does not name the audience", err)
	}

	// A reviewer that answers for other audiences (or ignores ours).
	rv.allow("other-audience", saUser("a", "b"))
	rv.audiences = []string{"https://kubernetes.default.svc"}
	_, err = a.Authenticate(t.Context(), "other-audience")
	wantCode(t, err, model.CodeUnauthorized)
	rv.audiences = []string{}
	_, err = a.Authenticate(t.Context(), "other-audience")
	wantCode(t, err, model.CodeUnauthorized)

	// The API server is down: retry later, not a bad token.
	rv.err = errors.New("connection refused")
	_, err = a.Authenticate(t.Context(), "forged")
	wantCode(t, err, model.CodeStoreUnavailable)
}

func TestCacheBoundByExpiry(t *testing.T) {
	rv := &fakeReviewer{}
	c := testkit.NewClock(t0)
	a := newAuth(t, rv, c, Options{CacheTTL: time.Minute})

	soon := jwt(t0.Add(20*time.Second), "soon")
	later := jwt(t0.Add(time.Hour), "later")
	noExp := jwt(time.Time{}, "none")
	past := jwt(t0.Add(-time.Second), "past")
	for _, tok := range []string{soon, later, noExp, past, "opaque-static-token"} {
		rv.allow(tok, saUser("ns", "sa"))
	}
	reviews := func(tok string, at time.Duration) int64 {
		c.Set(t0.Add(at))
		before := rv.calls.Load()
		mustAuth(t, a, tok)
		return rv.calls.Load() - before
	}
	tests := []struct {
		name  string
		token string
		at    time.Duration
		want  int64
	}{
		{"exp soon: first use reviews", soon, 0, 1},
		{"exp soon: cached before exp", soon, 19 * time.Second, 0},
		{"exp soon: reviewed again at exp, not at the max", soon, 20 * time.Second, 1},
		{"exp later: first use reviews", later, 0, 1},
		{"exp later: cached until the max", later, 59 * time.Second, 0},
		{"exp later: reviewed again after the max", later, 60 * time.Second, 1},
		{"no exp: first use reviews", noExp, 0, 1},
		{"no exp: cached until the max", noExp, 59 * time.Second, 0},
		{"no exp: reviewed after the max", noExp, 61 * time.Second, 1},
		{"not a JWT: cached until the max", "opaque-static-token", 0, 1},
		{"not a JWT: cached", "opaque-static-token", 30 * time.Second, 0},
		{"exp passed: never cached", past, 0, 1},
		{"exp passed: reviewed every time", past, 0, 1},
	}
	for _, tt := range tests {
		if got := reviews(tt.token, tt.at); got != tt.want {
			t.Errorf("%s: %d reviews, want %d", tt.name, got, tt.want)
		}
	}
}

func TestCacheNegativeResultsNotCached(t *testing.T) {
	rv := &fakeReviewer{}
	c := testkit.NewClock(t0)
	a := newAuth(t, rv, c, Options{})
	tok := jwt(t0.Add(time.Hour), "new-sa")
	for range 3 {
		_, err := a.Authenticate(t.Context(), tok)
		wantCode(t, err, model.CodeUnauthorized)
	}
	rv.err = errors.New("timeout")
	_, err := a.Authenticate(t.Context(), tok)
	wantCode(t, err, model.CodeStoreUnavailable)
	if rv.calls.Load() != 4 {
		t.Errorf("%d reviews for 4 failed attempts, want 4: failures must not be cached", rv.calls.Load())
	}
	// The ServiceAccount appears: the very next request is accepted.
	rv.err = nil
	rv.allow(tok, saUser("ns", "new-sa"))
	if id := mustAuth(t, a, tok); id.ServiceAccount != "new-sa" {
		t.Errorf("identity %+v", id)
	}
}

func TestCacheBoundInSize(t *testing.T) {
	rv := &fakeReviewer{}
	c := testkit.NewClock(t0)
	a := newAuth(t, rv, c, Options{CacheSize: 3})
	tokens := make([]string, 5)
	for i := range tokens {
		tokens[i] = jwt(t0.Add(time.Hour), fmt.Sprint(i))
		rv.allow(tokens[i], saUser("ns", fmt.Sprint("sa", i)))
	}
	for _, tok := range tokens[:3] {
		mustAuth(t, a, tok)
	}
	mustAuth(t, a, tokens[0]) // now the most recently used
	for _, tok := range tokens[3:] {
		mustAuth(t, a, tok)
	}
	// The cache now holds tokens 0, 3 and 4, its bound 3: those are
	// answered without a review, and 1 and 2, the least recently used, are
	// gone.
	before := rv.calls.Load()
	mustAuth(t, a, tokens[0])
	if rv.calls.Load() != before {
		t.Error("the most recently used token was evicted")
	}
	mustAuth(t, a, tokens[3])
	mustAuth(t, a, tokens[4])
	if n := rv.calls.Load() - before; n != 0 {
		t.Errorf("%d reviews for the 3 most recent tokens, want 0: the cache holds fewer than its bound 3", n)
	}
	// 2 first: were it still held, the cache would exceed its bound.
	mustAuth(t, a, tokens[2])
	if rv.calls.Load() != before+1 {
		t.Error("the second least recently used token was not evicted: the cache holds more than its bound 3")
	}
	mustAuth(t, a, tokens[1])
	if rv.calls.Load() != before+2 {
		t.Error("the least recently used token was not evicted")
	}
}

func TestConcurrentRequestsShareOneReview(t *testing.T) {
	synctest.Test(t, testConcurrentRequestsShareOneReview)
}

func testConcurrentRequestsShareOneReview(t *testing.T) {
	rv := &fakeReviewer{gate: make(chan struct{})}
	c := testkit.NewClock(t0)
	a := newAuth(t, rv, c, Options{})
	tok := jwt(t0.Add(time.Hour), "busy")
	rv.allow(tok, saUser("ns", "busy"))

	// One caller gives up early; the others must not fail with it.
	quitter, quit := context.WithCancel(t.Context())
	quitErr := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(quitter, tok)
		quitErr <- err
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := a.Authenticate(t.Context(), tok)
			errs <- err
		})
	}
	// Every caller is now waiting, and the one review is held at the gate.
	synctest.Wait()
	quit()
	if err := <-quitErr; !errors.Is(err, context.Canceled) {
		t.Errorf("the canceled caller got %v", err)
	}
	close(rv.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := rv.calls.Load(); n != 1 {
		t.Errorf("%d TokenReviews for one token, want 1", n)
	}
}

func TestTokensNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	rv := &fakeReviewer{}
	c := testkit.NewClock(t0)
	a := newAuth(t, rv, c, Options{Log: zerolog.New(&logs)})
	secret := jwt(t0.Add(time.Hour), "secret")
	if _, err := a.Authenticate(t.Context(), secret); err == nil {
		t.Fatal("an unknown token was accepted")
	}
	rv.err = errors.New("boom")
	if _, err := a.Authenticate(t.Context(), secret); err == nil {
		t.Fatal("a failed review accepted the token")
	}
	out := logs.String()
	if out == "" {
		t.Fatal("nothing was logged")
	}
	for _, part := range strings.Split(secret, ".") {
		if strings.Contains(out, part) {
			t.Errorf("the log holds part of the token:\n%s", out)
		}
	}
	if k := keyOf(secret); !strings.Contains(out, k.short()) {
		t.Errorf("the log lacks the token's hash prefix %s:\n%s", k.short(), out)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"  Bearer   abc  ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		token, ok := BearerToken(tt.header)
		if token != tt.token || ok != tt.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	mk := func(payload string) string { return enc([]byte(`{}`)) + "." + enc([]byte(payload)) + ".sig" }
	tests := []struct {
		token string
		want  time.Time
		ok    bool
	}{
		{mk(`{"exp":1795695862}`), time.Unix(1795695862, 0), true},
		{mk(`{"exp":1795695862.5}`), time.Unix(1795695862, 0), true},
		{enc([]byte(`{}`)) + "." + base64.URLEncoding.EncodeToString([]byte(`{"exp":1795695862}`)) + ".sig", time.Unix(1795695862, 0), true},
		{mk(`{"exp":"1795695862"}`), time.Time{}, false},
		{mk(`{"exp":-1}`), time.Time{}, false},
		{mk(`{"exp":1e300}`), time.Time{}, false},
		{mk(`{}`), time.Time{}, false},
		{mk(`not json`), time.Time{}, false},
		{"a.%%%.c", time.Time{}, false},
		{"opaque", time.Time{}, false},
		{"a.b", time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := tokenExpiry(tt.token)
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("tokenExpiry(%s) = %v, %v; want %v, %v", tt.token, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a reviewer succeeded")
	}
	if _, err := New(Options{Reviewer: &fakeReviewer{}, CacheTTL: -time.Second}); err == nil {
		t.Error("New with a negative cache TTL succeeded")
	}
	a, err := New(Options{Reviewer: &fakeReviewer{}, Audiences: []string{"", "x"}})
	if err != nil || strings.Join(a.Audiences(), ",") != "x" {
		t.Errorf("New = %v, audiences %v", err, a.Audiences())
	}
}
