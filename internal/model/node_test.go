package model_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin without relying on the host's zoneinfo

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acme/registry-api/internal/model"
)

// The values of the shared fixtures' configmaps-go-micro.yaml (also in
// internal/store/testdata), exactly as the Go registry library writes them.
const (
	fixtureOrder1 = `{"proto_count":1,"lease_id":1795695862716099677,"run_date":"2026-11-26 12:24:22","methods":{"/acme.order.v1.OrderService/Create":true,"/acme.order.v1.OrderService/Get":true},"network":{"sn":"firefly-main-network","internal":"order-service.shop.svc.cluster.local:9090","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"order-service","version":"v1"}}`
	fixtureUser1  = `{"proto_count":1,"lease_id":1795695862709570046,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v1"}}`
	fixtureUser2  = `{"proto_count":1,"lease_id":1795695862712874049,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true,"/acme.user.v1.UserService/UpdateProfile":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v2"}}`
	fixtureUser3  = `{"proto_count":1,"lease_id":1795695862719322195,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/Login":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"staging","app_id":"user-service","version":"v3"}}`
)

// fixtureEntry is one data entry of the fixture with the ConfigMap it is in.
type fixtureEntry struct {
	namespace, env, key, value string
}

var fixtureEntries = []fixtureEntry{
	{"firefly", "prod", "order-service.1795695862716099677", fixtureOrder1},
	{"firefly", "prod", "user-service.1795695862709570046", fixtureUser1},
	{"firefly", "prod", "user-service.1795695862712874049", fixtureUser2},
	{"firefly", "staging", "user-service.1795695862719322195", fixtureUser3},
}

// fixtureRunDate is the fixture's run_date read in UTC.
var fixtureRunDate = time.Date(2026, 11, 26, 12, 24, 22, 0, time.UTC)

func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseEntryFixtures(t *testing.T) {
	userMethods := []string{"/acme.user.v1.UserService/GetProfile", "/acme.user.v1.UserService/Login"}
	tests := []struct {
		in   fixtureEntry
		want model.Node
	}{
		{fixtureEntries[0], model.Node{
			AppID: "order-service", LeaseID: 1795695862716099677, Version: "v1", ProtoCount: 1,
			Methods: []string{"/acme.order.v1.OrderService/Create", "/acme.order.v1.OrderService/Get"},
			Network: model.Network{SN: "firefly-main-network", Internal: "order-service.shop.svc.cluster.local:9090", External: "127.0.0.1"},
		}},
		{fixtureEntries[1], model.Node{
			AppID: "user-service", LeaseID: 1795695862709570046, Version: "v1", ProtoCount: 1,
			Methods: userMethods,
			Network: model.Network{SN: "firefly-main-network", Internal: "user-service:8080", External: "127.0.0.1"},
		}},
		{fixtureEntries[2], model.Node{
			AppID: "user-service", LeaseID: 1795695862712874049, Version: "v2", ProtoCount: 1,
			Methods: append(userMethods[:2:2], "/acme.user.v1.UserService/UpdateProfile"),
			Network: model.Network{SN: "firefly-main-network", Internal: "user-service:8080", External: "127.0.0.1"},
		}},
		{fixtureEntries[3], model.Node{
			AppID: "user-service", LeaseID: 1795695862719322195, Version: "v3", ProtoCount: 1,
			Methods: []string{"/acme.user.v1.UserService/Login"},
			Network: model.Network{SN: "firefly-main-network", Internal: "user-service:8080", External: "127.0.0.1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.in.key, func(t *testing.T) {
			want := tt.want
			want.Namespace, want.Env, want.Key = tt.in.namespace, tt.in.env, tt.in.key
			want.Kernel = model.Kernel{Language: "Golang", Version: "v0.0.1"}
			want.RunDate = fixtureRunDate

			node, warnings, err := model.ParseEntry(tt.in.namespace, tt.in.env, tt.in.key, []byte(tt.in.value), model.ParseOptions{})
			if err != nil {
				t.Fatalf("ParseEntry: %v", err)
			}
			if len(warnings) != 0 {
				t.Errorf("warnings = %q, want none", warnings)
			}
			if !node.RunDate.Equal(want.RunDate) || node.RunDate.Location() != time.UTC {
				t.Errorf("RunDate = %v, want %v in UTC", node.RunDate, want.RunDate)
			}
			got := *node
			got.RunDate, want.RunDate = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("node =\n %+v\nwant\n %+v", got, want)
			}
			if k := model.CanonicalKey(node.AppID, node.LeaseID); k != tt.in.key {
				t.Errorf("CanonicalKey = %q, want the fixture's key %q", k, tt.in.key)
			}
		})
	}
}

