package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/routesync"
)

// newRouteSync builds the route sync that REGISTRY_SYNC_GRPCROUTES and
// REGISTRY_SYNC_ISTIO ask for; nil when both are off. Every replica runs
// its Discover, so that each reports the same kinds in /v1/envs/{env}; the
// leader runs its Run.
func newRouteSync(cfg settings, restCfg *rest.Config, hub *follow.Hub, log zerolog.Logger, reg prometheus.Registerer) (*routesync.Syncer, error) {
	if !cfg.SyncGRPCRoutes && !cfg.SyncIstio {
		return nil, nil
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("route sync: dynamic client: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("route sync: discovery client: %w", err)
	}
	var kinds []routesync.Kind
	if cfg.SyncGRPCRoutes {
		kinds = append(kinds, routesync.GatewayAPIKinds()...)
	}
	if cfg.SyncIstio {
		kinds = append(kinds, routesync.IstioKinds()...)
	}
	return routesync.New(routesync.Options{
		Follow:    hub,
		Client:    dyn,
		Discovery: disco,
		Kinds:     kinds,
		Build:     syncedObjects(cfg),
		TTL:       cfg.TTL,
		Grace:     cfg.SyncGrace,
		// A few missed polls are a slow API server; more, an outage.
		MaxStaleness: max(5*cfg.PollInterval, cfg.TTL),
		Namespaces:   cfg.namespaces,
		Log:          log.With().Str("component", "route-sync").Logger(),
		Registerer:   reg,
	})
}

// syncedObjects builds what the sync applies: the export's objects, without
// the route table's tag, so that one method's change rewrites only the
// objects that route it.
func syncedObjects(cfg settings) routesync.Build {
	return func(env string, table *model.RouteTable, namespaces map[string]string) ([]*unstructured.Unstructured, error) {
		opts := export.Options{Env: env, Namespaces: namespaces, Gateway: cfg.gateway, VersionHeader: cfg.IstioVersionHeader}
		var out []*unstructured.Unstructured
		if cfg.SyncGRPCRoutes {
			gw := export.GRPCRoutes(table, opts)
			objs, err := gw.Objects()
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		if cfg.SyncIstio {
			istio := export.IstioObjects(table, opts)
			objs, err := istio.Objects()
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
}
