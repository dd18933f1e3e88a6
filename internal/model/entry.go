package model

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/acme/registry-api/internal/jsonscan"
)

// The entry codec: every package reads and writes an entry's JSON through
// this file and decode.go. ParseEntry reads an entry strictly, as the index
// must; ReadEntryFacts reads the few members a writer or the leader judges an
// entry by, leniently; BuildEntry writes a registration; RefreshEntry rewrites
// the run_date and nothing else.

// ParseOptions control how entries are read.
type ParseOptions struct {
	// Zone is where run_date strings without a zone are read; nil means UTC.
	Zone *time.Location
	// Intern, when set, shares method names between entries; callers that
	// parse concurrently must not share one Interner.
	Intern *Interner
	// ObservedAt is when the value being parsed was first seen, for
	// EffectiveHeartbeat; zero takes every run_date at its word.
	ObservedAt time.Time
	// MaxClockSkew is how far ahead of ObservedAt a run_date may be;
	// DefaultMaxClockSkew when not positive.
	MaxClockSkew time.Duration
}

// ParseEntry parses one ConfigMap data value found under key in namespace for
// env. It returns an *EntryError for entries that must be skipped, and
// warnings for problems that still let the entry be served.
func ParseEntry(namespace, env, key string, raw []byte, opts ParseOptions) (*Node, []string, error) {
	sn := serviceNodeIn{Methods: methodList{intern: opts.Intern}}
	// decode validates as it goes; encoding/json would scan raw twice more
	// before the fast path even started.
	if err := sn.decode(raw); err != nil {
		return nil, nil, &EntryError{ReasonInvalidJSON, err.Error()}
	}
	return sn.node(namespace, env, key, opts)
}

// libraryMembers are the top-level members the Go library writes, in its
// order; the member* constants of decode.go index them. A registration owns
// them: anything else in an entry belongs to another writer and is kept.
var libraryMembers = []string{"proto_count", "lease_id", "run_date", "methods", "network", "kernel", "meta"}

// IsLibraryMember reports whether name is one of the members the Go library
// writes, which registry-api's own members must not shadow.
func IsLibraryMember(name string) bool { return slices.Contains(libraryMembers, name) }

// EntryFacts is what a writer or the leader reads of an entry: who it names,
// when it last heartbeat and who keeps it alive. Each member is read on its
// own, as encoding/json matches names; one that is missing or of the wrong
// type reads as zero, since the entries judged are often old or hand-edited.
type EntryFacts struct {
	AppID   string
	LeaseID int64
	// The members read on demand, verbatim; nil when absent.
	runDate, registeredBy, keepalive []byte
}

// Top-level members that ReadEntryFacts reads, and their order in factNames.
const (
	factLeaseID = iota
	factRunDate
	factMeta
	factRegisteredBy
	factKeepalive
	numFacts
)

var factNames = [numFacts]string{"lease_id", "run_date", "meta", MemberRegisteredBy, MemberKeepalive}

// ReadEntryFacts reads an entry's facts; ok is false when raw is not a JSON
// object.
func ReadEntryFacts(raw []byte) (f EntryFacts, ok bool) {
	var vals [numFacts][]byte
	if !factMembersFast(raw, &vals) && !factMembersSlow(raw, &vals) {
		return EntryFacts{}, false
	}
	f.LeaseID = leaseIDOf(vals[factLeaseID])
	f.AppID = appIDOf(vals[factMeta])
	f.runDate, f.registeredBy, f.keepalive = vals[factRunDate], vals[factRegisteredBy], vals[factKeepalive]
	return f, true
}

// Identified reports whether the entry names an instance: an app id and a
// lease id, as readers require.
func (f EntryFacts) Identified() bool { return f.AppID != "" && f.LeaseID != 0 }

