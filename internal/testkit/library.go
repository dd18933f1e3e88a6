package testkit

import (
	"encoding/json"
	"time"
)

// The Go registry library's types, field for field and tag for tag, so that
// tests decode entries exactly as a Go service does.
type (
	LibraryNode struct {
		ProtoCount int             `json:"proto_count"`
		LeaseID    int64           `json:"lease_id"`
		RunDate    string          `json:"run_date"`
		Methods    map[string]bool `json:"methods"`
		Network    LibraryNetwork  `json:"network"`
		Kernel     LibraryKernel   `json:"kernel"`
		Meta       LibraryMeta     `json:"meta"`
	}
	LibraryNetwork struct {
		SN       string `json:"sn"`
		Internal string `json:"internal"`
		External string `json:"external"`
	}
	LibraryKernel struct {
		Language string `json:"language"`
		Version  string `json:"version"`
	}
	LibraryMeta struct {
		Env     string `json:"env"`
		AppID   string `json:"app_id"`
		Version string `json:"version"`
	}
)

// LibraryDiscover does what the library's discoverer does with a
// ConfigMap's data: skip what does not decode, drop nodes whose heartbeat is
// older than ttl, and map every method to the app of the last node read.
// The library reads run_date in the process's local zone; in a pod that is
// UTC, which is used here explicitly.
func LibraryDiscover(data map[string]string, now time.Time, ttl time.Duration) map[string]string {
	apps := make(map[string]string)
	for _, raw := range data {
		var n LibraryNode
		if err := json.Unmarshal([]byte(raw), &n); err != nil {
			continue
		}
		runDate, err := time.ParseInLocation(time.DateTime, n.RunDate, time.UTC)
		if err != nil || now.Sub(runDate) > ttl {
			continue
		}
		for m := range n.Methods {
			apps[m] = n.Meta.AppID
		}
	}
	return apps
}
