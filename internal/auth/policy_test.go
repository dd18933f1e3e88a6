package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

func TestPolicy(t *testing.T) {
	admins, err := ParseSubjects([]string{" system:serviceaccount:ops:registrar ", "", "group:registry-admins"})
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Admins: admins}
	sa := func(ns, name string) Identity {
		return Identity{Username: "system:serviceaccount:" + ns + ":" + name, Namespace: ns, ServiceAccount: name,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}}
	}
	alice, bob := sa("team-a", "alice"), sa("team-a", "bob")
	mallory := sa("team-b", "mallory")
	registrar := sa("ops", "registrar")
	human := Identity{Username: "jane", Groups: []string{"devs"}}
	groupAdmin := Identity{Username: "sam", Groups: []string{"registry-admins"}}

	none := Entry{}
	library := Entry{Exists: true}
	ofAlice := Entry{Exists: true, RegisteredBy: &model.RegisteredBy{Username: alice.Username, Namespace: "team-a"}}

	tests := []struct {
		name   string
		id     Identity
		action Action
		ns     string
		entry  Entry
		rule   Rule // "" allows
	}{
		{"register a new entry in its own namespace", alice, ActionRegister, "team-a", none, ""},
		{"deregister nothing in its own namespace", alice, ActionDeregister, "team-a", none, ""},
		{"heartbeat its own entry", alice, ActionHeartbeat, "team-a", ofAlice, ""},
		{"re-register its own entry", alice, ActionRegister, "team-a", ofAlice, ""},
		{"deregister its own entry", alice, ActionDeregister, "team-a", ofAlice, ""},
		{"register in another namespace", mallory, ActionRegister, "team-a", none, RuleNamespace},
		{"heartbeat in another namespace", mallory, ActionHeartbeat, "team-a", ofAlice, RuleNamespace},
		{"deregister in another namespace", mallory, ActionDeregister, "team-a", ofAlice, RuleNamespace},
		{"heartbeat someone else's entry", bob, ActionHeartbeat, "team-a", ofAlice, RuleOwner},
		{"deregister someone else's entry", bob, ActionDeregister, "team-a", ofAlice, RuleOwner},
		{"register over someone else's entry", bob, ActionRegister, "team-a", ofAlice, RuleOwner},
		{"heartbeat a library entry", alice, ActionHeartbeat, "team-a", library, RuleLibraryEntry},
		{"deregister a library entry", alice, ActionDeregister, "team-a", library, RuleLibraryEntry},
		{"register over a library entry", alice, ActionRegister, "team-a", library, RuleLibraryEntry},
		{"a user that is no ServiceAccount", human, ActionRegister, "team-a", none, RuleServiceAccount},
		{"admin by name: library entry elsewhere", registrar, ActionDeregister, "team-a", library, ""},
		{"admin by name: someone else's entry", registrar, ActionHeartbeat, "team-b", ofAlice, ""},
		{"admin by group: library entry", groupAdmin, ActionHeartbeat, "team-a", library, ""},
		{"admin by group: register anywhere", groupAdmin, ActionRegister, "team-z", none, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Authorize(tt.id, tt.action, tt.ns, tt.entry)
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if model.ErrorCode(err) != model.CodeForbidden {
				t.Fatalf("got %v, want forbidden by %s", err, tt.rule)
			}
			var d *Denied
			if !errors.As(err, &d) || d.Rule != tt.rule {
				t.Fatalf("refused by %v, want %s", err, tt.rule)
			}
			var me *model.Error
			errors.As(err, &me)
			if !strings.Contains(me.Message, string(tt.rule)) {
				t.Errorf("message %q does not name rule %s", me.Message, tt.rule)
			}
		})
	}

	// Without admins, nobody bypasses anything.
	if err := (Policy{}).Authorize(registrar, ActionHeartbeat, "team-a", library); model.ErrorCode(err) != model.CodeForbidden {
		t.Errorf("zero policy let an unlisted identity through: %v", err)
	}
}

func TestEntryOf(t *testing.T) {
	if e := EntryOf(nil); e.Exists {
		t.Errorf("EntryOf(nil) = %+v", e)
	}
	if e := EntryOf([]byte(`{"lease_id":1}`)); !e.Exists || e.RegisteredBy != nil {
		t.Errorf("library entry = %+v", e)
	}
	if e := EntryOf([]byte(`{"registered_by":{"username":"u"}}`)); !e.Exists || e.RegisteredBy == nil || e.RegisteredBy.Username != "u" {
		t.Errorf("registered entry = %+v", e)
	}
	// A record nobody can read protects the entry like a library entry.
	if e := EntryOf([]byte(`{"registered_by":"u"}`)); !e.Exists || e.RegisteredBy != nil {
		t.Errorf("unreadable record = %+v", e)
	}
}

func TestParseSubjects(t *testing.T) {
	s, err := ParseSubjects([]string{"group:system:serviceaccounts:ops", "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id   Identity
		want bool
	}{
		{Identity{Username: "alice"}, true},
		{Identity{Username: "bob", Groups: []string{"system:serviceaccounts:ops"}}, true},
		{Identity{Username: "bob", Groups: []string{"system:serviceaccounts"}}, false},
		{Identity{Username: "group:system:serviceaccounts:ops"}, false},
		{Identity{}, false},
	} {
		if got := s.Match(tt.id); got != tt.want {
			t.Errorf("Match(%+v) = %v, want %v", tt.id, got, tt.want)
		}
	}
	if _, err := ParseSubjects([]string{"group: "}); err == nil {
		t.Error("group: without a name was accepted")
	}
}
