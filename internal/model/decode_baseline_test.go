package model

// Library baselines for the hand-written entry decoder (decode.go): the same
// entries decoded by encoding/json and by encoding/json/v2
// (github.com/go-json-experiment/json), each into a narrow type with a custom
// unmarshaler for methods, then judged by the same rules as ParseEntry
// (serviceNodeIn.node). TestBaselinesMatchParseEntry keeps the comparison
// honest; the benchmarks are recorded in BENCHMARKS.md ("Entry decoding:
// hand-written vs library").

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"sigs.k8s.io/yaml"
)

// entryParser is ParseEntry's signature: each decoder under comparison.
type entryParser func(namespace, env, key string, raw []byte, opts ParseOptions) (*Node, []string, error)

var entryParsers = []struct {
	name  string
	parse entryParser
}{
	{"hand-written", ParseEntry},
	{"encoding-json", parseEntryJSONv1},
	{"json-v2", parseEntryJSONv2},
}

// internStr is Interner.String for a string: without a copy when the string
// is already known.
func internStr(in *Interner, s string) string {
	return in.String(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// internFields shares the strings the hand-written decoder interns as it
// reads, so that the index holds the same memory whichever decoder built it.
func (sn *serviceNodeIn) internFields(in *Interner) {
	for _, s := range []*string{&sn.Network.SN, &sn.Network.Internal, &sn.Network.External,
		&sn.Kernel.Language, &sn.Kernel.Version, &sn.Meta.Env, &sn.Meta.AppID, &sn.Meta.Version} {
		*s = internStr(in, *s)
	}
}

// --- encoding/json ---

// entryJSONv1 is the narrow type encoding/json decodes an entry into.
type entryJSONv1 struct {
	ProtoCount int           `json:"proto_count"`
	LeaseID    int64         `json:"lease_id"`
	RunDate    string        `json:"run_date"`
	Methods    methodsJSONv1 `json:"methods"`
	Network    Network       `json:"network"`
	Kernel     Kernel        `json:"kernel"`
	Meta       Meta          `json:"meta"`
}

// methodsJSONv1 decodes methods by the library's map[string]bool and keeps
// the names mapped to true; a repeated methods member adds to the names
// before it, as it adds to the map.
type methodsJSONv1 struct {
	names  []string
	intern *Interner
}

func (l *methodsJSONv1) UnmarshalJSON(b []byte) error {
	var m map[string]bool
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil { // null
		l.names = nil
		return nil
	}
	if l.names == nil {
		l.names = make([]string, 0, len(m))
	}
	for k, on := range m {
		l.names = setMethod(l.names, internStr(l.intern, k), on)
	}
	return nil
}

func parseEntryJSONv1(namespace, env, key string, raw []byte, opts ParseOptions) (*Node, []string, error) {
	e := entryJSONv1{Methods: methodsJSONv1{intern: opts.Intern}}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, nil, &EntryError{ReasonInvalidJSON, err.Error()}
	}
	sn := serviceNodeIn{ProtoCount: e.ProtoCount, LeaseID: e.LeaseID, RunDate: e.RunDate,
		Methods: methodList{names: e.Methods.names}, Network: e.Network, Kernel: e.Kernel, Meta: e.Meta}
	sn.internFields(opts.Intern)
	return sn.node(namespace, env, key, opts)
}

// --- encoding/json/v2 ---

// entryJSONv2 is the narrow type encoding/json/v2 decodes an entry into.
type entryJSONv2 struct {
	ProtoCount int           `json:"proto_count"`
	LeaseID    int64         `json:"lease_id"`
	RunDate    string        `json:"run_date"`
	Methods    methodsJSONv2 `json:"methods"`
	Network    Network       `json:"network"`
	Kernel     Kernel        `json:"kernel"`
	Meta       Meta          `json:"meta"`
}

// jsonV2Options are v2's defaults loosened where v1, and so the wire as
// registry-api reads it today, accepts more: repeated member names,
// invalid UTF-8 (replaced), member names in another case.
var jsonV2Options = jsonv2.JoinOptions(
	jsontext.AllowDuplicateNames(true),
	jsontext.AllowInvalidUTF8(true),
	jsonv2.MatchCaseInsensitiveNames(true),
)

// methodsJSONv2 reads methods token by token, without a map: names are
// interned straight from the input.
type methodsJSONv2 struct {
	names  []string
	intern *Interner
}

func (l *methodsJSONv2) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		l.names = nil
		return err
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return fmt.Errorf("methods: a JSON %s, not an object", tok.Kind())
	}
	if l.names == nil {
		l.names = make([]string, 0, 16)
	}
	for dec.PeekKind() != '}' {
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		name := l.name(v)
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		switch tok.Kind() {
		case 't':
			l.names = setMethod(l.names, name, true)
		case 'f', 'n': // null is false in the library's map[string]bool
			l.names = setMethod(l.names, name, false)
		default:
			return fmt.Errorf("methods: value of %q is not a boolean", name)
		}
	}
	_, err = dec.ReadToken()
	return err
}

