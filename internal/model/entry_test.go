package model_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

func TestReadEntryFacts(t *testing.T) {
	withMembers := func(members string) string {
		return strings.Replace(fixtureUser1, `"proto_count":1,`, `"proto_count":1,`+members+`,`, 1)
	}
	pod := `"registered_by":{"username":"system:serviceaccount:firefly:user","namespace":"firefly","pod":{"name":"user-0","uid":"p1"}}`
	heartbeat := time.Date(2026, 11, 26, 12, 24, 22, 0, time.UTC)
	tests := []struct {
		name    string
		raw     string
		app     string
		lease   int64
		runDate time.Time
		boundTo string // the pod uid the entry is kept alive for
		ownErr  bool
	}{
		{"library entry", fixtureUser1, "user-service", 1795695862709570046, heartbeat, "", false},
		{"spaced", "\n { \"lease_id\" : 7 , \"meta\" : { \"app_id\" : \"a\" } } \t", "a", 7, time.Time{}, "", false},
		{"pod-bound", withMembers(pod), "user-service", 1795695862709570046, heartbeat, "p1", false},
		{"pod-bound, keepalive client", withMembers(pod + `,"keepalive":"client"`), "user-service", 1795695862709570046, heartbeat, "", false},
		// Names match as encoding/json (and so readers) match them.
		{"names in another case", `{"LEASE_ID":5,"Run_Date":"2026-11-26 12:24:22","META":{"App_Id":"a"}}`, "a", 5, heartbeat, "", false},
		{"escaped name", `{"lease\u005fid":5,"meta":{"app_id":"a"}}`, "a", 5, time.Time{}, "", false},
		{"escaped value", `{"lease_id":5,"run_date":"2026-11-26\u002012:24:22","meta":{"app_id":"\u0061"}}`, "a", 5, heartbeat, "", false},
		{"RFC 3339 run_date", `{"run_date":"2026-11-26T13:24:22+01:00"}`, "", 0, heartbeat, "", false},
		{"members of the wrong type read as zero", `{"lease_id":"5","run_date":5,"meta":{"app_id":7}}`, "", 0, time.Time{}, "", false},
		{"lease id too large", `{"lease_id":9223372036854775808,"meta":{"app_id":"a"}}`, "a", 0, time.Time{}, "", false},
		{"lease id not an integer", `{"lease_id":5.0,"meta":{"app_id":"a"}}`, "a", 0, time.Time{}, "", false},
		{"other meta members of any type", `{"lease_id":5,"meta":{"env":1,"app_id":"a","version":null}}`, "a", 5, time.Time{}, "", false},
		{"repeated member: the last wins", `{"lease_id":4,"meta":{"app_id":"a"},"lease_id":5}`, "a", 5, time.Time{}, "", false},
		{"unreadable registered_by", withMembers(`"registered_by":{"pod":{"uid":"p1"}}`), "user-service", 1795695862709570046, heartbeat, "", true},
		{"empty object", `{}`, "", 0, time.Time{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := model.ReadEntryFacts([]byte(tt.raw))
			if !ok {
				t.Fatal("ReadEntryFacts: not ok")
			}
			if f.AppID != tt.app || f.LeaseID != tt.lease {
				t.Errorf("identity = %q %d, want %q %d", f.AppID, f.LeaseID, tt.app, tt.lease)
			}
			if f.Identified() != (tt.app != "" && tt.lease != 0) {
				t.Errorf("Identified() = %v", f.Identified())
			}
			if got := f.RunDate(time.UTC); !got.Equal(tt.runDate) {
				t.Errorf("RunDate = %v, want %v", got, tt.runDate)
			}
			if _, err := f.Ownership(); (err != nil) != tt.ownErr {
				t.Errorf("Ownership() error = %v, want an error: %v", err, tt.ownErr)
			}
			for _, uid := range []string{"", "p1", "p2"} {
				if got, want := f.BoundTo(uid), uid != "" && uid == tt.boundTo; got != want {
					t.Errorf("BoundTo(%q) = %v, want %v", uid, got, want)
				}
			}
		})
	}
}

