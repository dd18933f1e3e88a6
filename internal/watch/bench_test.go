package watch

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"

	"github.com/acme/registry-api/internal/model"
)

// staticLister holds prepared ConfigMaps, served without copying (reader),
// so that the benchmarks measure the poller, not a fake API server.
type staticLister struct{ items []corev1.ConfigMap }

func (s *staticLister) reader() Reader {
	return served(func(context.Context, string) (*corev1.ConfigMapList, error) {
		return &corev1.ConfigMapList{Items: s.items}, nil
	})
}

const (
	benchEnvs            = 50
	benchAppsPerEnv      = 20
	benchInstancesPerApp = 10 // 50 × 20 × 10 = 10,000 instances
	benchMethodsPerApp   = 20
)

// benchRegistry builds 10,000 instances × 20 methods over 50 envs.
func benchRegistry() *staticLister {
	l := &staticLister{}
	for e := range benchEnvs {
		env := fmt.Sprintf("env-%02d", e)
		data := make(map[string]string, benchAppsPerEnv*benchInstancesPerApp)
		for a := range benchAppsPerEnv {
			app := fmt.Sprintf("app-%02d", a)
			methods := make([]string, benchMethodsPerApp)
			for m := range methods {
				// "app07", not "07": a part of a method name starts with a letter.
				methods[m] = fmt.Sprintf("/acme.app%s.v1.Service/Method%02d", app[4:], m)
			}
			for i := range benchInstancesPerApp {
				lease := int64(1795695862709570046 + e*100000 + a*1000 + i)
				data[model.CanonicalKey(app, lease)] = entry(env, app, lease, baseTime.Add(-time.Duration(i)*time.Second), methods...)
			}
		}
		l.items = append(l.items, *configMap("firefly", model.ConfigMapName(env), strconv.Itoa(e+1), data))
	}
	return l
}

func newBenchPoller(b *testing.B, l *staticLister) *Poller {
	b.Helper()
	p, err := New(l.reader(), Options{Namespaces: []string{"firefly"}, Log: zerolog.Nop(), Now: func() time.Time { return baseTime }})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkPollFullRebuild is a cold start: every entry parsed, every env indexed.
func BenchmarkPollFullRebuild(b *testing.B) {
	l := benchRegistry()
	b.ReportAllocs()
	for b.Loop() {
		p := newBenchPoller(b, l)
		p.Poll(context.Background())
		if len(p.Snapshot().Envs) != benchEnvs {
			b.Fatal("envs missing")
		}
		if n := len(p.Snapshot().Envs["env-00"].MethodNames); n != benchAppsPerEnv*benchMethodsPerApp {
			b.Fatalf("%d methods indexed in env-00, want %d", n, benchAppsPerEnv*benchMethodsPerApp)
		}
	}
}

// BenchmarkReindexAllEnvs re-indexes every env from already parsed entries.
func BenchmarkReindexAllEnvs(b *testing.B) {
	l := benchRegistry()
	p := newBenchPoller(b, l)
	p.Poll(context.Background())
	all := make(map[string]struct{}, benchEnvs)
	for env := range p.envs {
		all[env] = struct{}{}
	}
	b.ReportAllocs()
	for b.Loop() {
		p.mu.Lock()
		p.rebuild(all)
		p.mu.Unlock()
	}
}

// BenchmarkPollOneHeartbeat is the steady state: one instance's heartbeat
// changed one ConfigMap since the last poll.
func BenchmarkPollOneHeartbeat(b *testing.B) {
	l := benchRegistry()
	p := newBenchPoller(b, l)
	p.Poll(context.Background())
	cm := &l.items[benchEnvs/2]
	env, _ := model.EnvFromConfigMapName(cm.Name)
	key := model.CanonicalKey("app-07", int64(1795695862709570046+(benchEnvs/2)*100000+7*1000+3))
	methods := make([]string, benchMethodsPerApp)
	for m := range methods {
		methods[m] = fmt.Sprintf("/acme.app07.v1.Service/Method%02d", m)
	}
	rv := 1000
	b.ReportAllocs()
	for b.Loop() {
		rv++
		cm.ResourceVersion = strconv.Itoa(rv)
		// One or two seconds past the poller's clock: a new value each
		// time, within the tolerated skew, so the run_date counts.
		cm.Data[key] = entry(env, "app-07", 1795695862709570046+(benchEnvs/2)*100000+7*1000+3, baseTime.Add(time.Duration(1+rv%2)*time.Second), methods...)
		p.Poll(context.Background())
	}
	b.StopTimer()
	if got := p.Snapshot().Envs[env].Apps["app-07"].Nodes[0].Key; got != key {
		b.Fatalf("freshest node = %s, want the one that heartbeat", got)
	}
	if n := len(p.Snapshot().Envs[env].Apps["app-07"].Nodes[0].Methods); n != benchMethodsPerApp {
		b.Fatalf("the node that heartbeat has %d methods, want %d", n, benchMethodsPerApp)
	}
}
