package model_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

func TestEffectiveHeartbeat(t *testing.T) {
	seen := fixtureRunDate
	tests := []struct {
		name      string
		runDate   time.Time
		observed  time.Time
		maxSkew   time.Duration
		want      time.Time
		wantAhead bool
	}{
		{"in the past", seen.Add(-time.Hour), seen, time.Minute, seen.Add(-time.Hour), false},
		{"now", seen, seen, time.Minute, seen, false},
		{"ahead within the tolerance", seen.Add(time.Minute), seen, time.Minute, seen.Add(time.Minute), false},
		{"just past the tolerance", seen.Add(time.Minute + time.Second), seen, time.Minute, seen, true},
		{"UTC+8 local time read as UTC", seen.Add(8 * time.Hour), seen, time.Minute, seen, true},
		{"zero tolerance is the default", seen.Add(59 * time.Second), seen, 0, seen.Add(59 * time.Second), false},
		{"zero tolerance is the default, past it", seen.Add(61 * time.Second), seen, 0, seen, true},
		{"a tolerance of its own", seen.Add(8 * time.Hour), seen, 9 * time.Hour, seen.Add(8 * time.Hour), false},
		{"unknown sighting", seen.Add(8 * time.Hour), time.Time{}, time.Minute, seen.Add(8 * time.Hour), false},
	}
	for _, tt := range tests {
		got, ahead := model.EffectiveHeartbeat(tt.runDate, tt.observed, tt.maxSkew)
		if !got.Equal(tt.want) || ahead != tt.wantAhead {
			t.Errorf("%s: EffectiveHeartbeat = %v, %v; want %v, %v", tt.name, got, ahead, tt.want, tt.wantAhead)
		}
	}
}

