package model_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

func keys(f model.Fields) []string {
	out := make([]string, len(f))
	for i, fl := range f {
		out[i] = fl.Key
	}
	return out
}

func mustDecode(t testing.TB, raw string) model.Fields {
	t.Helper()
	f, err := model.DecodeFields([]byte(raw))
	if err != nil {
		t.Fatalf("DecodeFields(%s): %v", raw, err)
	}
	return f
}

func TestDecodeFieldsRoundTripFixtures(t *testing.T) {
	wantKeys := "proto_count,lease_id,run_date,methods,network,kernel,meta"
	for _, e := range fixtureEntries {
		f := mustDecode(t, e.value)
		if got := strings.Join(keys(f), ","); got != wantKeys {
			t.Errorf("%s: keys %s, want %s", e.key, got, wantKeys)
		}
		if got := string(f.Bytes()); got != e.value {
			t.Errorf("%s: Bytes() =\n %s\nwant\n %s", e.key, got, e.value)
		}
	}
	f := mustDecode(t, fixtureUser1)
	if v, ok := f.Get("lease_id"); !ok || string(v) != "1795695862709570046" {
		t.Errorf(`Get("lease_id") = %s, %v`, v, ok)
	}
	if v, ok := f.Get("meta"); !ok || string(v) != `{"env":"prod","app_id":"user-service","version":"v1"}` {
		t.Errorf(`Get("meta") = %s, %v`, v, ok)
	}
	if v, ok := f.Get("app_id"); ok {
		t.Errorf(`Get("app_id") = %s: nested members are not top-level`, v)
	}
}

