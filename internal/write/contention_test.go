package write

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
)

func TestContention(t *testing.T) {
	for _, window := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("window=%s", window), func(t *testing.T) {
			// On the memory store the scenario runs in fake time: the
			// windows, backoffs and the library's ticks cost no wall time.
			// Against an API server (integration tests) it cannot.
			synctest.Test(t, func(t *testing.T) {
				runContentionScenario(t, newMemory(t), "firefly", window, bubbleClock())
			})
		})
	}
}

// runContentionScenario has 50 clients register, heartbeat and (half of them)
// deregister in one env through one Writer, while a writer in the Go
// library's style rewrites the same ConfigMap with entries of its own. The
// ConfigMap must end up holding exactly the kept registrations and the
// library's last writes: nothing lost, nothing resurrected. st may be any
// store; with an API server, namespace ns must exist. Every run uses an env
// of its own, so runs against a shared server do not see each other. now is
// the writer's clock.
func runContentionScenario(t *testing.T, st store.Store, ns string, window time.Duration, now func() time.Time) {
	t.Helper()
	const (
		clients    = 50
		heartbeats = 3
		libKeys    = 10
		libRounds  = 30 // at least; the library writes until the clients are done
	)
	env := fmt.Sprintf("contention-w%d-%d", window.Milliseconds(), time.Now().UnixNano()%1_000_000_000)
	name := model.ConfigMapName(env)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	w, err := New(Options{Store: st, BatchWindow: window, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// A client retries a 409 as the HTTP API tells it to; a conflict means
	// the write did not happen.
	withRetry := func(what string, f func() error) bool {
		for range 20 {
			err := f()
			if err == nil {
				return true
			}
			if model.ErrorCode(err) != model.CodeConflict {
				t.Errorf("%s: %v", what, err)
				return false
			}
		}
		t.Errorf("%s: still conflicting after 20 tries", what)
		return false
	}

	type instance struct {
		reg   Registration
		key   string
		kept  bool
		acked bool
	}
	instances := make([]instance, clients)

	libDone := make(chan map[string]string)
	clientsDone := make(chan struct{})
	go func() { libDone <- libraryWriter(ctx, t, st, ns, env, libKeys, libRounds, clientsDone) }()

	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			app := fmt.Sprintf("app-%d", i%5)
			r := Registration{
				Namespace: ns, Env: env, AppID: app, Version: "v1",
				Network:    model.Network{SN: "contention", Internal: app + ":8080"},
				Methods:    []string{fmt.Sprintf("/acme.c%d.v1.Service/Call", i%5)},
				Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
				ProtoCount: 1,
			}
			if i%2 == 1 {
				r.LeaseID = int64(1_000_000 + i)
			}
			in := &instances[i]
			if !withRetry("register", func() error {
				res, err := w.Register(ctx, r)
				if err == nil {
					in.key, r.LeaseID = res.Key, res.LeaseID
				}
				return err
			}) {
				return
			}
			in.reg, in.kept, in.acked = r, true, true
			for h := range heartbeats {
				withRetry(fmt.Sprintf("heartbeat %d of %s", h, in.key), func() error {
					_, err := w.Heartbeat(ctx, ns, env, app, r.LeaseID)
					return err
				})
			}
			if (i/2)%2 == 0 {
				if withRetry("deregister "+in.key, func() error { return w.Deregister(ctx, ns, env, app, r.LeaseID) }) {
					in.kept = false
				}
			}
		})
	}
	wg.Wait()
	close(clientsDone)
	libWritten := <-libDone

	cm, err := st.Get(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	want := len(libWritten)
	leases := make(map[string]bool)
	for _, in := range instances {
		if !in.acked {
			continue
		}
		if leases[in.key] {
			t.Errorf("key %s handed to two clients", in.key)
		}
		leases[in.key] = true
		raw, present := cm.Data[in.key]
		switch {
		case !in.kept && present:
			t.Errorf("deregistered %s is back: %s", in.key, raw)
		case in.kept && !present:
			t.Errorf("registration %s lost", in.key)
		case in.kept:
			want++
			node, _, err := model.ParseEntry(ns, env, in.key, []byte(raw), model.ParseOptions{})
			if err != nil || node.AppID != in.reg.AppID || node.LeaseID != in.reg.LeaseID || node.Methods[0] != in.reg.Methods[0] {
				t.Errorf("entry %s = %s (%v), want the registration %+v", in.key, raw, err, in.reg)
			}
		}
	}
	for key, v := range libWritten {
		if cm.Data[key] != v {
			t.Errorf("library entry %s = %q, want its last write %q", key, cm.Data[key], v)
		}
	}
	if len(cm.Data) != want {
		t.Errorf("%d entries, want %d (%d kept registrations, %d library entries)", len(cm.Data), want, want-len(libWritten), len(libWritten))
	}
	t.Logf("window %s: %d entries, resourceVersion %s", window, len(cm.Data), cm.ResourceVersion)
}

// libraryWriter writes like the Go library: Get, set its own entry, Update
// with the resourceVersion read, five tries on conflict. It keeps writing
// until done is closed and it has made at least rounds attempts, and returns
// the last value it wrote under each key.
func libraryWriter(ctx context.Context, t *testing.T, st store.Store, ns, env string, keys, rounds int, done <-chan struct{}) map[string]string {
	written := make(map[string]string)
	name := model.ConfigMapName(env)
	// Instances rewrite their entry on a period; this one just does so often.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for round := 0; ; round++ {
		if round >= rounds {
			select {
			case <-done:
				return written
			default:
			}
		}
		select {
		case <-ctx.Done():
			t.Errorf("library writer: %v", ctx.Err())
			return written
		case <-tick.C:
		}
		lease := int64(round%keys + 1)
		key := model.CanonicalKey("lib-app", lease)
		// proto_count makes every round's value distinct, so a lost write shows.
		raw, err := json.Marshal(model.ServiceNode{
			ProtoCount: round,
			LeaseID:    lease,
			RunDate:    model.FormatRunDate(time.Now(), time.UTC),
			Methods:    map[string]bool{"/acme.lib.v1.LibService/Do": true},
			Network:    model.Network{SN: "firefly-main-network", Internal: "lib-app:8080"},
			Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
			Meta:       model.Meta{Env: env, AppID: "lib-app", Version: "v1"},
		})
		if err != nil {
			t.Errorf("library writer: %v", err)
			return written
		}
		value := string(raw)
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cm, err := st.Get(ctx, ns, name)
			if apierrors.IsNotFound(err) {
				cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{key: value}}
				_, err = st.Create(ctx, cm)
				if apierrors.IsAlreadyExists(err) {
					return apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, name, err)
				}
				return err
			}
			if err != nil {
				return err
			}
			if cm.Data == nil {
				cm.Data = make(map[string]string)
			}
			cm.Data[key] = value
			_, err = st.Update(ctx, cm)
			return err
		})
		switch {
		case err == nil:
			written[key] = value
		case apierrors.IsConflict(err):
			// The library gives up after five conflicts; its next round retries.
		default:
			t.Errorf("library writer: %v", err)
			return written
		}
	}
}
