package model_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

var knownReasons = []string{
	model.ReasonInvalidJSON,
	model.ReasonMissingAppID,
	model.ReasonMissingLeaseID,
	model.ReasonEnvMismatch,
	model.ReasonBadRunDate,
}

func FuzzParseEntry(f *testing.F) {
	for _, e := range fixtureEntries {
		f.Add(e.env, e.key, []byte(e.value))
	}
	for _, raw := range []string{
		"", "null", "{}", "[]", `"x"`, "1", "{", "}",
		fixtureUser1 + "}",
		fixtureUser1 + " {}",
		`{"lease_id":1.7e18,"meta":{"env":"prod","app_id":"a"},"run_date":"2026-11-26 12:24:22"}`,
		`{"lease_id":"1","meta":{"env":"prod","app_id":"a"},"run_date":"2026-11-26 12:24:22"}`,
		`{"lease_id":1,"meta":{"env":"prod","app_id":"a"},"run_date":"2026-11-26T12:24:22+01:00","methods":{"/a.B/C":true,"x":true,"/a.B/D":false}}`,
		`{"lease_id":1,"meta":{"env":"dev","app_id":"a"},"run_date":"2026-11-26 12:24:22"}`,
		`{"lease_id":1,"meta":{"env":"prod","app_id":"a"},"run_date":"soon"}`,
	} {
		f.Add("prod", "a.1", []byte(raw))
	}
	f.Fuzz(func(t *testing.T, env, key string, raw []byte) {
		node, warnings, err := model.ParseEntry("ns", env, key, raw, model.ParseOptions{})
		if err != nil {
			var ee *model.EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("error %T %v is not an *EntryError", err, err)
			}
			if !slices.Contains(knownReasons, ee.Reason) {
				t.Fatalf("unknown reason %q", ee.Reason)
			}
			if node != nil || warnings != nil {
				t.Fatalf("node %+v / warnings %q returned with error %v", node, warnings, err)
			}
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		if raw := bytes.TrimLeft(raw, " \t\r\n"); len(raw) == 0 || raw[0] != '{' {
			t.Fatalf("accepted a non-object %q", raw)
		}
		if node == nil {
			t.Fatal("nil node without error")
		}
		if node.AppID == "" || node.LeaseID == 0 {
			t.Fatalf("accepted node without identity: %+v", node)
		}
		if node.Env != env || node.Key != key || node.Namespace != "ns" {
			t.Fatalf("node location %q/%q/%q, want ns/%q/%q", node.Namespace, node.Env, node.Key, env, key)
		}
		for i, m := range node.Methods {
			if !model.ValidMethodName(m) {
				t.Fatalf("invalid method %q kept", m)
			}
			if i > 0 && node.Methods[i-1] >= m {
				t.Fatalf("methods not sorted and unique: %q", node.Methods)
			}
		}
		canonical := key == model.CanonicalKey(node.AppID, node.LeaseID)
		if slices.Contains(warnings, model.WarnNonCanonicalKey) == canonical {
			t.Fatalf("key %q (canonical %v): warnings %q", key, canonical, warnings)
		}
		for _, w := range warnings {
			if w != model.WarnNonCanonicalKey && w != model.WarnInvalidMethod {
				t.Fatalf("unknown warning %q", w)
			}
		}
	})
}

func FuzzFields(f *testing.F) {
	for _, e := range fixtureEntries {
		f.Add([]byte(e.value))
	}
	for _, raw := range []string{
		"", "{}", " { } ", "[]", "null", `{"a":1,"a":2}`, `{"a" : [1, {"b":null}] , "c":"\u00e9\"x"}`,
		`{"a":1}}`, `{"a":1}]`, `{"a":1} x`, `{"a":1}{}`, `{"<&>":"\u2028"}`, `{"a":1e400}`,
	} {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fields, err := model.DecodeFields(raw)
		if err != nil {
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", raw, err)
		}
		if len(fields) != len(obj) {
			t.Fatalf("%d fields, encoding/json sees %d members", len(fields), len(obj))
		}
		out := fields.Bytes()
		if !json.Valid(out) {
			t.Fatalf("Bytes() = %q is not valid JSON", out)
		}
		again, err := model.DecodeFields(out)
		if err != nil {
			t.Fatalf("DecodeFields(Bytes()) = %v for %q", err, out)
		}
		if !fieldsEqual(fields, again) {
			t.Fatalf("round trip changed the fields:\n %q\n %q", fields, again)
		}
		if out2 := again.Bytes(); !bytes.Equal(out, out2) {
			t.Fatalf("Bytes() is not stable: %q then %q", out, out2)
		}
	})
}

// fieldsEqual compares members in order, values modulo insignificant space.
func fieldsEqual(a, b model.Fields) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(compact(a[i].Value), compact(b[i].Value)) {
			return false
		}
	}
	return true
}

func compact(v []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return v
	}
	return b.Bytes()
}