// A lease id is an int64 that a float64 cannot hold: it must not be rounded.
func TestParseEntryLeaseIDExact(t *testing.T) {
	const lease int64 = 1795695862709570046
	if int64(float64(lease)) == lease {
		t.Fatal("test is vacuous: the lease id survives float64")
	}
	node, _, err := model.ParseEntry("firefly", "prod", "user-service.1795695862709570046", []byte(fixtureUser1), model.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.LeaseID != lease {
		t.Fatalf("LeaseID = %d, want %d", node.LeaseID, lease)
	}
	for _, lease := range []int64{1, -1, 1<<63 - 1, -1 << 63, 1<<53 + 1} {
		raw := strings.Replace(fixtureUser1, "1795695862709570046", jsonNumber(lease), 1)
		node, _, err := model.ParseEntry("firefly", "prod", "k", []byte(raw), model.ParseOptions{})
		if err != nil {
			t.Fatalf("lease %d: %v", lease, err)
		}
		if node.LeaseID != lease {
			t.Errorf("LeaseID = %d, want %d", node.LeaseID, lease)
		}
	}
}

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestParseEntryRunDate(t *testing.T) {
	berlin := berlin(t)
	tokyo := time.FixedZone("UTC+9", 9*3600)
	tests := []struct {
		name    string
		runDate string
		zone    *time.Location
		want    time.Time
	}{
		{"library format, default UTC", "2026-11-26 12:24:22", nil, fixtureRunDate},
		{"library format, explicit UTC", "2026-11-26 12:24:22", time.UTC, fixtureRunDate},
		{"library format, Berlin winter (UTC+1)", "2026-11-26 12:24:22", berlin, fixtureRunDate.Add(-time.Hour)},
		{"library format, Berlin summer (UTC+2)", "2026-07-01 12:00:00", berlin, time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)},
		{"library format, fixed zone", "2026-11-26 12:24:22", tokyo, fixtureRunDate.Add(-9 * time.Hour)},
		{"RFC 3339 UTC", "2026-11-26T12:24:22Z", nil, fixtureRunDate},
		{"RFC 3339 offset ignores zone option", "2026-11-26T12:24:22+02:00", berlin, fixtureRunDate.Add(-2 * time.Hour)},
		{"RFC 3339 with fraction", "2026-11-26T12:24:22.250Z", nil, fixtureRunDate.Add(250 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := strings.Replace(fixtureUser1, "2026-11-26 12:24:22", tt.runDate, 1)
			node, _, err := model.ParseEntry("firefly", "prod", "user-service.1795695862709570046", []byte(raw), model.ParseOptions{Zone: tt.zone})
			if err != nil {
				t.Fatal(err)
			}
			if !node.RunDate.Equal(tt.want) {
				t.Errorf("RunDate = %v, want %v", node.RunDate.UTC(), tt.want)
			}
		})
	}
}

func TestParseRunDateFormatRunDateRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 29, 0, 59, 59, 0, time.UTC) // an hour before Berlin's DST switch
	for _, zone := range []*time.Location{nil, time.UTC, berlin(t), time.FixedZone("x", -5*3600-30*60)} {
		s := model.FormatRunDate(at, zone)
		got, err := model.ParseRunDate(s, zone)
		if err != nil {
			t.Fatalf("zone %v: %v", zone, err)
		}
		if !got.Equal(at) {
			t.Errorf("zone %v: %q reads back as %v, want %v", zone, s, got, at)
		}
	}
	if got := model.FormatRunDate(at, berlin(t)); got != "2026-03-29 01:59:59" {
		t.Errorf("FormatRunDate in Berlin = %q", got)
	}
	if got := model.FormatRunDate(at.Add(123*time.Millisecond), nil); got != "2026-03-29 00:59:59" {
		t.Errorf("FormatRunDate in UTC = %q (want whole seconds)", got)
	}
}

