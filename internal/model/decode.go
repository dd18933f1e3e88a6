package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"unicode/utf8"

	"github.com/acme/registry-api/internal/jsonscan"
)

// serviceNodeIn is ServiceNode as read: the same fields, but methods decoded
// straight into a list. A full rebuild parses every entry of every env, and
// reflecting each method into a map[string]bool was most of its cost.
type serviceNodeIn struct {
	ProtoCount int        `json:"proto_count"`
	LeaseID    int64      `json:"lease_id"`
	RunDate    string     `json:"run_date"`
	Methods    methodList `json:"methods"`
	Network    Network    `json:"network"`
	Kernel     Kernel     `json:"kernel"`
	Meta       Meta       `json:"meta"`
	// Keepalive is registry-api's own member (MemberKeepalive), read for
	// version registrations; not a string reads as empty.
	Keepalive keepaliveMember `json:"keepalive"`
}

// keepaliveMember reads the keepalive member leniently: it is not the
// library's, and a value of another type must not make the entry invalid.
type keepaliveMember string

func (k *keepaliveMember) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		s = ""
	}
	*k = keepaliveMember(s)
	return nil
}

// UnmarshalJSON decodes the shape writers produce (compact or spaced JSON, no
// escapes, no nulls, no repeated members) by hand, and anything else by
// reflection as before: reflection was most of the cost of a full rebuild,
// and both ways give the same result for every input.
func (sn *serviceNodeIn) UnmarshalJSON(b []byte) error {
	return sn.decode(b)
}

// decode is UnmarshalJSON without relying on b having been validated: the
// fast path checks everything it accepts itself.
func (sn *serviceNodeIn) decode(b []byte) error {
	if sn.decodeFast(b) {
		return nil
	}
	return sn.decodeSlow(b)
}

// serviceNodeFields is serviceNodeIn without its UnmarshalJSON: what
// encoding/json decodes by reflection when the fast path gives up.
type serviceNodeFields serviceNodeIn

var (
	serviceNodeInType     = reflect.TypeFor[serviceNodeIn]()
	serviceNodeFieldsType = reflect.TypeFor[serviceNodeFields]()
)

func (sn *serviceNodeIn) decodeSlow(b []byte) error {
	err := json.Unmarshal(b, (*serviceNodeFields)(sn))
	// Error details name the type ParseEntry decodes, as they always did.
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		if te.Struct == serviceNodeFieldsType.Name() {
			te.Struct = serviceNodeInType.Name()
		}
		if te.Type == serviceNodeFieldsType {
			te.Type = serviceNodeInType
		}
	}
	return err
}

// Members of serviceNodeIn, indexes into libraryMembers and bits in a set of
// those seen.
const (
	memberProtoCount = iota
	memberLeaseID
	memberRunDate
	memberMethods
	memberNetwork
	memberKernel
	memberMeta
)

var (
	networkNames = []string{"sn", "internal", "external"}
	kernelNames  = []string{"language", "version"}
	metaNames    = []string{"env", "app_id", "version"}
)

// decodeFast decodes b into sn if b is a JSON object that encoding/json
// would decode without error and it is sure to decode it the same way. It
// leaves sn untouched otherwise.
func (sn *serviceNodeIn) decodeFast(b []byte) bool {
	d := newFastDecoder(b, sn.Methods.intern)
	out := *sn
	var seen uint
	d.Space()
	ok := d.object(func(key []byte) bool {
		m := matchName(key, libraryMembers)
		if m >= 0 {
			// encoding/json merges repeated objects and lets the last
			// scalar win; writers never repeat members, so leave it to it.
			if seen&(1<<m) != 0 {
				return false
			}
			seen |= 1 << m
		}
		switch m {
		case memberProtoCount:
			n, ok := d.integer()
			if !ok || int64(int(n)) != n { // int may be 32 bits
				return false
			}
			out.ProtoCount = int(n)
		case memberLeaseID:
			n, ok := d.integer()
			out.LeaseID = n
			return ok
		case memberRunDate:
			// Not interned: every heartbeat writes a new one, and
			// ParseEntry keeps only the time it stands for.
			s, ok := d.stringValue()
			if !ok {
				return false
			}
			out.RunDate = string(s)
		case memberMethods:
			names, ok := d.methods(out.Methods.names)
			out.Methods.names = names
			return ok
		case memberNetwork:
			v := [...]string{out.Network.SN, out.Network.Internal, out.Network.External}
			if !d.stringMembers(networkNames, v[:]) {
				return false
			}
			out.Network = Network{SN: v[0], Internal: v[1], External: v[2]}
		case memberKernel:
			v := [...]string{out.Kernel.Language, out.Kernel.Version}
			if !d.stringMembers(kernelNames, v[:]) {
				return false
			}
			out.Kernel = Kernel{Language: v[0], Version: v[1]}
		case memberMeta:
			v := [...]string{out.Meta.Env, out.Meta.AppID, out.Meta.Version}
			if !d.stringMembers(metaNames, v[:]) {
				return false
			}
			out.Meta = Meta{Env: v[0], AppID: v[1], Version: v[2]}
		default:
			if len(key) == len(MemberKeepalive) && equalFoldASCII(key, MemberKeepalive) {
				// As keepaliveMember reads it: the last one wins, and
				// anything but a string is empty.
				out.Keepalive = ""
				if d.Pos < len(d.B) && d.B[d.Pos] == '"' {
					s, ok := d.stringValue()
					if !ok {
						return false
					}
					out.Keepalive = keepaliveMember(s)
					return true
				}
			}
			return d.skipValue()
		}
		return true
	})
	d.Space()
	if !ok || d.Pos != len(b) {
		return false
	}
	*sn = out
	return true
}

