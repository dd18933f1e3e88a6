package store

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/client-go/util/retry"

	"github.com/acme/registry-api/internal/model"
)

// KeepSeedAlive stands in for the instances of a demo seed: every interval it
// rewrites the run_date of every registry entry in s, as running instances
// would. It is for the memory store in local runs only.
func KeepSeedAlive(ctx context.Context, s Store, interval time.Duration, zone *time.Location, log zerolog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := refreshAll(ctx, s, zone); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("demo keepalive")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// RefreshSeed rewrites the run_date of every registry entry in s to now,
// once: what KeepSeedAlive does at every interval.
func RefreshSeed(ctx context.Context, s Store, zone *time.Location) error {
	if err := refreshAll(ctx, s, zone); err != nil {
		return fmt.Errorf("refresh the seed: %w", err)
	}
	return nil
}

func refreshAll(ctx context.Context, s Store, zone *time.Location) error {
	cms, err := s.List(ctx, "")
	if err != nil {
		return err
	}
	for _, cm := range cms.Items {
		if _, ok := model.EnvFromConfigMapName(cm.Name); !ok {
			continue
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := s.Get(ctx, cm.Namespace, cm.Name)
			if err != nil {
				return err
			}
			now := time.Now()
			for key, raw := range cur.Data {
				if fresh, err := model.RefreshRunDate([]byte(raw), now, zone); err == nil {
					cur.Data[key] = string(fresh)
				}
			}
			_, err = s.Update(ctx, cur)
			return err
		})
		if err != nil {
			return fmt.Errorf("refresh %s/%s: %w", cm.Namespace, cm.Name, err)
		}
	}
	return nil
}
