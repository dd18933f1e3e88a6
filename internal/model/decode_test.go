package model

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unsafe"
)

// The fast methods decoder must agree with decoding into the library's
// map[string]bool on every input the library accepts, and reject what it rejects.
func FuzzMethodListMatchesMap(f *testing.F) {
	for _, s := range []string{
		`{"/a.B/C":true,"/a.B/D":false}`, `{}`, `null`, `{"x":true,"x":false}`, `{"x":false,"x":true}`,
		`{ "/a\u002fB/C" : true , "q\"uote": true }`, `{"a":1}`, `{"a":"true"}`, `[]`, `{"a":null}`, `{"\\":true}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var m map[string]bool
		mapErr := json.Unmarshal([]byte(s), &m)
		var l methodList
		listErr := json.Unmarshal([]byte(s), &l)
		if (mapErr == nil) != (listErr == nil) {
			t.Fatalf("%s: map decoding says %v, list decoding %v", s, mapErr, listErr)
		}
		if mapErr != nil {
			return
		}
		var want []string
		for k, on := range m {
			if on {
				want = append(want, k)
			}
		}
		sort.Strings(want)
		got := slices.Clone(l.names)
		sort.Strings(got)
		got = slices.Compact(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: list %q, map %q", s, got, want)
		}
	})
}

// oldServiceNodeIn is serviceNodeIn as encoding/json decodes it by
// reflection: the path every entry took before the fast one.
type oldServiceNodeIn struct {
	ProtoCount int        `json:"proto_count"`
	LeaseID    int64      `json:"lease_id"`
	RunDate    string     `json:"run_date"`
	Methods    methodList `json:"methods"`
	Network    Network    `json:"network"`
	Kernel     Kernel     `json:"kernel"`
	Meta       Meta       `json:"meta"`
}

// trueMethods returns the names mapped to true, sorted, as ParseEntry sees them.
func trueMethods(m map[string]bool) []string {
	var names []string
	for k, on := range m {
		if on {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return names
}

// checkDecoding compares one decoding of raw with encoding/json's into the
// library's ServiceNode (want, wantErr) and with the old path (old, oldErr).
func checkDecoding(t *testing.T, how string, raw []byte, got serviceNodeIn, err error, want ServiceNode, wantErr error, old oldServiceNodeIn, oldErr error) {
	t.Helper()
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%s(%q): error %v, encoding/json says %v", how, raw, err, wantErr)
	}
	if (err == nil) != (oldErr == nil) {
		t.Fatalf("%s(%q): error %v, old path says %v", how, raw, err, oldErr)
	}
	if err != nil {
		// ParseEntry reports the message as the detail: keep it as it was.
		if o := strings.ReplaceAll(oldErr.Error(), "oldServiceNodeIn", "serviceNodeIn"); err.Error() != o {
			t.Fatalf("%s(%q): error %q, old path %q", how, raw, err, o)
		}
		return
	}
	if got.ProtoCount != want.ProtoCount || got.LeaseID != want.LeaseID || got.RunDate != want.RunDate ||
		got.Network != want.Network || got.Kernel != want.Kernel || got.Meta != want.Meta {
		t.Fatalf("%s(%q) =\n %+v\nencoding/json:\n %+v", how, raw, got, want)
	}
	names := slices.Clone(got.Methods.names)
	sort.Strings(names)
	names = slices.Compact(names)
	if w := trueMethods(want.Methods); !slices.Equal(names, w) {
		t.Fatalf("%s(%q): methods %q, encoding/json %q", how, raw, names, w)
	}
	// ParseEntry's Methods is nil exactly when these are.
	if (got.Methods.names == nil) != (old.Methods.names == nil) {
		t.Fatalf("%s(%q): methods %#v, old path %#v", how, raw, got.Methods.names, old.Methods.names)
	}
}

// fastDecodeSeeds are entries as writers produce them and the corners where
// encoding/json's behaviour is easy to get wrong.
var fastDecodeSeeds = []string{
	// The wire fixtures (the shared fixtures, configmaps-go-micro.yaml).
	`{"proto_count":1,"lease_id":1795695862716099677,"run_date":"2026-11-26 12:24:22","methods":{"/acme.order.v1.OrderService/Create":true,"/acme.order.v1.OrderService/Get":true},"network":{"sn":"firefly-main-network","internal":"order-service.shop.svc.cluster.local:9090","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"order-service","version":"v1"}}`,
	`{"proto_count":1,"lease_id":1795695862709570046,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v1"}}`,
	`{"proto_count":1,"lease_id":1795695862712874049,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true,"/acme.user.v1.UserService/UpdateProfile":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v2"}}`,
	`{"proto_count":1,"lease_id":1795695862719322195,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/Login":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"staging","app_id":"user-service","version":"v3"}}`,
	// Layout.
	"{\n  \"proto_count\" : 1 ,\n\t\"lease_id\":\r\n 7,\"methods\" : { \"/a.B/C\" : true , \"/a.B/D\" :false } , \"meta\" : { \"app_id\" : \"a\" } \n}\n",
	` {} `, `{}`, `{ }`, `{"methods":{}}`, `{"methods":{ }}`, `{"network":{},"kernel":{},"meta":{}}`,
	// Not objects, not JSON, trailing data.
	``, ` `, `null`, ` null `, `[]`, `[{"lease_id":1}]`, `"x"`, `1`, `true`, `{`, `}`, `{"lease_id":1}}`, `{"lease_id":1}]`,
	`{"lease_id":1} x`, `{"lease_id":1}{}`, `{"lease_id":1},`, `{"lease_id":1,}`, `{,"lease_id":1}`, `{"lease_id" 1}`,
	`{"lease_id":1 "proto_count":1}`, `{"lease_id"::1}`, `{lease_id:1}`, `{'lease_id':1}`, "\xef\xbb\xbf{}", "{}\x00",
	// Integers.
	`{"lease_id":1e3}`, `{"lease_id":1E3}`, `{"lease_id":1.0}`, `{"lease_id":-0}`, `{"lease_id":0}`, `{"lease_id":-0.0}`,
	`{"lease_id":9223372036854775807}`, `{"lease_id":9223372036854775808}`, `{"lease_id":-9223372036854775808}`,
	`{"lease_id":-9223372036854775809}`, `{"lease_id":18446744073709551616}`, `{"lease_id":99999999999999999999}`,
	`{"lease_id":1000000000000000000}`, `{"lease_id":9999999999999999999}`, `{"lease_id":-1}`, `{"lease_id":01}`,
	`{"lease_id":-}`, `{"lease_id":+1}`, `{"lease_id":1.}`, `{"lease_id":.5}`, `{"lease_id":1e}`, `{"lease_id":1e+}`,
	`{"lease_id":0x10}`, `{"lease_id":"1"}`, `{"lease_id":true}`, `{"lease_id":[1]}`, `{"lease_id":{}}`, `{"lease_id":Infinity}`,
	`{"lease_id":NaN}`, `{"lease_id":1-2}`, `{"proto_count":2147483648}`, `{"proto_count":-9223372036854775808}`, `{"proto_count":1.5}`,
	// Strings.
	`{"run_date":"2026-11-26 12:24:22"}`, `{"run_date":"2026-11-26\u002012:24:22"}`, `{"run_date":"\""}`, `{"run_date":"\\"}`,
	`{"run_date":"\/"}`, `{"run_date":"\x"}`, `{"run_date":"\u12"}`, `{"run_date":"\ud800"}`, `{"run_date":"é"}`,
	"{\"run_date\":\"\xff\"}", "{\"run_date\":\"\xed\xa0\x80\"}", "{\"run_date\":\"\xef\xbf\xbd\"}", "{\"run_date\":\"a\tb\"}",
	"{\"run_date\":\"\x7f\"}", `{"run_date":"unterminated}`, `{"run_date":1}`, `{"meta":{"app_id":"\u0061"}}`,
	`{"network":{"internal":"svc:80","sn":"n","external":""}}`, `{"kernel":{"language":"Go","version":7}}`,
	// Member names: case, escapes, folding of non-ASCII letters.
	`{"META":{"APP_ID":"a","Env":"prod"},"Lease_ID":5}`, `{"Meta":{"app_id":"a"},"meta":{"env":"e"}}`,
	`{"lease\u005fid":5}`, `{"lease_id\u0000":5}`, "{\"\xc5\xbfn\":1,\"network\":{\"\xc5\xbfn\":\"x\"}}",
	"{\"network\":{\"\xe2\x84\xaaey\":1,\"SN\":\"x\"}}", "{\"\xe2\x84\xaaernel\":{\"language\":\"Go\"}}", "{\"\xffmeta\":{}}",
	`{"":1}`, `{"lease_id ":5}`, `{"leaseid":5}`, `{"proto_count":1,"PROTO_COUNT":2}`,
	// Duplicates: the last scalar wins, repeated objects merge.
	`{"lease_id":1,"lease_id":2}`, `{"lease_id":1,"LEASE_ID":null}`, `{"meta":{"env":"a","app_id":"x"},"meta":{"env":"b"}}`,
	`{"network":{"sn":"a","sn":"b"}}`, `{"network":{"sn":"a","SN":"b"}}`,
	// A repeated methods member adds to the library's map; methodList once replaced the names.
	`{"methods":{"/a.B/C":true},"methods":{"/a.B/D":true}}`, `{"methods":{"/a.B/C":true},"methods":{}}`,
	`{"methods":{"/a.B/C":true},"METHODS":{"/a.B/C":false}}`, `{"methods":{"/a.B/C":true},"methods":null,"methods":{"/a.B/D":true}}`,
	`{"methods":{"/a.B/C":true,"/a.B/C":false}}`,
	`{"methods":{"/a.B/C":false,"/a.B/C":true}}`, `{"methods":{"/a.B/C":true,"/a.B/C":true}}`, `{"methods":{"/a.B/C":true,"/a.B/C":null}}`,
	// Nulls.
	`{"lease_id":null}`, `{"run_date":null}`, `{"methods":null}`, `{"network":null}`, `{"kernel":null}`, `{"meta":null}`,
	`{"meta":{"app_id":null}}`, `{"methods":{"/a.B/C":null}}`, `{"unknown":null}`,
	// Wrong types.
	`{"network":[]}`, `{"meta":"prod"}`, `{"methods":[]}`, `{"methods":["/a.B/C"]}`, `{"methods":{"/a.B/C":1}}`,
	`{"methods":{"/a.B/C":"true"}}`, `{"methods":true}`, `{"meta":{"app_id":["a"]}}`, `{"meta":{"app_id":{}}}`,
	`{"kernel":{"version":true}}`, `{"lease_id":"x","methods":{"a":1}}`, `{"methods":{"a":1},"lease_id":"x"}`,
	// Method names.
	`{"methods":{"/a\u002fB/C":true,"q\"uote":true}}`, `{"methods":{"\\":true}}`, "{\"methods\":{\"/a.B/\xff\":true}}",
	`{"methods":{"/a.B/Ö":true}}`, `{"methods":{"":true}}`, `{"methods":{"a":tru}}`, `{"methods":{"a":truex}}`,
	`{"methods":{"a":true,}}`, `{"methods":{"a"}}`, `{"methods":{"a":true "b":true}}`, `{"methods":{a:true}}`,
	// registry-api's keepalive member: read leniently, the last one winning.
	`{"keepalive":"service","lease_id":3}`, `{"keepalive":5,"lease_id":3}`, `{"KeepAlive":"service"}`,
	`{"keepalive":"service","keepalive":null}`, `{"keepalive":"pod","KEEPALIVE":"service"}`, `{"keepalive":"serv\u0069ce"}`,
	`{"keepalive":{"x":"service"}}`, `{"keepalive":"service"`,
	// Unknown members, nested.
	`{"registered_by":{"username":"system:serviceaccount:shop:order","pod":{"name":"p","uid":"u"}},"keepalive":"pod","lease_id":3}`,
	`{"x":[1,-2.5e+3,"s\n\u00e9",true,false,null,{"a":[[]]}],"lease_id":3}`, `{"x":{"a":1,"a":2},"lease_id":3}`,
	`{"x":[1,]}`, `{"x":[,1]}`, `{"x":[1 2]}`, `{"x":{"a"}}`, `{"x":{"a":}}`, `{"x":{1:2}}`, `{"x":"\q"}`, `{"x":1.}`,
	`{"x":-01}`, `{"x":1e5.0}`, `{"x":"a` + "\x01" + `"}`, "{\"x\":\"\xff\"}", `{"x":tRue}`, `{"x":nul}`,
	`{"network":{"zone":{"a":[1,{"b":null}]},"sn":"n"},"kernel":{"arch":"arm64"},"meta":{"owner":"team-a"}}`,
	`{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
	`{"x":` + strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70) + `}`,
	`{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
}

// The fast path must decode every input exactly as encoding/json does,
// error or not, and must not need encoding/json to have checked the input
// first (decode is also called on raw bytes).
func FuzzFastDecodeMatchesEncodingJSON(f *testing.F) {
	for _, s := range fastDecodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want ServiceNode
		wantErr := json.Unmarshal(raw, &want)
		var old oldServiceNodeIn
		oldErr := json.Unmarshal(raw, &old)

		// As ParseEntry decodes, interning.
		got := serviceNodeIn{Methods: methodList{intern: NewInterner()}}
		err := json.Unmarshal(raw, &got)
		checkDecoding(t, "Unmarshal", raw, got, err, want, wantErr, old, oldErr)

		// Straight on unchecked bytes, without an Interner.
		var direct serviceNodeIn
		err = direct.decode(raw)
		checkDecoding(t, "decode", raw, direct, err, want, wantErr, old, oldErr)

		// registry-api's keepalive member reads alike both ways.
		var slow serviceNodeIn
		if slowErr := slow.decodeSlow(raw); err == nil && slowErr == nil && direct.Keepalive != slow.Keepalive {
			t.Fatalf("decode(%q): keepalive %q, encoding/json %q", raw, direct.Keepalive, slow.Keepalive)
		}

		// Giving up leaves the target as it was, for encoding/json to fill.
		var fast serviceNodeIn
		if !fast.decodeFast(raw) && !reflect.DeepEqual(fast, serviceNodeIn{}) {
			t.Fatalf("decodeFast(%q) gave up but wrote %+v", raw, fast)
		}
	})
}

// The inputs that writers produce must take the fast path: the fuzz test
// cannot tell a fast path that always gives up from a correct one.
func TestDecodeFastTakesCommonShapes(t *testing.T) {
	fast := []string{
		fastDecodeSeeds[0], fastDecodeSeeds[1], fastDecodeSeeds[2], fastDecodeSeeds[3],
		"{\n  \"proto_count\" : 1 ,\n\t\"lease_id\":\r\n 7,\"methods\" : { \"/a.B/C\" : true , \"/a.B/D\" :false } , \"meta\" : { \"app_id\" : \"a\" } \n}\n",
		`{}`, ` { } `, `{"methods":{}}`, `{"lease_id":-0}`, `{"lease_id":-9223372036854775808}`, `{"lease_id":9223372036854775807}`,
		`{"META":{"APP_ID":"a","Env":"prod"},"Lease_ID":5}`, `{"run_date":"é"}`, `{"methods":{"/a.B/C":true,"/a.B/C":false}}`,
		`{"methods":{"/a.B/C":null}}`, `{"unknown":null}`, `{"x":{"a":1,"a":2},"lease_id":3}`,
		`{"registered_by":{"username":"system:serviceaccount:shop:order","pod":{"name":"p","uid":"u"}},"keepalive":"pod","lease_id":3}`,
		`{"x":[1,-2.5e+3,"s\n\u00e9",true,false,null,{"a":[[]]}],"lease_id":3}`,
		`{"network":{"zone":{"a":[1,{"b":null}]},"sn":"n"},"kernel":{"arch":"arm64"},"meta":{"owner":"team-a"}}`,
	}
	for _, s := range fast {
		if sn := (serviceNodeIn{}); !sn.decodeFast([]byte(s)) {
			t.Errorf("decodeFast(%q) gave up", s)
		}
	}
	slow := []string{
		``, `null`, `[]`, `{"lease_id":1}}`, `{"lease_id":1e3}`, `{"lease_id":1.0}`, `{"lease_id":9223372036854775808}`,
		`{"lease_id":1,"lease_id":2}`, `{"lease\u005fid":5}`, `{"run_date":"\/"}`, "{\"run_date\":\"\xff\"}",
		`{"meta":null}`, `{"methods":null}`, `{"network":[]}`, "{\"\xc5\xbfn\":1}",
	}
	for _, s := range slow {
		if sn := (serviceNodeIn{}); sn.decodeFast([]byte(s)) {
			t.Errorf("decodeFast(%q) did not give up", s)
		}
	}
}

// Errors read as they did when encoding/json decoded serviceNodeIn itself.
func TestParseEntryErrorDetails(t *testing.T) {
	tests := []struct{ raw, detail string }{
		{`[]`, "json: cannot unmarshal array into Go value of type model.serviceNodeIn"},
		{`{"lease_id":1.7e18}`, "json: cannot unmarshal number 1.7e18 into Go struct field serviceNodeIn.lease_id of type int64"},
		{`{"lease_id":9223372036854775808}`, "json: cannot unmarshal number 9223372036854775808 into Go struct field serviceNodeIn.lease_id of type int64"},
		{`{"network":[]}`, "json: cannot unmarshal array into Go struct field serviceNodeIn.network of type model.Network"},
		{`{"meta":{"app_id":1}}`, "json: cannot unmarshal number into Go struct field Meta.meta.app_id of type string"},
		{`{"methods":{"a":1}}`, `methods: value of "a" is not a boolean`},
		{`{"lease_id":1}}`, "invalid character '}' after top-level value"},
	}
	for _, tt := range tests {
		_, _, err := ParseEntry("firefly", "prod", "k", []byte(tt.raw), ParseOptions{Intern: NewInterner()})
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Reason != ReasonInvalidJSON || ee.Detail != tt.detail {
			t.Errorf("ParseEntry(%s) = %v, want %s: %s", tt.raw, err, ReasonInvalidJSON, tt.detail)
		}
	}
}

// Every instance repeats its network, kernel and meta strings: one copy of
// each serves them all.
func TestParseEntryInternsStrings(t *testing.T) {
	in := NewInterner()
	parse := func(raw string) *Node {
		t.Helper()
		n, _, err := ParseEntry("firefly", "prod", "k", []byte(raw), ParseOptions{Intern: in})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, b := parse(fastDecodeSeeds[1]), parse(fastDecodeSeeds[2])
	same := func(what, x, y string) {
		if x != y || unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("%s: %q and %q are not one copy", what, x, y)
		}
	}
	same("env", a.Env, b.Env)
	same("app_id", a.AppID, b.AppID)
	same("network.sn", a.Network.SN, b.Network.SN)
	same("network.internal", a.Network.Internal, b.Network.Internal)
	same("network.external", a.Network.External, b.Network.External)
	same("kernel.language", a.Kernel.Language, b.Kernel.Language)
	same("kernel.version", a.Kernel.Version, b.Kernel.Version)
	same("method", a.Methods[0], b.Methods[0])
	c := parse(strings.Replace(fastDecodeSeeds[1], `"version":"v1"}}`, `"version":"v2"}}`, 1))
	same("meta.version", b.Version, c.Version)
}
