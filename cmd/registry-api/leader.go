package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"k8s.io/client-go/kubernetes"

	"github.com/acme/registry-api/internal/election"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/routesync"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/upkeep"
	"github.com/acme/registry-api/internal/write"
)

// startLeader starts the leader's work: keeping pod-bound entries alive,
// GC and, when on, route sync. Against an API server it runs on the elected leader only; on the
// memory store, a single process, it runs here, and only GC has anything to
// do. It stops when ctx ends; the returned function stops it and waits.
func startLeader(ctx context.Context, cfg settings, st store.Store, client kubernetes.Interface, snaps model.SnapshotSource,
	writer *write.Writer, routeSync *routesync.Syncer, log zerolog.Logger, reg prometheus.Registerer) (func(), error) {
	opts := upkeep.Options{
		ConfigMaps: st,
		Writer:     writer,
		Namespaces: cfg.namespaces,
		Interval:   cfg.TTL / 2,
		GCAfter:    cfg.GCAfter,
		// Which version registrations have ready endpoints, as the index
		// says: refreshed while they have, never removed then.
		Snapshots:       snaps,
		RefreshVersions: cfg.VersionRefresh,
		Zone:            cfg.zone,
		// The leader judges a future run_date as the poller does.
		MaxClockSkew: cfg.MaxClockSkew,
		Log:          log,
		Registerer:   reg,
	}
	if client != nil {
		opts.Pods = upkeep.KubePods{Client: client}
	}
	keeper, err := upkeep.NewKeeper(opts)
	if err != nil {
		return nil, err
	}
	if client == nil && cfg.GCAfter == 0 {
		return func() {}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	stop := func() {
		cancel()
		<-done
	}
	if client == nil {
		go func() {
			defer close(done)
			keeper.Run(ctx)
		}()
		return stop, nil
	}

	leaderLeaseNamespace, ok := cfg.leaderLeaseNamespace()
	if !ok {
		cancel()
		return nil, fmt.Errorf("REGISTRY_LEASE_NAMESPACE: watching all namespaces, the leader Lease needs a namespace: set REGISTRY_LEASE_NAMESPACE or POD_NAMESPACE")
	}
	identity, err := leaderIdentity(cfg.proc.podName)
	if err != nil {
		cancel()
		return nil, err
	}
	elector, err := election.New(election.Options{
		Client:        client,
		Namespace:     leaderLeaseNamespace,
		Name:          cfg.LeaderLeaseName,
		Identity:      identity,
		LeaseDuration: cfg.LeaderLeaseDuration,
		RenewDeadline: cfg.LeaderLeaseRenewDeadline,
		RetryPeriod:   cfg.LeaderLeaseRetryPeriod,
		Log:           log,
		Registerer:    reg,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("REGISTRY_LEASE_*: %w", err)
	}
	go func() {
		defer close(done)
		elector.Run(ctx, func(ctx context.Context) {
			var work sync.WaitGroup
			work.Go(func() { keeper.Run(ctx) })
			if routeSync != nil {
				work.Go(func() { routeSync.Run(ctx) })
			}
			work.Wait()
		})
	}()
	return stop, nil
}

// leaderIdentity names this replica in the Lease: its pod's name, else the
// host's, made unique so that two processes on one host (hostNetwork, tests)
// never both believe they hold the lease.
func leaderIdentity(podName string) (string, error) {
	name := podName
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("leader identity: %w", err)
		}
		name = h
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("leader identity: %w", err)
	}
	return name + "_" + hex.EncodeToString(b), nil
}