// entryJSON is a valid prod entry of user-service with one member replaced
// or removed (value "" removes it).
func entryJSON(t testing.TB, member, value string) []byte {
	t.Helper()
	f, err := model.DecodeFields([]byte(fixtureUser1))
	if err != nil {
		t.Fatal(err)
	}
	if value == "" {
		f.Delete(member)
	} else {
		f.Set(member, json.RawMessage(value))
	}
	return f.Bytes()
}

func TestParseEntryRejected(t *testing.T) {
	const key = "user-service.1795695862709570046"
	meta := func(env, appID string) string {
		return `{"env":"` + env + `","app_id":"` + appID + `","version":"v1"}`
	}
	tests := []struct {
		name   string
		raw    []byte
		reason string
	}{
		{"empty", []byte(""), model.ReasonInvalidJSON},
		{"whitespace", []byte(" \n"), model.ReasonInvalidJSON},
		{"not JSON", []byte("user-service:8080"), model.ReasonInvalidJSON},
		{"truncated", []byte(fixtureUser1[:len(fixtureUser1)-1]), model.ReasonInvalidJSON},
		{"JSON array", []byte(`[` + fixtureUser1 + `]`), model.ReasonInvalidJSON},
		{"JSON string", []byte(`"user-service"`), model.ReasonInvalidJSON},
		{"JSON number", []byte(`1795695862709570046`), model.ReasonInvalidJSON},
		{"trailing object", []byte(fixtureUser1 + fixtureUser1), model.ReasonInvalidJSON},
		{"trailing garbage", []byte(fixtureUser1 + " x"), model.ReasonInvalidJSON},
		{"trailing brace", []byte(fixtureUser1 + "}"), model.ReasonInvalidJSON},
		{"trailing bracket", []byte(fixtureUser1 + "\n]"), model.ReasonInvalidJSON},
		{"trailing comma", []byte(fixtureUser1 + ","), model.ReasonInvalidJSON},
		{"methods not an object", entryJSON(t, "methods", `["/a.B/C"]`), model.ReasonInvalidJSON},
		{"lease_id float", entryJSON(t, "lease_id", `1.7e18`), model.ReasonInvalidJSON},
		{"lease_id with fraction", entryJSON(t, "lease_id", `1795695862709570046.0`), model.ReasonInvalidJSON},
		{"lease_id string", entryJSON(t, "lease_id", `"1795695862709570046"`), model.ReasonInvalidJSON},
		{"lease_id overflows int64", entryJSON(t, "lease_id", `9223372036854775808`), model.ReasonInvalidJSON},
		{"lease_id missing", entryJSON(t, "lease_id", ""), model.ReasonMissingLeaseID},
		{"lease_id zero", entryJSON(t, "lease_id", `0`), model.ReasonMissingLeaseID},
		{"lease_id null", entryJSON(t, "lease_id", `null`), model.ReasonMissingLeaseID},
		{"meta missing", entryJSON(t, "meta", ""), model.ReasonMissingAppID},
		{"app_id empty", entryJSON(t, "meta", meta("prod", "")), model.ReasonMissingAppID},
		{"app_id missing", entryJSON(t, "meta", `{"env":"prod","version":"v1"}`), model.ReasonMissingAppID},
		{"JSON null", []byte(`null`), model.ReasonMissingAppID},
		{"empty object", []byte(`{}`), model.ReasonMissingAppID},
		{"env of another ConfigMap", entryJSON(t, "meta", meta("staging", "user-service")), model.ReasonEnvMismatch},
		{"env missing", entryJSON(t, "meta", `{"app_id":"user-service","version":"v1"}`), model.ReasonEnvMismatch},
		{"env differs in case", entryJSON(t, "meta", meta("Prod", "user-service")), model.ReasonEnvMismatch},
		{"run_date missing", entryJSON(t, "run_date", ""), model.ReasonBadRunDate},
		{"run_date garbage", entryJSON(t, "run_date", `"yesterday"`), model.ReasonBadRunDate},
		{"run_date T without zone", entryJSON(t, "run_date", `"2026-11-26T12:24:22"`), model.ReasonBadRunDate},
		{"run_date date only", entryJSON(t, "run_date", `"2026-11-26"`), model.ReasonBadRunDate},
		{"run_date month 13", entryJSON(t, "run_date", `"2026-13-26 12:24:22"`), model.ReasonBadRunDate},
		{"run_date with zone name", entryJSON(t, "run_date", `"2026-11-26 12:24:22 UTC"`), model.ReasonBadRunDate},
		{"run_date unix number", entryJSON(t, "run_date", `1795695862`), model.ReasonInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, warnings, err := model.ParseEntry("firefly", "prod", key, tt.raw, model.ParseOptions{})
			if err == nil {
				t.Fatalf("ParseEntry(%s) = %+v, want %s", tt.raw, node, tt.reason)
			}
			var ee *model.EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("error %T %v is not an *EntryError", err, err)
			}
			if ee.Reason != tt.reason {
				t.Errorf("Reason = %q (%s), want %q", ee.Reason, ee.Detail, tt.reason)
			}
			if ee.Detail == "" {
				t.Error("Detail is empty")
			}
			if !strings.HasPrefix(err.Error(), tt.reason+": ") {
				t.Errorf("Error() = %q, want it to start with the reason", err)
			}
			if node != nil || warnings != nil {
				t.Errorf("got node %+v and warnings %q along with the error", node, warnings)
			}
		})
	}
}

