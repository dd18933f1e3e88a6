package model_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

// benchEntry is fixtureUser1 with 20 methods, the size of a typical service.
func benchEntry() []byte {
	methods := make([]string, 20)
	for i := range methods {
		methods[i] = fmt.Sprintf(`"/acme.user.v1.UserService/Method%02d":true`, i)
	}
	const old = `{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true}`
	if !strings.Contains(fixtureUser1, old) {
		panic("fixtureUser1 changed")
	}
	return []byte(strings.Replace(fixtureUser1, old, "{"+strings.Join(methods, ",")+"}", 1))
}

func BenchmarkParseEntry(b *testing.B) {
	raw := benchEntry()
	const key = "user-service.1795695862709570046"
	for _, bc := range []struct {
		name   string
		intern *model.Interner
	}{
		{"Interner", model.NewInterner()},
		{"NoInterner", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := model.ParseOptions{Intern: bc.intern}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				node, _, err := model.ParseEntry("firefly", "prod", key, raw, opts)
				if err != nil || len(node.Methods) != 20 {
					b.Fatalf("ParseEntry: %v", err)
				}
			}
		})
	}
}

// BenchmarkReadEntryFacts reads the identity of one entry, as a writer does
// for every entry of a ConfigMap when it indexes them; encoding-json is the
// struct decode it replaced.
func BenchmarkReadEntryFacts(b *testing.B) {
	raw := benchEntry()
	b.Run("codec", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if f, ok := model.ReadEntryFacts(raw); !ok || !f.Identified() {
				b.Fatal("ReadEntryFacts: not identified")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			var v struct {
				LeaseID int64 `json:"lease_id"`
				Meta    struct {
					AppID string `json:"app_id"`
				} `json:"meta"`
			}
			if err := json.Unmarshal(raw, &v); err != nil || v.LeaseID == 0 {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRefreshEntry rewrites one entry's run_date: a heartbeat.
func BenchmarkRefreshEntry(b *testing.B) {
	raw := string(benchEntry())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := model.RefreshEntry(raw, "2026-11-27 08:00:05"); !ok {
			b.Fatal("RefreshEntry: not ok")
		}
	}
}