// name is the member name v (a quoted JSON string) stands for.
func (l *methodsJSONv2) name(v jsontext.Value) string {
	raw := v[1 : len(v)-1]
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return l.intern.String(raw)
	}
	// The decoder has read v as a string, so the one error left is invalid
	// UTF-8, which AllowInvalidUTF8 accepts: v1 replaces it too.
	s, _ := jsontext.AppendUnquote(nil, v)
	return l.intern.String(s)
}

func parseEntryJSONv2(namespace, env, key string, raw []byte, opts ParseOptions) (*Node, []string, error) {
	e := entryJSONv2{Methods: methodsJSONv2{intern: opts.Intern}}
	if err := jsonv2.Unmarshal(raw, &e, jsonV2Options); err != nil {
		return nil, nil, &EntryError{ReasonInvalidJSON, err.Error()}
	}
	sn := serviceNodeIn{ProtoCount: e.ProtoCount, LeaseID: e.LeaseID, RunDate: e.RunDate,
		Methods: methodList{names: e.Methods.names}, Network: e.Network, Kernel: e.Kernel, Meta: e.Meta}
	sn.internFields(opts.Intern)
	return sn.node(namespace, env, key, opts)
}

// --- correctness ---

// baselineCase is one input ParseEntry and a baseline must agree on.
type baselineCase struct {
	name, env, key string
	raw            []byte
}

