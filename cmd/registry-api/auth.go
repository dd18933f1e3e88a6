package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"k8s.io/client-go/kubernetes"

	"github.com/acme/registry-api/internal/auth"
	httpapi "github.com/acme/registry-api/internal/http"
)

// configureAuth sets the server's authentication and write policy from
// REGISTRY_AUTH and friends.
func configureAuth(deps *httpapi.Deps, cfg settings, client kubernetes.Interface, log zerolog.Logger, reg prometheus.Registerer) error {
	if cfg.authMode() != authKubernetes {
		return nil
	}
	a, err := auth.New(auth.Options{
		Reviewer:   client.AuthenticationV1().TokenReviews(),
		Audiences:  cfg.TokenAudiences,
		Log:        log,
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	deps.Auth = a
	deps.Policy = auth.Policy{Admins: cfg.admins}
	deps.ReadAuth = cfg.ReadAuth
	return nil
}