// fastDecoder reads JSON with a jsonscan.Scanner. Its methods report false
// for anything they are not sure to read exactly as encoding/json does.
type fastDecoder struct {
	jsonscan.Scanner[[]byte]
	intern *Interner
}

// maxSkipDepth bounds the nesting of unknown members read here; deeper ones
// go to encoding/json, which has its own limit.
const maxSkipDepth = 64

// newFastDecoder reads b from its start, interning with intern (nil copies
// every string). UTF-8 is left alone, as encoding/json's scanner leaves it.
func newFastDecoder(b []byte, intern *Interner) fastDecoder {
	return fastDecoder{Scanner: jsonscan.Scanner[[]byte]{B: b, MaxDepth: maxSkipDepth}, intern: intern}
}

// object reads an object, handing each member's name to member, which reads
// the value that follows it and reports whether it could. It is the one
// loop over members for every object the fast path reads but methods.
func (d *fastDecoder) object(member func(name []byte) bool) bool {
	if !d.Consume('{') {
		return false
	}
	d.Space()
	if d.Consume('}') {
		return true
	}
	for {
		key, ok := d.memberName()
		if !ok || !member(key) {
			return false
		}
		if more, ok := d.next(); !more {
			return ok
		}
	}
}

// next reads what follows a member's value: a comma and the space after it
// (more members follow) or the closing brace.
func (d *fastDecoder) next() (more, ok bool) {
	d.Space()
	if d.Consume(',') {
		d.Space()
		return true, true
	}
	return false, d.Consume('}')
}

// rawString reads a string without escapes and returns its bytes. ascii is
// false when they include bytes above 0x7f, not yet checked for UTF-8.
// jsonscan's String reads escapes too; a string with one does not decode to
// its own bytes, so this one gives up on it instead.
func (d *fastDecoder) rawString() (s []byte, ascii, ok bool) {
	b := d.B
	if d.Pos >= len(b) || b[d.Pos] != '"' {
		return nil, false, false
	}
	var high byte
	for j := d.Pos + 1; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			s = b[d.Pos+1 : j]
			d.Pos = j + 1
			return s, high < utf8.RuneSelf, true
		}
		if c == '\\' || c < 0x20 {
			return nil, false, false
		}
		high |= c
	}
	return nil, false, false
}

// stringValue reads a string that decodes to its own bytes: no escapes, and
// valid UTF-8 (encoding/json replaces invalid bytes).
func (d *fastDecoder) stringValue() ([]byte, bool) {
	s, ascii, ok := d.rawString()
	if !ok || !ascii && !utf8.Valid(s) {
		return nil, false
	}
	return s, true
}

// memberName reads a member name and the colon after it. Only ASCII names
// are read here: encoding/json folds some other letters to ASCII ones when
// it matches names (the Kelvin sign to K, for one).
func (d *fastDecoder) memberName() ([]byte, bool) {
	s, ascii, ok := d.rawString()
	if !ok || !ascii {
		return nil, false
	}
	d.Space()
	if !d.Consume(':') {
		return nil, false
	}
	d.Space()
	return s, true
}

// matchName returns the index of the name that key matches as encoding/json
// matches an ASCII key to field names: exactly or else ignoring ASCII case;
// -1 for none.
func matchName(key []byte, names []string) int {
	for k, name := range names {
		if len(key) == len(name) && string(key) == name {
			return k
		}
	}
	for k, name := range names {
		if len(key) == len(name) && equalFoldASCII(key, name) {
			return k
		}
	}
	return -1
}

func equalFoldASCII(a []byte, b string) bool {
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// integer reads a JSON number into an int64 exactly, as encoding/json does
// for integer fields: digits only, so a fraction or an exponent (which
// encoding/json rejects there) and anything past int64 give up.
func (d *fastDecoder) integer() (int64, bool) {
	b, i := d.B, d.Pos
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var u uint64
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		if i-start == 19 { // 19 digits always fit in a uint64
			return 0, false
		}
		u = u*10 + uint64(b[i]-'0')
	}
	if i == start || b[start] == '0' && i-start > 1 {
		return 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, false
	}
	var n int64
	switch {
	case !neg && u <= math.MaxInt64:
		n = int64(u)
	case neg && u <= math.MaxInt64:
		n = -int64(u)
	case neg && u == math.MaxInt64+1:
		n = math.MinInt64
	default:
		return 0, false
	}
	d.Pos = i
	return n, true
}