// wireFixtures are the entries of the shared fixtures' configmaps-go-micro.yaml
// (the copy in internal/store/testdata).
func wireFixtures(t *testing.T) []baselineCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "store", "testdata", "configmaps-go-micro.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []baselineCase
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var cm struct {
			Metadata struct{ Name string } `json:"metadata"`
			Data     map[string]string     `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(strings.TrimPrefix(doc, "---\n")), &cm); err != nil {
			t.Fatal(err)
		}
		env, ok := EnvFromConfigMapName(cm.Metadata.Name)
		if !ok {
			t.Fatalf("fixture ConfigMap %q is not a registry ConfigMap", cm.Metadata.Name)
		}
		for k, v := range cm.Data {
			out = append(out, baselineCase{"fixture " + k, env, k, []byte(v)})
		}
	}
	if len(out) != 4 {
		t.Fatalf("%d fixture entries, want 4", len(out))
	}
	return out
}

// fuzzCorpus are the saved fuzz inputs in testdata/fuzz: whole entries for
// FuzzFields, methods objects (placed in an entry) for FuzzMethodListMatchesMap.
func fuzzCorpus(t *testing.T) []baselineCase {
	t.Helper()
	var out []baselineCase
	for _, target := range []string{"FuzzFields", "FuzzMethodListMatchesMap"} {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no corpus for %s: %v", target, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 2 || lines[0] != "go test fuzz v1" {
				t.Fatalf("%s: not a one-argument corpus file", f)
			}
			arg := strings.TrimSuffix(lines[1], ")")
			arg = strings.TrimPrefix(strings.TrimPrefix(arg, "[]byte("), "string(")
			s, err := strconv.Unquote(arg)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if target == "FuzzMethodListMatchesMap" {
				s = withMethods(s)
			}
			out = append(out, baselineCase{f, "prod", "user-service.1795695862709570046", []byte(s)})
		}
	}
	return out
}

// fixtureEntry1 is the wire fixture user-service.1795695862709570046.
const fixtureEntry1 = `{"proto_count":1,"lease_id":1795695862709570046,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v1"}}`

// withMethods is fixtureEntry1 with methods as given.
func withMethods(methods string) string {
	const old = `{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true}`
	return strings.Replace(fixtureEntry1, old, methods, 1)
}

// cornerCases are the decoder's own corners (fastDecodeSeeds) and method
// objects easy to get wrong, each placed in an entry.
func cornerCases() []baselineCase {
	var out []baselineCase
	for i, s := range fastDecodeSeeds {
		out = append(out, baselineCase{fmt.Sprintf("seed %d %q", i, s), "prod", "a.1", []byte(s)})
	}
	for _, m := range []string{
		`{"/a.B/C":true,"/a.B/D":false}`, `{}`, `null`, `{"/a.B/C":true,"/a.B/C":false}`, `{"/a.B/C":false,"/a.B/C":true}`,
		`{ "/a\u002eB/C" : true , "/q\"uote/X": true }`, `{"/a.B/C":1}`, `{"/a.B/C":"true"}`, `[]`, `{"/a.B/C":null}`,
		`{"\\":true}`, "{\"\xc7\":true}", `{"/a.B/C":true,"/a.B/C":true}`, `{"/a.B/C":true,}`,
	} {
		out = append(out, baselineCase{"methods " + m, "prod", "user-service.1795695862709570046", []byte(withMethods(m))})
	}
	return out
}

// sameResult reports how got differs from want, the hand-written result.
func sameResult(wantNode, gotNode *Node, wantWarn, gotWarn []string, wantErr, gotErr error) string {
	var we, ge *EntryError
	errors.As(wantErr, &we)
	errors.As(gotErr, &ge)
	switch {
	case (we == nil) != (ge == nil):
		return fmt.Sprintf("error %v, ParseEntry %v", gotErr, wantErr)
	case we != nil && we.Reason != ge.Reason:
		return fmt.Sprintf("reason %s, ParseEntry %s", ge.Reason, we.Reason)
	case !reflect.DeepEqual(gotNode, wantNode):
		return fmt.Sprintf("node\n %#v\nParseEntry\n %#v", gotNode, wantNode)
	case !slices.Equal(gotWarn, wantWarn):
		return fmt.Sprintf("warnings %q, ParseEntry %q", gotWarn, wantWarn)
	}
	return ""
}

// sharesStrings reports whether b holds the very strings of a, as nodes parsed
// with one Interner do: the index's memory does not depend on the decoder.
func sharesStrings(a, b *Node) bool {
	same := func(x, y string) bool { return x == "" || unsafe.StringData(x) == unsafe.StringData(y) }
	for i := range a.Methods {
		if !same(a.Methods[i], b.Methods[i]) {
			return false
		}
	}
	return same(a.AppID, b.AppID) && same(a.Version, b.Version) && same(a.Network.SN, b.Network.SN) &&
		same(a.Network.Internal, b.Network.Internal) && same(a.Network.External, b.Network.External) &&
		same(a.Kernel.Language, b.Kernel.Language) && same(a.Kernel.Version, b.Kernel.Version)
}

// TestBaselinesMatchParseEntry checks that each baseline turns the wire
// fixtures, the fuzz corpus and the decoder's corners into the same nodes
// (for the fixtures, sharing interned strings the same way), warnings and skip reasons as
// ParseEntry (error details are the library's own words and may differ).
func TestBaselinesMatchParseEntry(t *testing.T) {
	observed := time.Date(2026, 11, 26, 12, 24, 0, 0, time.UTC)
	sets := []struct {
		name  string
		cases []baselineCase
		// shared: ParseEntry interns every string of these (its fallback
		// for unusual input interns fewer).
		shared bool
	}{
		{"wire fixtures", wireFixtures(t), true},
		{"fuzz corpus", fuzzCorpus(t), false},
		{"corners", cornerCases(), false},
	}
	for _, p := range entryParsers[1:] {
		t.Run(p.name, func(t *testing.T) {
			for _, set := range sets {
				for _, c := range set.cases {
					for _, opts := range []ParseOptions{{}, {Intern: NewInterner(), ObservedAt: observed}} {
						wn, ww, we := ParseEntry("ns", c.env, c.key, c.raw, opts)
						gn, gw, ge := p.parse("ns", c.env, c.key, c.raw, opts)
						if diff := sameResult(wn, gn, ww, gw, we, ge); diff != "" {
							t.Errorf("%s: %s: %s", set.name, c.name, diff)
						} else if set.shared && opts.Intern != nil && wn != nil && !sharesStrings(wn, gn) {
							t.Errorf("%s: %s: strings not interned as ParseEntry's", set.name, c.name)
						}
					}
				}
			}
		})
	}
}

// --- benchmarks ---

// The registry of internal/watch's benchmarks: 50 envs × 20 apps × 10
// instances = 10,000 instances, 20 methods each.
const (
	benchEnvs            = 50
	benchAppsPerEnv      = 20
	benchInstancesPerApp = 10
	benchMethodsPerApp   = 20
	benchFirstLease      = 1795695862709570046
)

var benchTime = time.Date(2026, 11, 26, 12, 24, 22, 0, time.UTC)

// benchEnvData is one env's ConfigMap data.
type benchEnvData struct {
	name string
	keys []string
	raws [][]byte
}

// benchLease is the lease id of instance i of app a in env e.
func benchLease(e, a, i int) int64 { return int64(benchFirstLease + e*100000 + a*1000 + i) }

// benchEntryValue is an entry as internal/watch's benchmarks write it, with
// 20 valid method names of the app's own service.
func benchEntryValue(env string, a int, lease int64, runDate time.Time) []byte {
	app := fmt.Sprintf("app-%02d", a)
	methods := make([]string, benchMethodsPerApp)
	for m := range methods {
		methods[m] = fmt.Sprintf(`"/acme.app%02d.v1.Service/Method%02d":true`, a, m)
	}
	return fmt.Appendf(nil, `{"proto_count":1,"lease_id":%d,"run_date":%q,"methods":{%s},"network":{"sn":"n","internal":"%s:8080","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":%q,"app_id":%q,"version":"v1"}}`,
		lease, runDate.UTC().Format(time.DateTime), strings.Join(methods, ","), app, env, app)
}

func benchRegistry() []benchEnvData {
	envs := make([]benchEnvData, benchEnvs)
	for e := range envs {
		d := &envs[e]
		d.name = fmt.Sprintf("env-%02d", e)
		for a := range benchAppsPerEnv {
			for i := range benchInstancesPerApp {
				lease := benchLease(e, a, i)
				d.keys = append(d.keys, CanonicalKey(fmt.Sprintf("app-%02d", a), lease))
				d.raws = append(d.raws, benchEntryValue(d.name, a, lease, benchTime.Add(-time.Duration(i)*time.Second)))
			}
		}
	}
	return envs
}

// benchParse is what the poller keeps of one parsed entry.
func benchParse(parse entryParser, env, key string, raw []byte, opts ParseOptions) Entry {
	node, warnings, err := parse("firefly", env, key, raw, opts)
	e := Entry{Namespace: "firefly", Key: key, Node: node, Warnings: warnings}
	if err != nil {
		e.Err = err.(*EntryError)
	}
	return e
}

// BenchmarkEntryDecoders is one entry of 20 methods, with the poller's
// interner, by each decoder.
func BenchmarkEntryDecoders(b *testing.B) {
	raw := benchEntryValue("env-00", 7, benchLease(0, 7, 3), benchTime)
	key := CanonicalKey("app-07", benchLease(0, 7, 3))
	for _, p := range entryParsers {
		b.Run(p.name, func(b *testing.B) {
			opts := ParseOptions{Intern: NewInterner(), ObservedAt: benchTime}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if e := benchParse(p.parse, "env-00", key, raw, opts); e.Err != nil || len(e.Warnings) > 0 || len(e.Node.Methods) != benchMethodsPerApp {
					b.Fatalf("parse: %+v", e)
				}
			}
		})
	}
}

// BenchmarkColdStartDecoders is a cold start without the poller around it:
// every one of the 10,000 entries parsed with a fresh interner, every env
// indexed by BuildEnv.
func BenchmarkColdStartDecoders(b *testing.B) {
	envs := benchRegistry()
	for _, p := range entryParsers {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				opts := ParseOptions{Intern: NewInterner(), ObservedAt: benchTime}
				nodes, methods := 0, 0
				for _, d := range envs {
					entries := make([]Entry, len(d.raws))
					for i, raw := range d.raws {
						entries[i] = benchParse(p.parse, d.name, d.keys[i], raw, opts)
					}
					idx := BuildEnv(d.name, entries)
					nodes += len(idx.Nodes)
					methods += len(idx.MethodNames)
				}
				if nodes != benchEnvs*benchAppsPerEnv*benchInstancesPerApp || methods != benchEnvs*benchAppsPerEnv*benchMethodsPerApp {
					b.Fatalf("%d nodes and %d methods indexed", nodes, methods)
				}
			}
		})
	}
}