// RunDate is the entry's run_date read in zone; zero when missing or
// unreadable.
func (f EntryFacts) RunDate(zone *time.Location) time.Time {
	if f.runDate == nil {
		return time.Time{}
	}
	d := newFastDecoder(f.runDate, nil)
	s, ok := d.stringValue()
	text := string(s)
	if !ok || d.Pos != len(f.runDate) {
		if json.Unmarshal(f.runDate, &text) != nil {
			return time.Time{}
		}
	}
	t, err := ParseRunDate(text, zone)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Ownership reads the entry's registered_by and keepalive members, as
// ReadOwnership does.
func (f EntryFacts) Ownership() (Ownership, error) {
	return ownershipOf(f.registeredBy, f.keepalive)
}

// BoundTo reports whether registry-api keeps the entry alive for the pod
// with uid.
func (f EntryFacts) BoundTo(uid string) bool {
	if uid == "" {
		return false
	}
	own, err := f.Ownership()
	return err == nil && own.PodBound() && own.RegisteredBy.Pod.UID == uid
}

// factMembersFast finds the members of factNames in raw with the single-pass
// scanner. It gives up, for factMembersSlow, on whatever that scanner leaves
// to encoding/json, and on a repeated member.
func factMembersFast(raw []byte, vals *[numFacts][]byte) bool {
	d := newFastDecoder(raw, nil)
	var seen uint
	d.Space()
	ok := d.object(func(key []byte) bool {
		m := matchName(key, factNames[:])
		start := d.Pos
		if !d.skipValue() {
			return false
		}
		if m >= 0 {
			if seen&(1<<m) != 0 {
				return false
			}
			seen |= 1 << m
			vals[m] = raw[start:d.Pos]
		}
		return true
	})
	d.Space()
	return ok && d.Pos == len(raw)
}

// factMembersSlow is factMembersFast by encoding/json.
func factMembersSlow(raw []byte, vals *[numFacts][]byte) bool {
	d := jsonscan.Scanner[[]byte]{B: raw}
	d.Space()
	if !d.Consume('{') {
		return false
	}
	var v struct {
		LeaseID      json.RawMessage `json:"lease_id"`
		RunDate      json.RawMessage `json:"run_date"`
		Meta         json.RawMessage `json:"meta"`
		RegisteredBy json.RawMessage `json:"registered_by"`
		Keepalive    json.RawMessage `json:"keepalive"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	*vals = [...][]byte{v.LeaseID, v.RunDate, v.Meta, v.RegisteredBy, v.Keepalive}
	return true
}

// leaseIDOf reads a lease_id value as an int64; 0 when it is not one.
func leaseIDOf(v []byte) int64 {
	if v == nil {
		return 0
	}
	d := newFastDecoder(v, nil)
	if n, ok := d.integer(); ok && d.Pos == len(v) {
		return n
	}
	var n int64
	if json.Unmarshal(v, &n) != nil {
		return 0
	}
	return n
}

// appIDOf reads meta.app_id; "" when meta is not an object with a string
// app_id.
func appIDOf(v []byte) string {
	if v == nil {
		return ""
	}
	d := newFastDecoder(v, nil)
	var vals [3]string
	if d.stringMembers(metaNames, vals[:]) && d.Pos == len(v) {
		return vals[1]
	}
	var meta struct {
		AppID string `json:"app_id"`
	}
	if json.Unmarshal(v, &meta) != nil {
		return ""
	}
	return meta.AppID
}

// BuildEntry writes a registration's entry as the library does: node in its
// encoding. Over base (an existing entry; nil for none) it replaces only the
// members node owns, inside network, kernel and meta too, and keeps the rest
// byte for byte. extra are registry-api's own top-level members, set last in
// the order of their names.
func BuildEntry(base []byte, node ServiceNode, extra map[string]json.RawMessage) ([]byte, error) {
	fresh, err := json.Marshal(node)
	if err != nil {
		return nil, fmt.Errorf("encode entry: %w", err)
	}
	own, err := DecodeFields(fresh)
	if err != nil {
		return nil, err
	}
	out := own
	if len(base) > 0 {
		if prev, err := DecodeFields(base); err == nil {
			for _, f := range own {
				switch f.Key {
				case "network", "kernel", "meta":
					old, _ := prev.Get(f.Key)
					prev.Set(f.Key, mergeObject(old, f.Value))
				default:
					prev.Set(f.Key, f.Value)
				}
			}
			out = prev
		}
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		out.Set(k, extra[k])
	}
	return out.Bytes(), nil
}

// mergeObject sets the members of own over old when old is an object.
func mergeObject(old, own json.RawMessage) json.RawMessage {
	if old == nil {
		return own
	}
	prev, err := DecodeFields(old)
	if err != nil {
		return own
	}
	fs, err := DecodeFields(own)
	if err != nil {
		return own
	}
	for _, f := range fs {
		prev.Set(f.Key, f.Value)
	}
	return prev.Bytes()
}

// RefreshEntry rewrites only the run_date of an entry, to runDate (as
// FormatRunDate writes it): a heartbeat. Every other byte stays as it is when
// raw has one string run_date at its top level; otherwise the entry is
// re-encoded as RefreshRunDate does. ok is false when raw is not a JSON
// object. It does not validate the rest of raw: callers parse the result.
func RefreshEntry(raw, runDate string) (string, bool) {
	if out, ok := spliceRunDate(raw, runDate); ok {
		return out, true
	}
	b, err := setRunDate([]byte(raw), runDate)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// RefreshRunDate rewrites only the run_date of an entry, re-encoding it
// compactly through Fields.
func RefreshRunDate(raw []byte, at time.Time, zone *time.Location) ([]byte, error) {
	return setRunDate(raw, FormatRunDate(at, zone))
}

func setRunDate(raw []byte, runDate string) ([]byte, error) {
	f, err := DecodeFields(raw)
	if err != nil {
		return nil, err
	}
	if err := f.SetJSON("run_date", runDate); err != nil {
		return nil, err
	}
	return f.Bytes(), nil
}

// spliceRunDate replaces the value of the top-level "run_date" member of the
// JSON object raw with runDate, leaving every other byte as it is. It is the
// heartbeat's hot path: a heartbeat of a 500-entry batch does it 500 times
// between its Get and its Update. ok is false when raw is not an object with
// a string run_date at its top level, or runDate needs escaping in JSON.
func spliceRunDate(raw, runDate string) (string, bool) {
	if !plainJSONString(runDate) {
		return "", false
	}
	s := jsonscan.Scanner[string]{B: raw}
	s.Space()
	if !s.Consume('{') {
		return "", false
	}
	s.Space()
	// The old value's bounds. The scan goes on to the end: a repeated name
	// (readers take the last) is left to the fallback.
	start, stop := -1, -1
	if !s.Consume('}') {
		for {
			name := s.Pos
			if s.String() != nil {
				return "", false
			}
			isRunDate := raw[name:s.Pos] == `"run_date"`
			s.Space()
			if !s.Consume(':') {
				return "", false
			}
			s.Space()
			value := s.Pos
			if s.Value() != nil {
				return "", false
			}
			if isRunDate {
				if start >= 0 || raw[value] != '"' {
					return "", false
				}
				start, stop = value, s.Pos
			}
			s.Space()
			if s.Consume('}') {
				break
			}
			if !s.Consume(',') {
				return "", false
			}
			s.Space()
		}
	}
	s.Space()
	if start < 0 || s.Pos != len(raw) {
		return "", false
	}
	// One allocation: Go concatenates all five at once.
	return raw[:start] + `"` + runDate + `"` + raw[stop:], true
}

// plainJSONString reports whether encoding/json writes s as itself between
// quotes: printable ASCII, none of the characters it escapes.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