func TestReadEntryFactsRejects(t *testing.T) {
	for _, in := range []string{``, `null`, `[]`, `"x"`, `5`, `{"lease_id":5`, `{"lease_id":5}}`, `{"lease_id":5} x`, fixtureUser1 + fixtureUser1} {
		if f, ok := model.ReadEntryFacts([]byte(in)); ok {
			t.Errorf("ReadEntryFacts(%.40s…) = %+v, want not ok", in, f)
		}
	}
}

func TestRefreshEntry(t *testing.T) {
	const runDate = "2026-11-27 08:00:05"
	for _, tt := range []struct {
		name, in, want string
	}{
		{"library entry", fixtureUser1, strings.Replace(fixtureUser1, "2026-11-26 12:24:22", runDate, 1)},
		{"every other byte kept", `{ "x" : [ 1 ] , "run_date" : "old" }`, `{ "x" : [ 1 ] , "run_date" : "` + runDate + `" }`},
		{"missing run_date is appended", `{"lease_id":1, "x":{}}`, `{"lease_id":1,"x":{},"run_date":"` + runDate + `"}`},
		{"non-string run_date replaced", `{"run_date":null,"x":1}`, `{"run_date":"` + runDate + `","x":1}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := model.RefreshEntry(tt.in, runDate)
			if !ok || got != tt.want {
				t.Errorf("RefreshEntry = %s, %v\nwant %s", got, ok, tt.want)
			}
		})
	}
	for _, in := range []string{``, `null`, `[]`, `{"run_date":"x"`} {
		if got, ok := model.RefreshEntry(in, runDate); ok {
			t.Errorf("RefreshEntry(%s) = %s, want not ok", in, got)
		}
	}
}

func TestBuildEntry(t *testing.T) {
	node := model.ServiceNode{
		ProtoCount: 1,
		LeaseID:    1795695862709570046,
		RunDate:    "2026-11-26 12:24:22",
		Methods:    map[string]bool{"/acme.user.v1.UserService/Login": true, "/acme.user.v1.UserService/GetProfile": true},
		Network:    model.Network{SN: "firefly-main-network", Internal: "user-service:8080", External: "127.0.0.1"},
		Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
		Meta:       model.Meta{Env: "prod", AppID: "user-service", Version: "v1"},
	}
	got, err := model.BuildEntry(nil, node, nil)
	if err != nil || string(got) != fixtureUser1 {
		t.Fatalf("BuildEntry = %s, %v\nwant the library's bytes %s", got, err, fixtureUser1)
	}

	// Over an existing entry, members of other writers stay where they are,
	// inside meta too; extra members are set in the order of their names.
	base := `{"x":1,"run_date":"old","meta":{"owner":"ops","app_id":"old"},"methods":{"/p.S/Old":true}}`
	extra := map[string]json.RawMessage{"z": json.RawMessage(`true`), "y": json.RawMessage(`{"a":1}`)}
	got, err = model.BuildEntry([]byte(base), node, extra)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"x":1,"run_date":"2026-11-26 12:24:22","meta":{"owner":"ops","app_id":"user-service","env":"prod","version":"v1"},` +
		`"methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true},` +
		`"proto_count":1,"lease_id":1795695862709570046,` +
		`"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},` +
		`"kernel":{"language":"Golang","version":"v0.0.1"},"y":{"a":1},"z":true}`
	if string(got) != want {
		t.Errorf("BuildEntry over an entry =\n %s\nwant\n %s", got, want)
	}

	// A base that is not an object is replaced.
	if got, err := model.BuildEntry([]byte(`[1]`), node, nil); err != nil || string(got) != fixtureUser1 {
		t.Errorf("BuildEntry over [1] = %s, %v", got, err)
	}
}

func TestIsLibraryMember(t *testing.T) {
	for _, name := range []string{"proto_count", "lease_id", "run_date", "methods", "network", "kernel", "meta"} {
		if !model.IsLibraryMember(name) {
			t.Errorf("IsLibraryMember(%q) = false", name)
		}
	}
	for _, name := range []string{"", model.MemberRegisteredBy, model.MemberKeepalive, "Meta", "app_id"} {
		if model.IsLibraryMember(name) {
			t.Errorf("IsLibraryMember(%q) = true", name)
		}
	}
}