// BenchmarkHeartbeatReindexDecoders is one heartbeat without the poller
// around it: one instance's entry parsed again with a new run_date and its
// env (200 instances) indexed by BuildEnv.
func BenchmarkHeartbeatReindexDecoders(b *testing.B) {
	d := benchRegistry()[benchEnvs/2]
	const app, inst = 7, 3
	at := app*benchInstancesPerApp + inst
	lease := benchLease(benchEnvs/2, app, inst)
	beats := [][]byte{
		benchEntryValue(d.name, app, lease, benchTime.Add(time.Second)),
		benchEntryValue(d.name, app, lease, benchTime.Add(2*time.Second)),
	}
	for _, p := range entryParsers {
		b.Run(p.name, func(b *testing.B) {
			opts := ParseOptions{Intern: NewInterner(), ObservedAt: benchTime}
			entries := make([]Entry, len(d.raws))
			for i, raw := range d.raws {
				entries[i] = benchParse(p.parse, d.name, d.keys[i], raw, opts)
			}
			var idx *EnvIndex
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				entries[at] = benchParse(p.parse, d.name, d.keys[at], beats[n%2], opts)
				idx = BuildEnv(d.name, entries)
			}
			if got := idx.Apps["app-07"].Nodes[0].Key; got != d.keys[at] || len(idx.MethodNames) != benchAppsPerEnv*benchMethodsPerApp {
				b.Fatalf("freshest node = %s, want the one that heartbeat; %d methods", got, len(idx.MethodNames))
			}
		})
	}
}