func TestParseEntryWarnings(t *testing.T) {
	const canonical = "user-service.1795695862709570046"
	login, profile := "/acme.user.v1.UserService/Login", "/acme.user.v1.UserService/GetProfile"
	tests := []struct {
		name     string
		key      string
		raw      []byte
		methods  []string
		warnings []string
	}{
		{"canonical", canonical, []byte(fixtureUser1), []string{profile, login}, nil},
		{"library slash key", "user-service/1795695862709570046", []byte(fixtureUser1), []string{profile, login}, []string{model.WarnNonCanonicalKey}},
		{"arbitrary key", "whatever", []byte(fixtureUser1), []string{profile, login}, []string{model.WarnNonCanonicalKey}},
		{"key of another lease", "user-service.1795695862709570047", []byte(fixtureUser1), []string{profile, login}, []string{model.WarnNonCanonicalKey}},
		{"key of another app", "order-service.1795695862709570046", []byte(fixtureUser1), []string{profile, login}, []string{model.WarnNonCanonicalKey}},
		{"invalid method dropped", canonical,
			entryJSON(t, "methods", `{"/acme.user.v1.UserService/Login":true,"Login":true,"/acme.user.v1.UserService/":true,"":true}`),
			[]string{login}, []string{model.WarnInvalidMethod}},
		{"false methods ignored", canonical,
			entryJSON(t, "methods", `{"/acme.user.v1.UserService/Login":true,"/acme.user.v1.UserService/GetProfile":false,"not a method":false}`),
			[]string{login}, nil},
		{"only invalid methods", canonical, entryJSON(t, "methods", `{"bad":true}`), nil, []string{model.WarnInvalidMethod}},
		{"methods null", canonical, entryJSON(t, "methods", `null`), nil, nil},
		{"methods missing", canonical, entryJSON(t, "methods", ""), nil, nil},
		{"methods sorted", canonical,
			entryJSON(t, "methods", `{"/z.S/M":true,"/a.S/M":true,"/a.S/B":true,"/A.S/M":true}`),
			[]string{"/A.S/M", "/a.S/B", "/a.S/M", "/z.S/M"}, nil},
		{"both warnings in order", "user-service/1795695862709570046", entryJSON(t, "methods", `{"x":true}`),
			nil, []string{model.WarnNonCanonicalKey, model.WarnInvalidMethod}},
		{"unknown fields ignored", canonical,
			[]byte(`{"registered_by":{"who":"registry-api","at":[1,2]},"proto_count":1,"lease_id":1795695862709570046,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/Login":true},"network":{"sn":"n","internal":"user-service:8080","external":"","zone":"a"},"kernel":{"language":"Golang","version":"v0.0.1","arch":"arm64"},"meta":{"env":"prod","app_id":"user-service","version":"v1","owner":"team-a"},"extra":null}`),
			[]string{login}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, warnings, err := model.ParseEntry("firefly", "prod", tt.key, tt.raw, model.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(warnings, tt.warnings) {
				t.Errorf("warnings = %q, want %q", warnings, tt.warnings)
			}
			if len(node.Methods) != len(tt.methods) || (len(tt.methods) > 0 && !reflect.DeepEqual(node.Methods, tt.methods)) {
				t.Errorf("Methods = %q, want %q", node.Methods, tt.methods)
			}
			if node.Key != tt.key || node.AppID != "user-service" || node.LeaseID != 1795695862709570046 {
				t.Errorf("node = %+v", node)
			}
		})
	}
}

