package model_test

import (
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

func TestReadOwnership(t *testing.T) {
	withMembers := func(members string) string {
		return strings.Replace(fixtureUser1, `"proto_count":1,`, `"proto_count":1,`+members+`,`, 1)
	}
	pod := `"registered_by":{"username":"system:serviceaccount:firefly:user","uid":"u1","namespace":"firefly","pod":{"name":"user-0","uid":"p1"}}`
	tests := []struct {
		name     string
		raw      string
		username string
		podBound bool
	}{
		{"library entry", fixtureUser1, "", false},
		{"pod-bound, keepalive pod", withMembers(pod + `,"keepalive":"pod"`), "system:serviceaccount:firefly:user", true},
		{"pod-bound, keepalive unset", withMembers(pod), "system:serviceaccount:firefly:user", true},
		{"pod-bound, keepalive client", withMembers(pod + `,"keepalive":"client"`), "system:serviceaccount:firefly:user", false},
		{"pod-bound, keepalive unknown", withMembers(pod + `,"keepalive":"never"`), "system:serviceaccount:firefly:user", false},
		{"no pod", withMembers(`"registered_by":{"username":"system:serviceaccount:firefly:user"},"keepalive":"client"`), "system:serviceaccount:firefly:user", false},
		{"pod without uid", withMembers(`"registered_by":{"username":"u","pod":{"name":"p"}}`), "u", false},
		{"null members", withMembers(`"registered_by":null,"keepalive":null`), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := model.ReadOwnership([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			username := ""
			if o.RegisteredBy != nil {
				username = o.RegisteredBy.Username
			}
			if username != tt.username || o.PodBound() != tt.podBound {
				t.Errorf("ownership %+v: username %q, pod-bound %v; want %q, %v", o, username, o.PodBound(), tt.username, tt.podBound)
			}
		})
	}
	for _, bad := range []string{
		`[]`, `{`,
		withMembers(`"registered_by":"ops"`),
		withMembers(`"registered_by":{"uid":"x"}`),
		withMembers(`"registered_by":{"username":"u"},"keepalive":1`),
	} {
		if o, err := model.ReadOwnership([]byte(bad)); err == nil {
			t.Errorf("ReadOwnership(%.60s…) = %+v, want an error", bad, o)
		}
	}
}
