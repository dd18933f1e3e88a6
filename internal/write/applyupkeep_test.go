package write

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/acme/registry-api/internal/model"
)

// podEntry is a library entry registered through the API by a pod-bound
// token, kept alive by registry-api unless keepalive says client.
func podEntry(t testing.TB, env, app string, lease int64, runDate time.Time, podUID, keepalive string) string {
	t.Helper()
	f, err := model.DecodeFields([]byte(libraryEntry(t, env, app, lease, runDate)))
	if err != nil {
		t.Fatal(err)
	}
	rb := model.RegisteredBy{Username: "system:serviceaccount:firefly:app", UID: "sa-uid", Namespace: "firefly",
		Pod: &model.PodRef{Name: app + "-pod", UID: podUID}}
	if err := f.SetJSON(model.MemberRegisteredBy, rb); err != nil {
		t.Fatal(err)
	}
	if err := f.SetJSON(model.MemberKeepalive, keepalive); err != nil {
		t.Fatal(err)
	}
	return string(f.Bytes())
}

func TestUpkeepAppliesOnlyWhatStillHolds(t *testing.T) {
	now := t0.Add(time.Hour)
	old := t0
	fresh := now.Add(-2 * time.Second)
	entries := map[string]string{
		"kept.1":      podEntry(t, "prod", "kept", 1, fresh, "uid-1", model.KeepalivePod),
		"replaced.2":  podEntry(t, "prod", "replaced", 2, fresh, "uid-new", model.KeepalivePod),
		"client.3":    podEntry(t, "prod", "client", 3, fresh, "uid-3", model.KeepaliveClient),
		"gone.4":      podEntry(t, "prod", "gone", 4, fresh, "uid-4", model.KeepalivePod),
		"library.5":   libraryEntry(t, "prod", "library", 5, old),
		"alive.6":     libraryEntry(t, "prod", "alive", 6, fresh),
		"corrupt.7":   `{"run_date":`,
		"untouched.8": libraryEntry(t, "prod", "untouched", 8, old),
	}
	mem := newMemory(t, configMap("firefly", "prod", entries))
	cs := &countingStore{Store: mem}
	var written atomic.Int64
	w := newWriter(t, Options{Store: cs, Now: fixedClock(now), OnWritten: func(*corev1.ConfigMap) { written.Add(1) }})

	staleBefore := now.Add(-15 * time.Minute)
	actions := []UpkeepAction{
		{Kind: KeepAlive, Key: "kept.1", PodUID: "uid-1"},
		{Kind: KeepAlive, Key: "replaced.2", PodUID: "uid-old"},     // another pod took the entry over
		{Kind: KeepAlive, Key: "client.3", PodUID: "uid-3"},         // opted out of pod keepalive
		{Kind: RemovePodGone, Key: "gone.4", PodUID: "uid-4"},       // its pod is gone
		{Kind: RemovePodGone, Key: "replaced.2", PodUID: "uid-old"}, // not the pod it is bound to now
		{Kind: RemoveStale, Key: "library.5", StaleBefore: staleBefore},
		{Kind: RemoveStale, Key: "alive.6", StaleBefore: staleBefore},
		{Kind: RemoveStale, Key: "corrupt.7", StaleBefore: staleBefore},
		{Kind: RemoveStale, Key: "missing.9", StaleBefore: staleBefore},
		{Kind: KeepAlive, Key: "library.5", PodUID: "uid-1"}, // removed just before; nothing to refresh
	}
	applied, err := w.ApplyUpkeep(t.Context(), "firefly", "prod", actions)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range applied {
		got = append(got, a.Kind.String()+":"+a.Key)
	}
	if want := "keepalive:kept.1 pod_gone:gone.4 stale:library.5"; strings.Join(got, " ") != want {
		t.Errorf("applied %q, want %q", strings.Join(got, " "), want)
	}
	for _, a := range applied {
		if a.Key == "library.5" && (a.AppID != "library" || a.LeaseID != 5 || !a.RunDate.Equal(old)) {
			t.Errorf("outcome of library.5 = %+v", a)
		}
	}
	if n := cs.updates.Load(); n != 1 {
		t.Errorf("%d updates, want all actions in one", n)
	}
	if written.Load() != 1 {
		t.Errorf("OnWritten called %d times, want 1", written.Load())
	}

	data := getData(t, mem, "firefly", "prod")
	wantKept := strings.Replace(entries["kept.1"], model.FormatRunDate(fresh, nil), model.FormatRunDate(now, nil), 1)
	if data["kept.1"] != wantKept {
		t.Errorf("kept.1 =\n %s\nwant only its run_date refreshed:\n %s", data["kept.1"], wantKept)
	}
	for _, k := range []string{"replaced.2", "client.3", "alive.6", "corrupt.7", "untouched.8"} {
		if data[k] != entries[k] {
			t.Errorf("%s changed: %s", k, data[k])
		}
	}
	for _, k := range []string{"gone.4", "library.5"} {
		if _, ok := data[k]; ok {
			t.Errorf("%s is still there", k)
		}
	}
}

