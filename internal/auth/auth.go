// Package auth authenticates callers with Kubernetes ServiceAccount tokens,
// checked by the API server's TokenReview, and decides with one policy what
// an authenticated caller may write.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"

	"github.com/acme/registry-api/internal/model"
)

// Defaults of Options.
const (
	DefaultAudience  = "registry-api"
	DefaultCacheTTL  = time.Minute
	DefaultCacheSize = 4096
	DefaultTimeout   = 5 * time.Second
)

// Keys of TokenReview's user.extra for tokens bound to a pod.
const (
	ExtraPodName = "authentication.kubernetes.io/pod-name"
	ExtraPodUID  = "authentication.kubernetes.io/pod-uid"
)

const serviceAccountPrefix = "system:serviceaccount:"

// Identity is an authenticated caller as the TokenReview reported it.
type Identity struct {
	Username string
	UID      string
	Groups   []string
	// Namespace and ServiceAccount are set for ServiceAccount tokens.
	Namespace      string
	ServiceAccount string
	// Pod is the pod the token is bound to, if any.
	Pod *model.PodRef
}

// IsServiceAccount reports whether the caller is a ServiceAccount.
func (id Identity) IsServiceAccount() bool { return id.ServiceAccount != "" }

// RegisteredBy is how an entry records the caller that registered it.
func (id Identity) RegisteredBy() model.RegisteredBy {
	rb := model.RegisteredBy{Username: id.Username, UID: id.UID, Namespace: id.Namespace}
	if id.Pod != nil {
		p := *id.Pod
		rb.Pod = &p
	}
	return rb
}

// TokenReviewer creates TokenReviews; the clientset's
// AuthenticationV1().TokenReviews() is one.
type TokenReviewer interface {
	Create(ctx context.Context, review *authenticationv1.TokenReview, opts metav1.CreateOptions) (*authenticationv1.TokenReview, error)
}

// Options configure an Authenticator. The zero value of every field but
// Reviewer is safe.
type Options struct {
	Reviewer TokenReviewer
	// Audiences the token must be meant for; empty means the package
	// default (DefaultAudience).
	Audiences []string
	// CacheTTL bounds how long an accepted token is trusted without asking
	// again; the token's own expiry bounds it further. Zero means the package
	// default (DefaultCacheTTL).
	CacheTTL time.Duration
	// CacheSize bounds the number of accepted tokens remembered; zero means
	// the package default (DefaultCacheSize).
	CacheSize int
	// Timeout bounds each TokenReview; zero means the package default
	// (DefaultTimeout).
	Timeout time.Duration
	// Now is the clock of the cache; default time.Now.
	Now func() time.Time
	Log zerolog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	if o.Reviewer == nil {
		return errors.New("auth: no TokenReview client")
	}
	if o.CacheTTL < 0 || o.CacheSize < 0 || o.Timeout < 0 {
		return errors.New("auth: cache TTL, cache size and timeout must not be negative")
	}
	o.Audiences = slices.DeleteFunc(slices.Clone(o.Audiences), func(a string) bool { return strings.TrimSpace(a) == "" })
	if len(o.Audiences) == 0 {
		o.Audiences = []string{DefaultAudience}
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultCacheTTL
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Authenticator checks bearer tokens with TokenReviews and remembers the
// accepted ones briefly, so that a heartbeat does not cost a review each
// time. Rejections are never remembered: a token that becomes valid (a
// ServiceAccount created a moment later) works on the next try. It is safe
// for concurrent use.
type Authenticator struct {
	opts Options
	log  zerolog.Logger
	// cache maps a tokenKey to its accepted Identity, at most CacheSize of
	// them with the least recently used going first, so a flood of distinct
	// tokens cannot grow memory.
	cache *cache.LRUExpireCache
	m     *metrics
	// reviews lets concurrent requests with the same token share one
	// TokenReview; keyed by the tokenKey's bytes.
	reviews singleflight.Group
}

// clockFunc is Options.Now as the cache's clock.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

// New returns an Authenticator.
func New(opts Options) (*Authenticator, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("auth: metrics: %w", err)
	}
	return &Authenticator{
		opts:  opts,
		log:   opts.Log.With().Str("component", "auth").Logger(),
		cache: cache.NewLRUExpireCacheWithClock(opts.CacheSize, clockFunc(opts.Now)),
		m:     m,
	}, nil
}

// Audiences are the audiences tokens are checked for.
func (a *Authenticator) Audiences() []string { return slices.Clone(a.opts.Audiences) }

// Authenticate returns the identity of token. A missing, invalid, expired or
// revoked token, or one meant for another audience, is unauthorized; a
// TokenReview that could not be made is store_unavailable, to retry.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		a.m.results.WithLabelValues("missing").Inc()
		return Identity{}, errMissingToken
	}
	key := keyOf(token)
	if id, ok := a.cache.Get(key); ok {
		a.m.results.WithLabelValues("cached").Inc()
		return id.(Identity), nil
	}

	// Detached from this request: the callers sharing the review must not
	// fail because the first one went away.
	detached := context.WithoutCancel(ctx)
	done := a.reviews.DoChan(string(key[:]), func() (any, error) {
		return a.review(detached, key, token)
	})
	select {
	case r := <-done:
		if r.Err != nil {
			return Identity{}, r.Err
		}
		return r.Val.(Identity), nil
	case <-ctx.Done():
		return Identity{}, ctx.Err()
	}
}

