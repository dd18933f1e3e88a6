package auth

import (
	"fmt"
	"strings"

	"github.com/acme/registry-api/internal/model"
)

// Action is a write a caller asks for.
type Action string

// The writes of the API.
const (
	ActionRegister   Action = "register"
	ActionHeartbeat  Action = "heartbeat"
	ActionDeregister Action = "deregister"
)

// Rule names a rule of the write policy; a refusal says which one refused.
type Rule string

// The rules, in the order they are checked.
const (
	// RuleServiceAccount: only ServiceAccounts write (admins aside).
	RuleServiceAccount Rule = "service-account-only"
	// RuleNamespace: a ServiceAccount writes only envs stored in its own namespace.
	RuleNamespace Rule = "own-namespace-only"
	// RuleLibraryEntry: entries the Go library wrote directly are read-only.
	RuleLibraryEntry Rule = "library-entries-read-only"
	// RuleOwner: only the identity that registered an entry changes it.
	RuleOwner Rule = "registering-identity-only"
)

// Denied is the cause of a refusal: the rule and why it applied.
type Denied struct {
	Rule   Rule
	Reason string
}

func (d *Denied) Error() string { return fmt.Sprintf("rule %s: %s", d.Rule, d.Reason) }

// Entry is the state of the entry a write would change, read from the copy
// that the write replaces.
type Entry struct {
	// Exists is false when there is no entry yet (or nothing to remove).
	Exists bool
	// RegisteredBy is who registered it through the API; nil for entries
	// the Go library wrote directly, and for unreadable records, which are
	// treated alike: only admins may touch them.
	RegisteredBy *model.RegisteredBy
}

// EntryOf reads the state of an existing entry's raw value; nil is no entry.
func EntryOf(raw []byte) Entry {
	if raw == nil {
		return Entry{}
	}
	o, err := model.ReadOwnership(raw)
	if err != nil {
		return Entry{Exists: true}
	}
	return Entry{Exists: true, RegisteredBy: o.RegisteredBy}
}

// Subjects lists usernames and groups (written group:<name>).
type Subjects struct {
	users  map[string]struct{}
	groups map[string]struct{}
}

// ParseSubjects reads REGISTRY_ADMIN_SUBJECTS: usernames, and groups as
// group:<name>; blank items are ignored.
func ParseSubjects(items []string) (Subjects, error) {
	s := Subjects{users: map[string]struct{}{}, groups: map[string]struct{}{}}
	for _, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if g, ok := strings.CutPrefix(item, "group:"); ok {
			if g = strings.TrimSpace(g); g == "" {
				return Subjects{}, fmt.Errorf("subject %q names no group", item)
			}
			s.groups[g] = struct{}{}
			continue
		}
		s.users[item] = struct{}{}
	}
	return s, nil
}

// Match reports whether id is one of the subjects, by username or group.
func (s Subjects) Match(id Identity) bool {
	if id.Username == "" {
		return false
	}
	if _, ok := s.users[id.Username]; ok {
		return true
	}
	for _, g := range id.Groups {
		if _, ok := s.groups[g]; ok {
			return true
		}
	}
	return false
}

// Policy is the write policy; its zero value has no admins.
type Policy struct {
	// Admins may write anywhere, library entries and others' entries too.
	Admins Subjects
}

// Authorize decides whether id may do action on an entry in namespace: the
// one place the write policy lives. It returns nil, or a forbidden
// *model.Error whose message names the rule that refused and whose cause is
// a *Denied.
func (p Policy) Authorize(id Identity, action Action, namespace string, entry Entry) error {
	if p.Admins.Match(id) {
		return nil
	}
	if !id.IsServiceAccount() {
		return deny(RuleServiceAccount, fmt.Sprintf("%s is not a ServiceAccount; only ServiceAccount tokens may %s instances (and subjects in REGISTRY_ADMIN_SUBJECTS)",
			id.Username, action))
	}
	if namespace != id.Namespace {
		return deny(RuleNamespace, fmt.Sprintf("ServiceAccount %s may write only envs stored in its own namespace %s, not in namespace %s",
			id.Username, id.Namespace, namespace))
	}
	if !entry.Exists {
		return nil
	}
	if entry.RegisteredBy == nil {
		return deny(RuleLibraryEntry, fmt.Sprintf("the entry was written by the Go registry library, not through registry-api; only subjects in REGISTRY_ADMIN_SUBJECTS may %s it",
			action))
	}
	if entry.RegisteredBy.Username != id.Username {
		return deny(RuleOwner, fmt.Sprintf("the entry was registered by %s; only that identity may %s it, not %s",
			entry.RegisteredBy.Username, action, id.Username))
	}
	return nil
}

func deny(rule Rule, reason string) error {
	d := &Denied{Rule: rule, Reason: reason}
	return &model.Error{Code: model.CodeForbidden, Message: fmt.Sprintf("refused by rule %q: %s", rule, reason), Err: d}
}
