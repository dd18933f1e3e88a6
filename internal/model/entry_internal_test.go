package model

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzEntryFactsFastMatchesSlow checks that the single-pass scan of
// ReadEntryFacts finds the same members as encoding/json whenever it answers,
// and that each member reads as encoding/json reads it.
func FuzzEntryFactsFastMatchesSlow(f *testing.F) {
	for _, s := range []string{
		fixtureEntry1, `{}`, `{"LEASE_ID":5,"Meta":{"App_Id":"a"}}`, `{"lease_id":5,"lease_id":6}`,
		`{"lease_id":"5","meta":{"app_id":7},"run_date":null}`, `{"lease_id":-0,"meta":{"env":1,"app_id":"a\u0062"}}`,
		`{"registered_by":{"username":"u","pod":{"uid":"p"}},"keepalive":"pod","x":[1,{"y":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var fast, slow [numFacts][]byte
		slowOK := factMembersSlow(raw, &slow)
		if factMembersFast(raw, &fast) {
			if !slowOK {
				t.Fatalf("fast scan accepts %q, encoding/json does not", raw)
			}
			for m := range fast {
				if !bytes.Equal(fast[m], slow[m]) {
					t.Fatalf("member %s of %q: fast %q, encoding/json %q", factNames[m], raw, fast[m], slow[m])
				}
			}
		}
		if !slowOK {
			return
		}
		var lease int64
		if json.Unmarshal(slow[factLeaseID], &lease) != nil {
			lease = 0
		}
		if got := leaseIDOf(slow[factLeaseID]); got != lease {
			t.Fatalf("leaseIDOf(%q) = %d, encoding/json %d", slow[factLeaseID], got, lease)
		}
		var meta struct {
			AppID string `json:"app_id"`
		}
		if json.Unmarshal(slow[factMeta], &meta) != nil {
			meta.AppID = ""
		}
		if got := appIDOf(slow[factMeta]); got != meta.AppID {
			t.Fatalf("appIDOf(%q) = %q, encoding/json %q", slow[factMeta], got, meta.AppID)
		}
		var runDate string
		if json.Unmarshal(slow[factRunDate], &runDate) != nil {
			runDate = ""
		}
		want, err := ParseRunDate(runDate, nil)
		if err != nil {
			want = time.Time{}
		}
		facts := EntryFacts{runDate: slow[factRunDate]}
		if got := facts.RunDate(nil); !got.Equal(want) {
			t.Fatalf("RunDate of %q = %v, encoding/json %v (%v)", slow[factRunDate], got, want, err)
		}
	})
}
