package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/acme/registry-api/internal/endpoints"
	"github.com/acme/registry-api/internal/follow"
	httpapi "github.com/acme/registry-api/internal/http"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/watch"
	"github.com/acme/registry-api/internal/write"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// run parses the command line and the environment, then serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("registry-api", flag.ContinueOnError)
	fs.SetOutput(stdout)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { _ = printUsage(stdout) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, version)
		return nil
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout)
}

// serve wires the store, the poller and the HTTP server, and runs them until
// ctx ends; then it drains in-flight requests.
func serve(ctx context.Context, cfg settings, stdout io.Writer) error {
	log, closeLog, err := newLogger(cfg.Config, stdout)
	if err != nil {
		return err
	}
	defer closeLog()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	st, client, restCfg, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	poller, err := watch.New(st, watch.Options{
		Namespaces: cfg.namespaces,
		Interval:   cfg.PollInterval,
		TTL:        cfg.TTL,
		Parse:      model.ParseOptions{Zone: cfg.zone, MaxClockSkew: cfg.MaxClockSkew},
		Log:        log,
		Registerer: reg,
		// Against a cluster, an informer reads the endpoints that keep
		// version registrations alive: not ready before it has.
		AwaitEndpoints: client != nil,
	})
	if err != nil {
		return err
	}
	// The second source of the snapshot: the ready endpoints of the
	// Services that version registrations name, followed by informers; on
	// the memory store, the seed's EndpointSlices and Pods stand in.
	var followEndpoints func(context.Context)
	if client == nil && cfg.Seed != "" {
		data, err := os.ReadFile(cfg.Seed)
		if err != nil {
			return fmt.Errorf("REGISTRY_SEED=%q: %w", cfg.Seed, err)
		}
		eps, err := endpoints.SeedEndpoints(data)
		if err != nil {
			return fmt.Errorf("REGISTRY_SEED=%q: %w", cfg.Seed, err)
		}
		poller.SetEndpoints(eps)
	}
	if client != nil {
		meta, err := metadata.NewForConfig(restCfg)
		if err != nil {
			return fmt.Errorf("metadata client: %w", err)
		}
		src, err := endpoints.New(endpoints.Options{Client: client, Metadata: meta, Snapshots: poller, Sink: poller.SetEndpoints, Log: log})
		if err != nil {
			return err
		}
		followEndpoints = src.Run
	}
	// One hub judges the route tables for every follower: event streams,
	// blocked queries and route sync.
	hub, err := follow.New(follow.Options{Source: poller, TTL: cfg.TTL, MaxFollowers: cfg.MaxFollowers, Registerer: reg})
	if err != nil {
		return err
	}
	// Closed when draining begins: event streams and blocked queries end
	// then, since http.Server.Shutdown waits for them but never ends them.
	draining := make(chan struct{})
	deps := httpapi.Deps{
		Log:                log,
		MaxInFlight:        cfg.MaxInFlight,
		BodyReadTimeout:    cfg.BodyReadTimeout,
		MaxBodyBytes:       cfg.MaxBodyBytes,
		Snapshots:          poller,
		TTL:                cfg.TTL,
		Prometheus:         reg,
		ReadOnly:           cfg.ReadOnly,
		WriteNamespace:     cfg.writeNamespace,
		Follow:             hub,
		Drain:              draining,
		Gateway:            cfg.gateway,
		IstioVersionHeader: cfg.IstioVersionHeader,
	}
	if err := configureAuth(&deps, cfg, client, log, reg); err != nil {
		return err
	}
	routeSync, err := newRouteSync(cfg, restCfg, hub, log, reg)
	if err != nil {
		return err
	}
	if routeSync != nil {
		deps.RouteSync = routeSync.Status
		go routeSync.Discover(ctx)
	}
	if !cfg.ReadOnly {
		writer, err := write.New(write.Options{
			Store:             st,
			Zone:              cfg.zone,
			TTL:               cfg.TTL,
			BatchWindow:       cfg.WriteBatchWindow,
			MaxConfigMapBytes: cfg.MaxConfigMapBytes,
			Log:               log,
			Registerer:        reg,
			// The back edge against the flow API server -> poller ->
			// snapshot -> handlers: this replica's reads see its own writes
			// at once, before the next poll.
			OnWritten: poller.Apply,
		})
		if err != nil {
			return err
		}
		// Deferred, so it runs once the HTTP server has drained: the last
		// requests' writes are flushed and waited for.
		defer writer.Close()
		deps.Writer = writer

		// The leader's work stops as soon as ctx ends, releasing the lease so
		// that another replica takes over; this waits for it before the
		// writer it uses is closed.
		stopUpkeep, err := startLeader(ctx, cfg, st, client, poller, writer, routeSync, log, reg)
		if err != nil {
			return err
		}
		defer stopUpkeep()
	}
	handler, err := httpapi.NewServer(deps)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("REGISTRY_ADDR=%q: cannot listen there: %w", cfg.Addr, err)
	}
	if cfg.OnListen != nil {
		cfg.OnListen(ln.Addr())
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		// The request line and headers; net/http itself answers 431 past it.
		MaxHeaderBytes: maxHeaderBytes,
		IdleTimeout:    2 * time.Minute,
		// Not canceled with ctx: a write in flight when shutdown begins
		// finishes and is answered truthfully while the server drains.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	srv.RegisterOnShutdown(func() { close(draining) })

	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		if followEndpoints != nil {
			endpointsDone := make(chan struct{})
			go func() {
				defer close(endpointsDone)
				followEndpoints(ctx)
			}()
			defer func() { <-endpointsDone }()
		}
		poller.Run(ctx)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Str("store", cfg.Store).Strs("namespaces", cfg.Namespaces).
		Bool("read_only", cfg.ReadOnly).Str("write_namespace", cfg.writeNamespace).
		Str("auth", cfg.authMode()).Bool("read_auth", cfg.ReadAuth).Dur("gc_after", cfg.GCAfter).
		Str("version", version).Msg("registry-api listening")

	select {
	case err := <-serveErr:
		cancel()
		<-pollDone
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: draining in-flight requests")
	// The serving context is gone; draining gets a fresh deadline of its own.
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelShutdown()
	err = srv.Shutdown(shutdownCtx)
	<-pollDone
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}

// openStore opens the store, and for the kube store the client of its API
// server, which also reviews tokens and elects the leader.
func openStore(ctx context.Context, cfg settings, log zerolog.Logger) (store.Store, kubernetes.Interface, *rest.Config, error) {
	if cfg.Store == "memory" {
		var seed []corev1.ConfigMap
		if cfg.Seed != "" {
			cms, err := store.LoadSeedFile(cfg.Seed)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("REGISTRY_SEED=%q: %w", cfg.Seed, err)
			}
			seed = cms
		}
		mem, err := store.NewMemory(seed...)
		if err != nil {
			return nil, nil, nil, err
		}
		if cfg.SeedRefresh {
			// Refreshed before anything reads the seed: its run_dates are old,
			// and the leader's GC would remove the demo entries first.
			entries := store.SeedEntriesOf(seed)
			if err := store.RefreshSeed(ctx, mem, entries, cfg.zone); err != nil {
				return nil, nil, nil, err
			}
			go store.RefreshSeedEvery(ctx, mem, entries, cfg.TTL/2, cfg.zone, log.With().Str("component", "seed-refresh").Logger())
		}
		return mem, nil, nil, nil
	}
	restCfg, err := kubeConfig(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	restCfg.UserAgent = "registry-api/" + version
	// client-go's default of 5 requests a second would throttle the write
	// path: every write is a Get and an Update, and every instance heartbeats
	// each TTL/2. The API server's priority and fairness guards it instead.
	restCfg.QPS, restCfg.Burst = kubeQPS, kubeBurst
	kube, err := store.NewKube(restCfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return kube, kube.Client, restCfg, nil
}

// kubeConfig finds API server credentials: in-cluster inside a pod, else a
// kubeconfig file. With neither, it refuses to start rather than serve an
// empty registry.
func kubeConfig(cfg settings) (*rest.Config, error) {
	path := cfg.Kubeconfig
	if path == "" {
		path = cfg.proc.kubeconfig
	}
	if cfg.proc.inCluster && path == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster kubernetes config: %w", err)
		}
		return c, nil
	}
	if path == "" {
		if home := cfg.proc.home; home != "" {
			path = filepath.Join(home, ".kube", "config")
		}
	}
	if path == "" {
		return nil, errNoKubeconfig
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w (looked for %s: %v)", errNoKubeconfig, path, err)
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	return c, nil
}

// maxHeaderBytes bounds a request's line and headers: a bearer token and a
// path at its limit fit many times over.
const maxHeaderBytes = 64 << 10

// Client-side limits on requests to the API server.
const (
	kubeQPS   = 50
	kubeBurst = 100
)

var errNoKubeconfig = errors.New("no Kubernetes API server configured for REGISTRY_STORE=kube: " +
	"run inside a pod (in-cluster config), or set KUBECONFIG (or REGISTRY_KUBECONFIG) to a kubeconfig file, " +
	"or use REGISTRY_STORE=memory (optionally with REGISTRY_SEED=<file>) to run without a cluster")
