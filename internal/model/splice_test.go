package model

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// newDate is the run_date spliced in, and quotedDate its JSON.
const (
	newDate    = `2026-11-26 12:24:22`
	quotedDate = `"` + newDate + `"`
)

func TestSpliceRunDate(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"library entry", fixtureEntry1, "", true},
		{"white space kept", `{ "a" : [1, {"run_date":"x"}] , "run_date" : "old" , "b":{} }`,
			`{ "a" : [1, {"run_date":"x"}] , "run_date" : ` + quotedDate + ` , "b":{} }`, true},
		{"nested only", `{"meta":{"run_date":"old"}}`, "", false},
		{"name as a value", `{"a":"run_date","b":1}`, "", false},
		{"escaped quotes", `{"a":"x\"run_date\":\"y","run_date":"old\"q"}`, `{"a":"x\"run_date\":\"y","run_date":` + quotedDate + `}`, true},
		{"not a string", `{"run_date":1700000000}`, "", false},
		{"not an object", `["run_date","old"]`, "", false},
		{"truncated", `{"run_date":"old`, "", false},
		{"unbalanced", `}{"run_date":"old"}`, "", false},
		{"repeated", `{"run_date":"a","run_date":"b"}`, "", false},
		{"trailing", `{"run_date":"old"`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := spliceRunDate(tc.in, newDate)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v (%s)", ok, tc.ok, got)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	got, _ := spliceRunDate(fixtureEntry1, newDate)
	want, err := RefreshRunDate([]byte(fixtureEntry1), time.Date(2026, 11, 26, 12, 24, 22, 0, time.UTC), nil)
	if err != nil || got != string(want) {
		t.Errorf("splice and RefreshRunDate differ on a library entry:\n%s\n%s", got, want)
	}
}

// FuzzSpliceRunDate checks that on valid JSON the splice changes exactly the
// top-level run_date, and finds it whenever it is a string.
func FuzzSpliceRunDate(f *testing.F) {
	for _, s := range []string{fixtureEntry1, `{"a":{"run_date":"x"},"run_date":"y"}`, `{"run_date":null}`, `{}`, `{"b":"\\","run_date":"z"}`, `{"run_date":"a","x":1,"run_date":"b"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		fields, err := DecodeFields([]byte(in))
		out, ok := spliceRunDate(in, newDate)
		if err != nil {
			return // not an object: the caller falls back, whatever ok says
		}
		old, has := fields.Get("run_date")
		isString := has && len(bytes.TrimSpace(old)) > 0 && bytes.TrimSpace(old)[0] == '"'
		// A repeated name is left to the fallback.
		if ok != (isString && topLevelCount(t, in, "run_date") == 1) {
			t.Fatalf("ok = %v for %s", ok, in)
		}
		if !ok {
			return
		}
		got, err := DecodeFields([]byte(out))
		if err != nil {
			t.Fatalf("splice of %s made invalid JSON %s: %v", in, out, err)
		}
		fields.Set("run_date", json.RawMessage(quotedDate))
		if !bytes.Equal(got.Bytes(), fields.Bytes()) {
			t.Fatalf("splice of %s = %s, want %s", in, got.Bytes(), fields.Bytes())
		}
	})
}

// topLevelCount counts the members named name of the JSON object in.
func topLevelCount(t *testing.T, in, name string) int {
	dec := json.NewDecoder(strings.NewReader(in))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if key == name {
			n++
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return n
}