func TestUpkeepNothingToDo(t *testing.T) {
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{"a.1": libraryEntry(t, "prod", "a", 1, t0)}))
	cs := &countingStore{Store: mem}
	w := newWriter(t, Options{Store: cs, Now: fixedClock(t0)})
	// The entry is younger than the cutoff: no write at all.
	applied, err := w.ApplyUpkeep(t.Context(), "firefly", "prod", []UpkeepAction{{Kind: RemoveStale, Key: "a.1", StaleBefore: t0.Add(-time.Minute)}})
	if err != nil || len(applied) != 0 {
		t.Fatalf("Upkeep = %v, %v", applied, err)
	}
	// A ConfigMap that does not exist has nothing to keep up.
	applied, err = w.ApplyUpkeep(t.Context(), "firefly", "qa", []UpkeepAction{{Kind: RemoveStale, Key: "a.1", StaleBefore: t0}})
	if err != nil || len(applied) != 0 {
		t.Fatalf("Upkeep of a missing ConfigMap = %v, %v", applied, err)
	}
	if applied, err := w.ApplyUpkeep(t.Context(), "firefly", "prod", nil); err != nil || applied != nil {
		t.Fatalf("Upkeep without actions = %v, %v", applied, err)
	}
	if n := cs.updates.Load() + cs.creates.Load() + cs.failedUpdates.Load(); n != 0 {
		t.Errorf("%d writes, want none", n)
	}
}

// racingStore lets another writer change the ConfigMap between upkeep's Get
// and its Update, once, as a heartbeat of another replica would.
type racingStore struct {
	*countingStore
	race func()
	done atomic.Bool
}

func (s *racingStore) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	if s.done.CompareAndSwap(false, true) {
		s.race()
	}
	return s.countingStore.Update(ctx, cm)
}

// A stale entry that is heartbeated while the removal is on its way survives:
// the conflict makes upkeep read again and re-check.
func TestUpkeepRechecksStalenessAfterConflict(t *testing.T) {
	now := t0.Add(time.Hour)
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{
		"a.1": libraryEntry(t, "prod", "a", 1, t0),
		"b.2": libraryEntry(t, "prod", "b", 2, t0),
	}))
	rs := &racingStore{countingStore: &countingStore{Store: mem}}
	rs.race = func() {
		cm, err := mem.Get(context.Background(), "firefly", model.ConfigMapName("prod"))
		if err != nil {
			t.Error(err)
			return
		}
		cm.Data["a.1"] = libraryEntry(t, "prod", "a", 1, now)
		if _, err := mem.Update(context.Background(), cm); err != nil {
			t.Error(err)
		}
	}
	w := newWriter(t, Options{Store: rs, Now: fixedClock(now)})
	staleBefore := now.Add(-15 * time.Minute)
	applied, err := w.ApplyUpkeep(t.Context(), "firefly", "prod", []UpkeepAction{
		{Kind: RemoveStale, Key: "a.1", StaleBefore: staleBefore},
		{Kind: RemoveStale, Key: "b.2", StaleBefore: staleBefore},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Key != "b.2" {
		t.Errorf("applied %+v, want only b.2", applied)
	}
	if rs.failedUpdates.Load() != 1 || rs.updates.Load() != 1 {
		t.Errorf("updates: %d failed, %d succeeded; want one conflict then one write", rs.failedUpdates.Load(), rs.updates.Load())
	}
	data := getData(t, mem, "firefly", "prod")
	if _, ok := data["a.1"]; !ok {
		t.Error("the entry heartbeated meanwhile was removed")
	}
	if _, ok := data["b.2"]; ok {
		t.Error("the stale entry survived")
	}
}

func TestUpkeepCanceledAndClosed(t *testing.T) {
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{"a.1": libraryEntry(t, "prod", "a", 1, t0)}))
	cs := &countingStore{Store: mem}
	w := newWriter(t, Options{Store: cs, Now: fixedClock(t0.Add(time.Hour))})
	act := []UpkeepAction{{Kind: RemoveStale, Key: "a.1", StaleBefore: t0.Add(time.Minute)}}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.ApplyUpkeep(ctx, "firefly", "prod", act); !errors.Is(err, context.Canceled) {
		t.Errorf("Upkeep with a canceled context: %v", err)
	}
	if cs.gets.Load() != 0 {
		t.Errorf("a canceled upkeep read the store %d times", cs.gets.Load())
	}

	w.Close()
	_, err := w.ApplyUpkeep(t.Context(), "firefly", "prod", act)
	wantCode(t, err, model.CodeStoreUnavailable)
	if _, ok := getData(t, mem, "firefly", "prod")["a.1"]; !ok {
		t.Error("a closed writer removed an entry")
	}
}