// methods reads the methods object into the names decoded before, as
// methodList.UnmarshalJSON does, interning the names.
func (d *fastDecoder) methods(prev []string) ([]string, bool) {
	if !d.Consume('{') {
		return nil, false
	}
	// Collected on the stack, then copied once at their exact size.
	var buf [32]string
	names := append(buf[:0], prev...)
	d.Space()
	if !d.Consume('}') {
		for {
			s, ascii, ok := d.rawString()
			if !ok || !ascii && !utf8.Valid(s) {
				return nil, false
			}
			d.Space()
			if !d.Consume(':') {
				return nil, false
			}
			d.Space()
			var on bool
			switch {
			case d.Literal("true"):
				on = true
			case d.Literal("false"), d.Literal("null"):
				// null decodes to false in the library's map[string]bool.
			default:
				return nil, false
			}
			names = setMethod(names, d.intern.String(s), on)
			if more, ok := d.next(); !ok {
				return nil, false
			} else if !more {
				break
			}
		}
	}
	return append(make([]string, 0, len(names)), names...), true
}

// stringMembers reads an object whose members named names are strings into
// vals (which hold the values to keep for absent members), interning them;
// other members are skipped.
func (d *fastDecoder) stringMembers(names, vals []string) bool {
	var seen uint
	return d.object(func(key []byte) bool {
		m := matchName(key, names)
		if m < 0 {
			return d.skipValue()
		}
		if seen&(1<<m) != 0 {
			return false
		}
		seen |= 1 << m
		s, ok := d.stringValue()
		if !ok {
			return false
		}
		vals[m] = d.intern.String(s)
		return true
	})
}

// skipValue reads any JSON value, checking it as encoding/json's scanner
// does: the grammar, with UTF-8 left alone, and at most maxSkipDepth levels.
func (d *fastDecoder) skipValue() bool {
	return d.Value() == nil
}

// methodList decodes the wire's {"/pkg.Svc/M": true, ...} into the names
// mapped to true, with the library's semantics: a later duplicate key wins,
// a value that is not a boolean makes the entry invalid, and a repeated
// methods member adds to the map that the first one made (null clears it).
type methodList struct {
	names  []string
	intern *Interner
}

func (l *methodList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		l.names = nil
		return nil
	}
	// encoding/json has already checked that b is valid JSON.
	d := jsonscan.Scanner[[]byte]{B: b}
	d.Space()
	if !d.Consume('{') {
		return errors.New("methods: not a JSON object")
	}
	out := l.names
	if out == nil {
		out = make([]string, 0, 16)
	}
	d.Space()
	for d.Pos < len(b) && b[d.Pos] != '}' {
		key, next, err := readString(b, d.Pos, l.intern)
		if err != nil {
			return err
		}
		d.Pos = next
		d.Space()
		d.Consume(':')
		d.Space()
		switch {
		case d.Literal("true"):
			out = setMethod(out, key, true)
		case d.Literal("false"), d.Literal("null"):
			// null decodes to false in the library's map[string]bool.
			out = setMethod(out, key, false)
		default:
			return fmt.Errorf("methods: value of %q is not a boolean", key)
		}
		d.Space()
		if d.Consume(',') {
			d.Space()
		}
	}
	l.names = out
	return nil
}

// readString reads the JSON string starting at b[i] == '"'; escapes and
// invalid UTF-8, never in valid method names, go through encoding/json.
func readString(b []byte, i int, intern *Interner) (string, int, error) {
	if i >= len(b) || b[i] != '"' {
		return "", i, errors.New("methods: expected a string key")
	}
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			if !escaped && utf8.Valid(b[i+1:j]) {
				return intern.String(b[i+1 : j]), j + 1, nil
			}
			var s string
			if err := json.Unmarshal(b[i:j+1], &s); err != nil {
				return "", j + 1, fmt.Errorf("methods: %w", err)
			}
			return s, j + 1, nil
		}
	}
	return "", len(b), errors.New("methods: unterminated string")
}

// setMethod applies one member of the methods object to the names so far:
// the last of duplicate keys wins, as in the library's map. Duplicates that
// are all true stay in the list; ParseEntry compacts them.
func setMethod(names []string, key string, on bool) []string {
	if on {
		return append(names, key)
	}
	return removeString(names, key)
}

func removeString(list []string, s string) []string {
	for k := 0; k < len(list); k++ {
		if list[k] == s {
			list = append(list[:k], list[k+1:]...)
			k--
		}
	}
	return list
}

// Interner hands out one shared copy of equal strings. Every instance of an
// app repeats the same method names: sharing them saves most of a rebuild's
// allocations and most of the index's memory. It is not safe for concurrent
// use; a nil Interner copies every string.
type Interner struct {
	m map[string]string
}

// maxInterned bounds the table; past it, it starts afresh (strings already
// handed out stay valid).
const maxInterned = 1 << 16

// NewInterner returns an empty Interner.
func NewInterner() *Interner { return &Interner{m: make(map[string]string)} }

// String returns the shared copy of string(b).
func (in *Interner) String(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	if len(in.m) >= maxInterned {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	return s
}
