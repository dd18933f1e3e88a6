package httpapi

import (
	"context"
	"net/http"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/write"
)

// Values of WWW-Authenticate (RFC 6750): a missing credential gets the
// challenge alone, a refused one says so.
var (
	challengeMissing = []string{`Bearer realm="registry-api"`}
	challengeInvalid = []string{`Bearer realm="registry-api", error="invalid_token"`}
)

// identityKey carries the authenticated caller in its request's context.
type identityKey struct{}

func withIdentity(ctx context.Context, id auth.Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// identityFrom returns the caller that authenticate let through.
func identityFrom(ctx context.Context) (auth.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(auth.Identity)
	return id, ok
}

// authenticate lets through only requests whose bearer token a accepts, with
// the caller's identity in their context. It runs before request validation:
// who may not call an operation learns nothing of what it expects.
func authenticate(a Authenticator) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := auth.BearerToken(r.Header.Get("Authorization"))
			id, err := a.Authenticate(r.Context(), token)
			if err != nil {
				switch model.ErrorCode(err) {
				case model.CodeUnauthorized:
					if ok {
						w.Header()[hdrWWWAuthenticate] = challengeInvalid
					} else {
						w.Header()[hdrWWWAuthenticate] = challengeMissing
					}
				}
				writeProblem(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
		})
	}
}

const hdrWWWAuthenticate = "Www-Authenticate"

// guard is the write policy applied to r's caller, on the copy of the entry
// that the write replaces; nil when the server authenticates nobody.
func (wd writeDeps) guard(r *http.Request, action auth.Action, namespace string) write.Guard {
	id, ok := identityFrom(r.Context())
	if !ok {
		if wd.authenticated {
			// Fail closed: a route that skipped authentication writes nothing.
			return func([]byte) error {
				return model.Errorf(model.CodeUnauthorized, "the request was not authenticated")
			}
		}
		return nil
	}
	return func(existing []byte) error {
		return wd.policy.Authorize(id, action, namespace, auth.EntryOf(existing))
	}
}