func TestValidMethodName(t *testing.T) {
	tests := []struct {
		m    string
		want bool
	}{
		{"/acme.user.v1.UserService/Login", true},
		{"/acme.order.v1.OrderService/Create", true},
		{"/Service/Method", true},
		{"/_pkg._Svc/_m", true},
		{"/a1.B2/C3", true},
		{"/grpc.health.v1.Health/Check", true},
		{"", false},
		{"/", false},
		{"//", false},
		{"acme.user.v1.UserService/Login", false},
		{"/acme.user.v1.UserService", false},
		{"/acme.user.v1.UserService/", false},
		{"//Login", false},
		{"/acme.user.v1.UserService/Login/", false},
		{"/acme.user.v1.UserService/Login/Again", false},
		{"/acme..UserService/Login", false},
		{"/.acme.UserService/Login", false},
		{"/acme.UserService./Login", false},
		{"/1acme.UserService/Login", false},
		{"/acme.1UserService/Login", false},
		{"/acme.UserService/1Login", false},
		{"/acme-user.UserService/Login", false},
		{"/acme.UserService/Log-in", false},
		{"/acme.UserService/Log in", false},
		{"/acme.UserService/Login.V2", false},
		{"/acme.UserService/Login\n", false},
		{" /acme.UserService/Login", false},
		{"/acme.UserService/Lögin", false},
	}
	for _, tt := range tests {
		if got := model.ValidMethodName(tt.m); got != tt.want {
			t.Errorf("ValidMethodName(%q) = %v, want %v", tt.m, got, tt.want)
		}
	}
}

func TestServiceOf(t *testing.T) {
	tests := []struct{ method, want string }{
		{"/acme.user.v1.UserService/Login", "acme.user.v1.UserService"},
		{"/Service/Method", "Service"},
		{"acme.user.v1.UserService/Login", "acme.user.v1.UserService"},
		{"/acme.user.v1.UserService", "acme.user.v1.UserService"},
		{"/a/b/c", "a/b"},
		{"/", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := model.ServiceOf(tt.method); got != tt.want {
			t.Errorf("ServiceOf(%q) = %q, want %q", tt.method, got, tt.want)
		}
	}
}

func TestValidAppID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"user-service", true},
		{"a", true},
		{"0", true},
		{"1st-app", true},
		{"a-b-c9", true},
		{"a--b", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-user", false},
		{"user-", false},
		{"User-Service", false},
		{"user_service", false},
		{"user.service", false}, // would make <appId>.<leaseId> ambiguous
		{"user/service", false},
		{"user service", false},
		{"user-service\n", false},
		{"usér", false},
	}
	for _, tt := range tests {
		got := model.ValidAppID(tt.id)
		if got != tt.want {
			t.Errorf("ValidAppID(%q) = %v, want %v", tt.id, got, tt.want)
		}
		// Oracle: an app id is what Kubernetes accepts as a DNS-1123 label.
		if oracle := len(validation.IsDNS1123Label(tt.id)) == 0; got != oracle {
			t.Errorf("ValidAppID(%q) = %v, but IsDNS1123Label says %v", tt.id, got, oracle)
		}
	}
}

func TestValidEnv(t *testing.T) {
	maxLen := 253 - len(model.ConfigMapPrefix)
	tests := []struct {
		env  string
		want bool
	}{
		{"prod", true},
		{"staging", true},
		{"default", true},
		{"a", true},
		{"0", true},
		{"eu-west-1", true},
		{"prod.eu", true},
		{"prod.eu-1.x", true},
		{strings.Repeat("a", maxLen), true},
		{strings.Repeat("a", maxLen+1), false},
		{"", false},
		{"Prod", false},
		{"-prod", false},
		{"prod-", false},
		{".prod", false},
		{"prod.", false},
		{"prod..eu", false},
		{"prod.-eu", false},
		{"prod-.eu", false},
		{"prod_eu", false},
		{"prod/eu", false},
		{"prod eu", false},
		{"prod\n", false},
	}
	for _, tt := range tests {
		got := model.ValidEnv(tt.env)
		if got != tt.want {
			t.Errorf("ValidEnv(%q) = %v, want %v", tt.env, got, tt.want)
		}
		// A valid env always makes a ConfigMap name the API server accepts.
		if errs := validation.IsDNS1123Subdomain(model.ConfigMapName(tt.env)); got && len(errs) > 0 {
			t.Errorf("ValidEnv(%q) = true, but ConfigMap name %q is invalid: %q", tt.env, model.ConfigMapName(tt.env), errs)
		}
	}
}