// An entry whose run_date is in the future is removed only while its value is
// the one the leader judged: a heartbeat since, even one that did not move
// its run_date past anything, keeps it.
func TestUpkeepRemovesAFutureEntryOnlyWhileUnchanged(t *testing.T) {
	now := t0
	future := now.Add(8 * time.Hour)
	judged := libraryEntry(t, "prod", "a", 1, future)
	entries := map[string]string{
		"a.1": judged,
		"b.2": libraryEntry(t, "prod", "b", 2, future.Add(time.Second)),
	}
	mem := newMemory(t, configMap("firefly", "prod", entries))
	w := newWriter(t, Options{Store: &countingStore{Store: mem}, Now: fixedClock(now)})
	staleBefore := now.Add(-15 * time.Minute)
	applied, err := w.ApplyUpkeep(t.Context(), "firefly", "prod", []UpkeepAction{
		{Kind: RemoveStale, Key: "a.1", StaleBefore: staleBefore, Value: judged},
		// b.2 was judged on an older value: it heartbeated since.
		{Kind: RemoveStale, Key: "b.2", StaleBefore: staleBefore, Value: libraryEntry(t, "prod", "b", 2, future)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Key != "a.1" || applied[0].Value != judged {
		t.Errorf("applied %+v, want only a.1", applied)
	}
	data := getData(t, mem, "firefly", "prod")
	if _, ok := data["a.1"]; ok {
		t.Error("the unchanged future-dated entry survived")
	}
	if data["b.2"] != entries["b.2"] {
		t.Error("the future-dated entry whose value changed was removed")
	}
}

// The leader refreshes a version registration's run_date, and nothing else,
// in the one write; an entry that is no version registration (any more) is
// left alone.
func TestUpkeepKeepsVersionsAlive(t *testing.T) {
	now := t0.Add(time.Hour)
	f, err := model.DecodeFields([]byte(libraryEntry(t, "prod", "catalog", 7, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetJSON(model.MemberKeepalive, model.KeepaliveService); err != nil {
		t.Fatal(err)
	}
	version := string(f.Bytes())
	cs := &countingStore{Store: newMemory(t, configMap("firefly", "prod", map[string]string{
		"catalog.7": version,
		"library.8": libraryEntry(t, "prod", "library", 8, t0),
	}))}
	w := newWriter(t, Options{Store: cs, Now: fixedClock(now)})
	applied, err := w.ApplyUpkeep(context.Background(), "firefly", "prod", []UpkeepAction{
		{Kind: KeepVersionAlive, Key: "catalog.7"},
		{Kind: KeepVersionAlive, Key: "library.8"},
		{Kind: KeepVersionAlive, Key: "absent.9"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Key != "catalog.7" || cs.updates.Load() != 1 {
		t.Fatalf("applied %+v in %d updates, want catalog.7 alone in 1", applied, cs.updates.Load())
	}
	data := getData(t, cs, "firefly", "prod")
	want, _ := model.RefreshEntry(version, model.FormatRunDate(now, time.UTC))
	if data["catalog.7"] != want {
		t.Errorf("catalog.7 = %s, want only its run_date refreshed: %s", data["catalog.7"], want)
	}
	if data["library.8"] != libraryEntry(t, "prod", "library", 8, t0) {
		t.Errorf("library.8 was changed: %s", data["library.8"])
	}
}
