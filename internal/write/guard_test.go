package write

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/acme/registry-api/internal/model"
)

var errRefused = model.Errorf(model.CodeForbidden, "refused")

// recordingGuard remembers what it was shown and refuses when refuse says so.
type recordingGuard struct {
	mu     sync.Mutex
	seen   []string // "<nil>" for no entry
	refuse func(existing []byte) bool
}

func (g *recordingGuard) guard(existing []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if existing == nil {
		g.seen = append(g.seen, "<nil>")
	} else {
		g.seen = append(g.seen, string(existing))
	}
	if g.refuse != nil && g.refuse(existing) {
		return errRefused
	}
	return nil
}

func (g *recordingGuard) shown() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.seen...)
}

func TestGuardsSeeTheEntryTheyProtect(t *testing.T) {
	lib := libraryEntry(t, "prod", "user-service", 7, t0)
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{"user-service.7": lib}))
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	ctx := t.Context()

	// A new registration: no entry.
	g := &recordingGuard{}
	if _, err := w.Register(ctx, userService(8), g.guard); err != nil {
		t.Fatal(err)
	}
	if got := g.shown(); len(got) != 1 || got[0] != "<nil>" {
		t.Errorf("guard of a new registration saw %q", got)
	}
	// Over an existing entry, heartbeat, deregister: the entry.
	for name, write := range map[string]func(Guard) error{
		"register":   func(gd Guard) error { _, err := w.Register(ctx, userService(7), gd); return err },
		"heartbeat":  func(gd Guard) error { _, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 7, gd); return err },
		"deregister": func(gd Guard) error { return w.Deregister(ctx, "firefly", "prod", "user-service", 7, gd) },
	} {
		g := &recordingGuard{refuse: func([]byte) bool { return true }}
		err := write(g.guard)
		if !errors.Is(err, errRefused) {
			t.Errorf("%s: error %v, want the guard's", name, err)
		}
		if got := g.shown(); len(got) != 1 || got[0] != lib {
			t.Errorf("%s: guard saw %q, want the library entry", name, got)
		}
	}
	if data := getData(t, mem, "firefly", "prod"); data["user-service.7"] != lib {
		t.Errorf("refused writes changed the entry: %s", data["user-service.7"])
	}
	// Nothing to heartbeat or deregister: the guard still judges (no entry)
	// before the answer says so.
	g = &recordingGuard{refuse: func([]byte) bool { return true }}
	if _, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 99, g.guard); !errors.Is(err, errRefused) {
		t.Errorf("heartbeat of nothing, refused: %v", err)
	}
	if err := w.Deregister(ctx, "firefly", "prod", "user-service", 99, g.guard); !errors.Is(err, errRefused) {
		t.Errorf("deregistration of nothing, refused: %v", err)
	}
	g = &recordingGuard{}
	_, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 99, g.guard)
	wantCode(t, err, model.CodeLeaseNotFound)
	if got := g.shown(); len(got) != 1 || got[0] != "<nil>" {
		t.Errorf("guard of a heartbeat of nothing saw %q", got)
	}
	// Nil guards are no guards.
	if _, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 7, nil); err != nil {
		t.Errorf("heartbeat with a nil guard: %v", err)
	}
}

// A refused operation is answered alone; the others of its write go ahead in
// the same Update.
func TestRefusedOperationLeavesTheBatchAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t, configMap("firefly", "prod", map[string]string{
			"user-service.1": libraryEntry(t, "prod", "user-service", 1, t0),
			"user-service.2": libraryEntry(t, "prod", "user-service", 2, t0),
		}))
		cs := &countingStore{Store: mem}
		reg := prometheus.NewRegistry()
		now := t0.Add(time.Minute)
		w := newWriter(t, Options{Store: cs, Now: fixedClock(now), BatchWindow: 50 * time.Millisecond, Registerer: reg})
		refuse := func([]byte) error { return errRefused }
		var wg sync.WaitGroup
		errs := make([]error, 3)
		wg.Go(func() { _, errs[0] = w.Heartbeat(t.Context(), "firefly", "prod", "user-service", 1, refuse) })
		wg.Go(func() { _, errs[1] = w.Heartbeat(t.Context(), "firefly", "prod", "user-service", 2) })
		wg.Go(func() { _, errs[2] = w.Register(t.Context(), userService(3), refuse) })
		synctest.Wait()
		if p, gets := pending(w), cs.gets.Load(); p != 3 || gets != 0 {
			t.Errorf("before the window: %d pending, %d gets; want 3 pending and the store untouched", p, gets)
		}
		wg.Wait()
		if !errors.Is(errs[0], errRefused) || errs[1] != nil || !errors.Is(errs[2], errRefused) {
			t.Fatalf("errors %v", errs)
		}
		if n := cs.updates.Load(); n != 1 {
			t.Errorf("%d updates, want 1", n)
		}
		data := getData(t, mem, "firefly", "prod")
		if data["user-service.1"] != libraryEntry(t, "prod", "user-service", 1, t0) {
			t.Error("the refused heartbeat was written")
		}
		if data["user-service.2"] != libraryEntry(t, "prod", "user-service", 2, now) {
			t.Error("the allowed heartbeat was not written")
		}
		if _, ok := data["user-service.3"]; ok {
			t.Error("the refused registration was written")
		}
		if v := testutil.ToFloat64(w.m.ops.WithLabelValues("heartbeat", "forbidden")); v != 1 {
			t.Errorf("forbidden heartbeats counted %v", v)
		}
	})
}

// Guards judge the fresh copy: an entry that changed hands between a
// conflicting attempt and its retry is judged again.
func TestGuardsRunOnEveryAttempt(t *testing.T) {
	mine := podEntry(t, "prod", "user-service", 1, t0, "uid-1", model.KeepalivePod)
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{"user-service.1": mine}))
	rs := &racingStore{countingStore: &countingStore{Store: mem}}
	rs.race = func() {
		cm, err := mem.Get(context.Background(), "firefly", model.ConfigMapName("prod"))
		if err != nil {
			t.Error(err)
			return
		}
		cm.Data["user-service.1"] = libraryEntry(t, "prod", "user-service", 1, t0)
		if _, err := mem.Update(context.Background(), cm); err != nil {
			t.Error(err)
		}
	}
	w := newWriter(t, Options{Store: rs, Now: fixedClock(t0.Add(time.Second))})
	// Allows only entries that record who registered them.
	g := &recordingGuard{refuse: func(existing []byte) bool {
		o, err := model.ReadOwnership(existing)
		return err != nil || o.RegisteredBy == nil
	}}
	_, err := w.Heartbeat(t.Context(), "firefly", "prod", "user-service", 1, g.guard)
	if !errors.Is(err, errRefused) {
		t.Fatalf("heartbeat after the entry changed hands: %v", err)
	}
	if got := g.shown(); len(got) != 2 || got[0] != mine {
		t.Errorf("guard saw %d entries, want the original then the fresh one", len(got))
	}
}