func TestDecodeFields(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		keys  string
		bytes string
	}{
		{"empty object", `{}`, "", `{}`},
		{"space around", " \n\t{ } \r\n", "", `{}`},
		{"compacts space", `{ "a" : 1 , "b" : [ 1 , { "c" : null } ] }`, "a,b", `{"a":1,"b":[1,{"c":null}]}`},
		{"keeps order", `{"z":1,"a":2,"m":3}`, "z,a,m", `{"z":1,"a":2,"m":3}`},
		{"keeps number text", `{"big":1795695862709570046,"f":1.50,"e":1E+2}`, "big,f,e", `{"big":1795695862709570046,"f":1.50,"e":1E+2}`},
		{"keeps string escapes", `{"s":"a\u00e9\n\"<"}`, "s", `{"s":"a\u00e9\n\"<"}`},
		{"space inside strings survives", `{"s":"a  b"}`, "s", `{"s":"a  b"}`},
		// Like encoding/json (and so the library), the last duplicate wins.
		{"duplicate keys", `{"a":1,"b":2,"a":3}`, "a,b", `{"a":3,"b":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustDecode(t, tt.in)
			if got := strings.Join(keys(f), ","); got != tt.keys {
				t.Errorf("keys %q, want %q", got, tt.keys)
			}
			if got := string(f.Bytes()); got != tt.bytes {
				t.Errorf("Bytes() = %s, want %s", got, tt.bytes)
			}
		})
	}
}

func TestDecodeFieldsRejects(t *testing.T) {
	for _, in := range []string{
		``, ` `, `null`, `true`, `1`, `"s"`, `[]`, `[{"a":1}]`,
		`{`, `{"a"`, `{"a":`, `{"a":1`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{1:2}`, `{"a":tru}`, `{"a":1 "b":2}`,
		`{"a":1} x`, `{"a":1}{}`, `{"a":1} {"b":2}`, `{"a":1}}`, `{}}`, `{"a":1}]`, `{"a":1},`, `{"a":1} 1`, `{"a":1}"`,
	} {
		if f, err := model.DecodeFields([]byte(in)); err == nil {
			t.Errorf("DecodeFields(%s) = %q, want an error", in, f)
		}
	}
}

func TestFieldsSetDelete(t *testing.T) {
	const in = `{"a":1,"b":"x","c":[1],"d":{"e":true}}`
	tests := []struct {
		name string
		edit func(*model.Fields) error
		want string
	}{
		{"set first", func(f *model.Fields) error { f.Set("a", json.RawMessage(`2`)); return nil }, `{"a":2,"b":"x","c":[1],"d":{"e":true}}`},
		{"set middle in place", func(f *model.Fields) error { f.Set("b", json.RawMessage(`{"y":1}`)); return nil }, `{"a":1,"b":{"y":1},"c":[1],"d":{"e":true}}`},
		{"set last", func(f *model.Fields) error { f.Set("d", json.RawMessage(`null`)); return nil }, `{"a":1,"b":"x","c":[1],"d":null}`},
		{"set new appends", func(f *model.Fields) error { f.Set("aa", json.RawMessage(`0`)); return nil }, `{"a":1,"b":"x","c":[1],"d":{"e":true},"aa":0}`},
		{"set value is compacted", func(f *model.Fields) error { f.Set("c", json.RawMessage("[ 1,\n 2 ]")); return nil }, `{"a":1,"b":"x","c":[1,2],"d":{"e":true}}`},
		{"set JSON", func(f *model.Fields) error { return f.SetJSON("b", map[string]int64{"n": 1795695862709570046}) }, `{"a":1,"b":{"n":1795695862709570046},"c":[1],"d":{"e":true}}`},
		{"set JSON new", func(f *model.Fields) error { return f.SetJSON("run_date", "2026-11-26 12:24:22") }, `{"a":1,"b":"x","c":[1],"d":{"e":true},"run_date":"2026-11-26 12:24:22"}`},
		{"set JSON unencodable", func(f *model.Fields) error {
			if err := f.SetJSON("b", func() {}); err == nil {
				t.Error("SetJSON(func) succeeded")
			}
			return nil
		}, in},
		{"delete first", func(f *model.Fields) error { f.Delete("a"); return nil }, `{"b":"x","c":[1],"d":{"e":true}}`},
		{"delete middle", func(f *model.Fields) error { f.Delete("c"); return nil }, `{"a":1,"b":"x","d":{"e":true}}`},
		{"delete last", func(f *model.Fields) error { f.Delete("d"); return nil }, `{"a":1,"b":"x","c":[1]}`},
		{"delete missing", func(f *model.Fields) error { f.Delete("e"); return nil }, in},
		{"delete then set appends", func(f *model.Fields) error { f.Delete("a"); f.Set("a", json.RawMessage(`1`)); return nil }, `{"b":"x","c":[1],"d":{"e":true},"a":1}`},
		{"delete all", func(f *model.Fields) error {
			for _, k := range []string{"d", "b", "a", "c"} {
				f.Delete(k)
			}
			return nil
		}, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustDecode(t, in)
			if err := tt.edit(&f); err != nil {
				t.Fatal(err)
			}
			if got := string(f.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFieldsBytesOfNil(t *testing.T) {
	var f model.Fields
	if got := string(f.Bytes()); got != `{}` {
		t.Errorf("Bytes() = %s", got)
	}
	f.Set("k", json.RawMessage(`"v"`))
	if got := string(f.Bytes()); got != `{"k":"v"}` {
		t.Errorf("Bytes() = %s", got)
	}
}

func TestRefreshRunDate(t *testing.T) {
	at := time.Date(2026, 11, 27, 8, 0, 5, 999_000_000, time.UTC)
	// A fixture value with fields of other writers: a top-level member between
	// the library's, and nested members the library does not know.
	withUnknown := strings.NewReplacer(
		`"run_date":`, `"registered_by":{"who":"ops","tags":["a","b"],"n":1795695862709570046},"run_date":`,
		`"version":"v1"}`, `"version":"v1","owner":{"team":"id"}}`,
		`"external":"127.0.0.1"`, `"external":"127.0.0.1","zone":null`,
	).Replace(fixtureUser1)
	if withUnknown == fixtureUser1 || strings.Count(withUnknown, "registered_by")+strings.Count(withUnknown, "owner")+strings.Count(withUnknown, "zone") != 3 {
		t.Fatal("test setup: replacements did not apply")
	}
	tests := []struct {
		name string
		in   string
		zone *time.Location
		want string
	}{
		{"fixture UTC", fixtureUser1, nil, strings.Replace(fixtureUser1, "2026-11-26 12:24:22", "2026-11-27 08:00:05", 1)},
		{"fixture Berlin", fixtureUser1, berlin(t), strings.Replace(fixtureUser1, "2026-11-26 12:24:22", "2026-11-27 09:00:05", 1)},
		{"unknown fields survive", withUnknown, time.UTC, strings.Replace(withUnknown, "2026-11-26 12:24:22", "2026-11-27 08:00:05", 1)},
		{"RFC 3339 run_date becomes the library's", strings.Replace(fixtureUser1, "2026-11-26 12:24:22", "2026-11-26T12:24:22Z", 1), nil,
			strings.Replace(fixtureUser1, "2026-11-26 12:24:22", "2026-11-27 08:00:05", 1)},
		{"missing run_date is appended", `{"lease_id":1,"x":{}}`, nil, `{"lease_id":1,"x":{},"run_date":"2026-11-27 08:00:05"}`},
		{"non-string run_date replaced", `{"run_date":null,"x":1}`, nil, `{"run_date":"2026-11-27 08:00:05","x":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := model.RefreshRunDate([]byte(tt.in), at, tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("RefreshRunDate =\n %s\nwant\n %s", got, tt.want)
			}
		})
	}

	// The refreshed entry reads back at the new heartbeat.
	fresh, err := model.RefreshRunDate([]byte(fixtureUser1), at, berlin(t))
	if err != nil {
		t.Fatal(err)
	}
	node, warnings, err := model.ParseEntry("firefly", "prod", "user-service.1795695862709570046", fresh, model.ParseOptions{Zone: berlin(t)})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("ParseEntry(refreshed) = %v, %q", err, warnings)
	}
	if want := at.Truncate(time.Second); !node.RunDate.Equal(want) {
		t.Errorf("refreshed RunDate = %v, want %v", node.RunDate, want)
	}
}

func TestRefreshRunDateRejects(t *testing.T) {
	for _, in := range []string{``, `null`, `[]`, `"x"`, `{"run_date":"x"`, fixtureUser1 + ` x`, fixtureUser1 + `}`, fixtureUser1 + fixtureUser1} {
		if out, err := model.RefreshRunDate([]byte(in), time.Now(), nil); err == nil {
			t.Errorf("RefreshRunDate(%.40s…) = %s, want an error", in, out)
		}
	}
}