func (a *Authenticator) review(ctx context.Context, key tokenKey, token string) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.Timeout)
	defer cancel()
	start := a.opts.Now()
	out, err := a.opts.Reviewer.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.opts.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		a.m.results.WithLabelValues("error").Inc()
		a.log.Warn().Err(err).Str("token_sha256", key.short()).Msg("TokenReview failed")
		return Identity{}, &model.Error{Code: model.CodeStoreUnavailable,
			Message: "the bearer token could not be verified: the Kubernetes API server did not answer the TokenReview; retry",
			Err:     fmt.Errorf("create TokenReview: %w", err)}
	}
	st := out.Status
	if !st.Authenticated {
		a.m.results.WithLabelValues("rejected").Inc()
		a.log.Info().Str("token_sha256", key.short()).Str("reason", st.Error).Msg("bearer token rejected by TokenReview")
		return Identity{}, errRejected(a.opts.Audiences)
	}
	if !audiencesMatch(a.opts.Audiences, st.Audiences) {
		// An API server that ignores spec.audiences answers for its own
		// audience; such a token is not meant for registry-api.
		a.m.results.WithLabelValues("rejected").Inc()
		a.log.Info().Str("token_sha256", key.short()).Strs("audiences", st.Audiences).Msg("bearer token is for other audiences")
		return Identity{}, errRejected(a.opts.Audiences)
	}
	id := identityOf(st.User)
	a.m.results.WithLabelValues("authenticated").Inc()
	a.remember(key, id, a.cacheUntil(token, start))
	return id, nil
}

// remember caches id until until; a deadline already passed is not kept.
// The cache still answers at an entry's expiry instant, while until is the
// first instant the token is no longer trusted, hence the nanosecond less.
func (a *Authenticator) remember(key tokenKey, id Identity, until time.Time) {
	ttl := until.Sub(a.opts.Now())
	if ttl <= 0 {
		return
	}
	a.cache.Add(key, id, ttl-time.Nanosecond)
}

// cacheUntil is how long an accepted token may be trusted: CacheTTL from
// when it was reviewed, but never past its exp claim. The claim is read
// without verifying the signature, only to shorten that time; the
// TokenReview is what verified the token.
func (a *Authenticator) cacheUntil(token string, reviewed time.Time) time.Time {
	until := reviewed.Add(a.opts.CacheTTL)
	if exp, ok := tokenExpiry(token); ok && exp.Before(until) {
		until = exp
	}
	return until
}

func audiencesMatch(want, got []string) bool {
	for _, g := range got {
		if slices.Contains(want, g) {
			return true
		}
	}
	return false
}

func identityOf(u authenticationv1.UserInfo) Identity {
	id := Identity{Username: u.Username, UID: u.UID, Groups: slices.Clone(u.Groups)}
	if rest, ok := strings.CutPrefix(u.Username, serviceAccountPrefix); ok {
		ns, name, ok := strings.Cut(rest, ":")
		if ok && ns != "" && name != "" && !strings.Contains(name, ":") {
			id.Namespace, id.ServiceAccount = ns, name
		}
	}
	name, uid := first(u.Extra[ExtraPodName]), first(u.Extra[ExtraPodUID])
	if name != "" && uid != "" {
		id.Pod = &model.PodRef{Name: name, UID: uid}
	}
	return id
}

func first(v authenticationv1.ExtraValue) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

var errMissingToken = &model.Error{Code: model.CodeUnauthorized,
	Message: "this request needs an Authorization: Bearer header with a Kubernetes ServiceAccount token"}

func errRejected(audiences []string) error {
	return model.Errorf(model.CodeUnauthorized,
		"the bearer token was not accepted: it is invalid, expired or revoked, or not meant for audience %s", strings.Join(audiences, ", "))
}

// BearerToken extracts the token of an Authorization header value; ok is
// false when it is not a bearer credential.
func BearerToken(header string) (token string, ok bool) {
	scheme, token, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// tokenKey is a token's SHA-256: the cache and the logs never hold a token.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// short is a prefix of the hash, enough to tell tokens apart in logs.
func (k tokenKey) short() string { return hex.EncodeToString(k[:6]) }
