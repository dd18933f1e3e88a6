package store

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/acme/registry-api/internal/model"
)

// SeedEntries names the entries of a seed, per registry ConfigMap: the
// instances the seed refresh stands in for. Entries registered later are
// not among them, so they heartbeat or die like any other.
type SeedEntries map[types.NamespacedName][]string

// SeedEntriesOf lists the entries of the registry ConfigMaps in seed.
func SeedEntriesOf(seed []corev1.ConfigMap) SeedEntries {
	entries := SeedEntries{}
	for _, cm := range seed {
		if _, ok := model.EnvFromConfigMapName(cm.Name); !ok || len(cm.Data) == 0 {
			continue
		}
		entries[types.NamespacedName{Namespace: cm.Namespace, Name: cm.Name}] = slices.Sorted(maps.Keys(cm.Data))
	}
	return entries
}

// RefreshSeedEvery stands in for the instances of a demo seed: every interval it
// rewrites the run_date of the seed's entries in s, as running instances
// would. It is for the memory store in local runs only.
func RefreshSeedEvery(ctx context.Context, s Store, seed SeedEntries, interval time.Duration, zone *time.Location, log zerolog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := refreshSeed(ctx, s, seed, zone); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("seed refresh")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// RefreshSeed rewrites the run_date of the seed's entries in s to now,
// once: what RefreshSeedEvery does at every interval.
func RefreshSeed(ctx context.Context, s Store, seed SeedEntries, zone *time.Location) error {
	if err := refreshSeed(ctx, s, seed, zone); err != nil {
		return fmt.Errorf("refresh the seed: %w", err)
	}
	return nil
}

func refreshSeed(ctx context.Context, s Store, seed SeedEntries, zone *time.Location) error {
	for _, name := range slices.SortedFunc(maps.Keys(seed), func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	}) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := s.Get(ctx, name.Namespace, name.Name)
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			// As a heartbeat writes it: the run_date spliced in place, the
			// rest of the entry's bytes left alone.
			runDate := model.FormatRunDate(time.Now(), zone)
			refreshed := 0
			for _, key := range seed[name] {
				raw, ok := cur.Data[key]
				if !ok {
					// Deregistered by hand: it stays gone.
					continue
				}
				if fresh, ok := model.RefreshEntry(raw, runDate); ok {
					cur.Data[key] = fresh
					refreshed++
				}
			}
			if refreshed == 0 {
				return nil
			}
			_, err = s.Update(ctx, cur)
			return err
		})
		if err != nil {
			return fmt.Errorf("refresh %s: %w", name, err)
		}
	}
	return nil
}