func TestCanonicalKey(t *testing.T) {
	tests := []struct {
		app   string
		lease int64
		want  string
	}{
		{"user-service", 1795695862709570046, "user-service.1795695862709570046"},
		{"order-service", 1795695862716099677, "order-service.1795695862716099677"},
		{"a", 1, "a.1"},
		{"a", 1<<63 - 1, "a.9223372036854775807"},
		{"a", -1, "a.-1"},
	}
	for _, tt := range tests {
		got := model.CanonicalKey(tt.app, tt.lease)
		if got != tt.want {
			t.Errorf("CanonicalKey(%q, %d) = %q, want %q", tt.app, tt.lease, got, tt.want)
		}
		// The API server must accept it as a ConfigMap data key.
		if errs := validation.IsConfigMapKey(got); len(errs) > 0 {
			t.Errorf("CanonicalKey(%q, %d) = %q is not a valid ConfigMap key: %q", tt.app, tt.lease, got, errs)
		}
		// It splits unambiguously at its only dot.
		app, lease, ok := strings.Cut(got, ".")
		if !ok || app != tt.app || lease != jsonNumber(tt.lease) {
			t.Errorf("CanonicalKey(%q, %d) = %q does not split back", tt.app, tt.lease, got)
		}
	}
}

func TestConfigMapName(t *testing.T) {
	tests := []struct{ env, want string }{
		{"", "ff-registry-default"},
		{"default", "ff-registry-default"},
		{"prod", "ff-registry-prod"},
		{"prod.eu", "ff-registry-prod.eu"},
	}
	for _, tt := range tests {
		got := model.ConfigMapName(tt.env)
		if got != tt.want {
			t.Errorf("ConfigMapName(%q) = %q, want %q", tt.env, got, tt.want)
		}
		env, ok := model.EnvFromConfigMapName(got)
		wantEnv := tt.env
		if wantEnv == "" {
			wantEnv = model.DefaultEnv
		}
		if !ok || env != wantEnv {
			t.Errorf("EnvFromConfigMapName(%q) = %q, %v, want %q, true", got, env, ok, wantEnv)
		}
	}
}

func TestEnvFromConfigMapName(t *testing.T) {
	tests := []struct {
		name string
		env  string
		ok   bool
	}{
		{"ff-registry-prod", "prod", true},
		{"ff-registry-default", "default", true},
		{"ff-registry-prod.eu", "prod.eu", true},
		{"ff-registry-ff-registry-x", "ff-registry-x", true},
		{"ff-registry-", "", false},
		{"ff-registry", "", false},
		{"ff-registryprod", "", false},
		{"xff-registry-prod", "", false},
		{"FF-REGISTRY-prod", "", false},
		{"kube-root-ca.crt", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		env, ok := model.EnvFromConfigMapName(tt.name)
		if env != tt.env || ok != tt.ok {
			t.Errorf("EnvFromConfigMapName(%q) = %q, %v, want %q, %v", tt.name, env, ok, tt.env, tt.ok)
		}
	}
}

func TestNodeAlive(t *testing.T) {
	n := &model.Node{RunDate: fixtureRunDate}
	const ttl = 10 * time.Second
	tests := []struct {
		now  time.Time
		want bool
	}{
		{fixtureRunDate, true},
		{fixtureRunDate.Add(-time.Hour), true}, // a heartbeat from the future (clock skew)
		{fixtureRunDate.Add(ttl), true},
		{fixtureRunDate.Add(ttl + time.Nanosecond), false},
		{fixtureRunDate.Add(time.Hour), false},
	}
	for _, tt := range tests {
		if got := n.Alive(tt.now, ttl); got != tt.want {
			t.Errorf("Alive(now = run_date%+v) = %v, want %v", tt.now.Sub(fixtureRunDate), got, tt.want)
		}
	}
}