// libraryEntry is an entry of app as the Go library writes it, its run_date
// the wall clock at of a writer in zone.
func libraryEntry(t testing.TB, app string, lease int64, at time.Time, zone *time.Location) []byte {
	t.Helper()
	b, err := json.Marshal(model.ServiceNode{
		ProtoCount: 1,
		LeaseID:    lease,
		RunDate:    model.FormatRunDate(at, zone),
		Methods:    map[string]bool{mLogin: true},
		Network:    model.Network{SN: "net", Internal: app + ":8080"},
		Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
		Meta:       model.Meta{Env: "prod", AppID: app, Version: "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seenEntry parses raw as the poller does when it sees it at observed.
func seenEntry(t testing.TB, key string, raw []byte, observed time.Time) model.Entry {
	t.Helper()
	n, warnings, err := model.ParseEntry("firefly", "prod", key, raw, model.ParseOptions{ObservedAt: observed})
	if err != nil {
		t.Fatal(err)
	}
	return model.Entry{Namespace: "firefly", Key: key, Node: n, Warnings: warnings}
}

var utc8 = time.FixedZone("UTC+8", 8*3600)

func TestParseEntryRunDateInFuture(t *testing.T) {
	seen := fixtureRunDate
	const ttl = 10 * time.Second
	parse := func(t *testing.T, raw []byte, observed time.Time) (*model.Node, []string) {
		t.Helper()
		n, warnings, err := model.ParseEntry("firefly", "prod", "user-service.1795695862709570046", raw,
			model.ParseOptions{ObservedAt: observed, MaxClockSkew: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return n, warnings
	}

	t.Run("written in UTC+8, read as UTC", func(t *testing.T) {
		raw := libraryEntry(t, "user-service", 1795695862709570046, seen, utc8)
		if !strings.Contains(string(raw), `"run_date":"2026-11-26 20:24:22"`) {
			t.Fatalf("not the library's zone-less local time: %s", raw)
		}
		n, warnings := parse(t, raw, seen)
		if !n.RunDate.Equal(seen.Add(8 * time.Hour)) {
			t.Fatalf("RunDate = %v", n.RunDate)
		}
		if !slices.Contains(warnings, model.WarnRunDateInFuture) {
			t.Errorf("warnings = %v, want %s", warnings, model.WarnRunDateInFuture)
		}
		if !n.ObservedAt.Equal(seen) || !n.Heartbeat().Equal(seen) || n.RunDateAhead() != 8*time.Hour {
			t.Errorf("ObservedAt %v, Heartbeat %v, RunDateAhead %v", n.ObservedAt, n.Heartbeat(), n.RunDateAhead())
		}
		// Alive for one TTL from when it was seen, not for 8 hours.
		if !n.Alive(seen.Add(ttl), ttl) {
			t.Error("dead within one TTL of being seen")
		}
		if n.Alive(seen.Add(ttl+time.Nanosecond), ttl) {
			t.Error("alive past one TTL after being seen: the run_date in the future keeps it alive")
		}
	})
	t.Run("within the tolerance", func(t *testing.T) {
		raw := libraryEntry(t, "user-service", 1795695862709570046, seen.Add(30*time.Second), time.UTC)
		n, warnings := parse(t, raw, seen)
		if slices.Contains(warnings, model.WarnRunDateInFuture) || !n.ObservedAt.IsZero() || n.RunDateAhead() != 0 {
			t.Errorf("warnings %v, ObservedAt %v", warnings, n.ObservedAt)
		}
		// As today: alive until one TTL after its run_date.
		if !n.Alive(seen.Add(30*time.Second+ttl), ttl) || n.Alive(seen.Add(30*time.Second+ttl+time.Nanosecond), ttl) {
			t.Error("liveness does not follow run_date")
		}
	})
	t.Run("no sighting", func(t *testing.T) {
		raw := libraryEntry(t, "user-service", 1795695862709570046, seen, utc8)
		n, warnings := parse(t, raw, time.Time{})
		if len(warnings) != 0 || !n.Heartbeat().Equal(n.RunDate) {
			t.Errorf("warnings %v, Heartbeat %v", warnings, n.Heartbeat())
		}
	})
}

// Every reading of liveness in the index (counts, the alive prefix, the
// conflict winner, freshest-first order, duplicates) uses the effective
// heartbeat.
func TestBuildEnvRunDateInFuture(t *testing.T) {
	seen := t0
	es := []model.Entry{
		// b's writer is in UTC+8; seen at its write.
		seenEntry(t, "b.1", libraryEntry(t, "b", 1, seen, utc8), seen),
		// b.2 heartbeats honestly, 20 s later, within the tolerance ahead.
		seenEntry(t, "b.2", libraryEntry(t, "b", 2, seen.Add(20*time.Second), time.UTC), seen),
		// c's entry appears twice: the future copy is the older heartbeat.
		seenEntry(t, "c.3", libraryEntry(t, "c", 3, seen, utc8), seen),
		seenEntry(t, "c-copy", libraryEntry(t, "c", 3, seen.Add(5*time.Second), time.UTC), seen.Add(5*time.Second)),
	}
	idx := model.BuildEnv("prod", es)

	var future []string
	for _, w := range idx.Warnings {
		if w.Reason == model.WarnRunDateInFuture {
			future = append(future, w.Key)
			if !strings.Contains(w.Detail, "8h0m0s ahead") {
				t.Errorf("%s: detail %q does not say how far ahead", w.Key, w.Detail)
			}
		}
	}
	if !slices.Equal(future, []string{"b.1", "c.3"}) {
		t.Errorf("run_date_in_future warnings for %v", future)
	}
	if got := ids(idx.Apps["c"].Nodes); !slices.Equal(got, []string{"firefly/c-copy"}) {
		t.Errorf("duplicate kept %v, want the fresher heartbeat c-copy", got)
	}
	// Freshest first by the effective heartbeat: by run_date b.1 would lead.
	if got := ids(idx.Apps["b"].Nodes); !slices.Equal(got, []string{"firefly/b.2", "firefly/b.1"}) {
		t.Errorf("b's nodes %v, want freshest heartbeat first", got)
	}

	m := idx.Methods[mLogin]
	for _, tt := range []struct {
		at     time.Duration
		aliveB int
		alive  int
		winner string
	}{
		{ttl, 2, 3, "b"},
		{ttl + time.Nanosecond, 1, 2, "b"}, // b.1 is dead one TTL after its sighting
		{ttl + 5*time.Second, 1, 2, "b"},   // c-copy is alive to its run_date + TTL
		{ttl + 20*time.Second, 1, 1, "b"},  // b.2 too
		{ttl + 21*time.Second, 0, 0, "b"},  // nobody: the first by app id
		{8 * time.Hour, 0, 0, "b"},         // the run_date in the future keeps nothing alive
	} {
		now := seen.Add(tt.at)
		if c := idx.Counts(now, ttl); c.Alive != tt.alive || c.Alive+c.Stale != 3 {
			t.Errorf("at sighting%+v: counts %+v, want %d alive", tt.at, c, tt.alive)
		}
		if got := model.AliveCount(idx.Apps["b"].Nodes, now, ttl); got != tt.aliveB {
			t.Errorf("at sighting%+v: %d of b alive, want %d", tt.at, got, tt.aliveB)
		}
		if w := m.Claims[m.Winner(now, ttl)].AppID; w != tt.winner {
			t.Errorf("at sighting%+v: winner %s, want %s", tt.at, w, tt.winner)
		}
	}
	// c wins once b is dead and c alive.
	onlyC := model.BuildEnv("prod", []model.Entry{es[0], es[3]})
	mc := onlyC.Methods[mLogin]
	if w := mc.Claims[mc.Winner(seen.Add(ttl+time.Second), ttl)].AppID; w != "c" {
		t.Errorf("winner %s with b dead (its run_date 8 h ahead) and c alive, want c", w)
	}
}
