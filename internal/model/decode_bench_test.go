package model_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

// benchEntry is fixtureUser1 with 20 methods, the size of a typical service.
func benchEntry() []byte {
	methods := make([]string, 20)
	for i := range methods {
		methods[i] = fmt.Sprintf(`"/acme.user.v1.UserService/Method%02d":true`, i)
	}
	const old = `{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true}`
	if !strings.Contains(fixtureUser1, old) {
		panic("fixtureUser1 changed")
	}
	return []byte(strings.Replace(fixtureUser1, old, "{"+strings.Join(methods, ",")+"}", 1))
}

func BenchmarkParseEntry(b *testing.B) {
	raw := benchEntry()
	const key = "user-service.1795695862709570046"
	for _, bc := range []struct {
		name   string
		intern *model.Interner
	}{
		{"Interner", model.NewInterner()},
		{"NoInterner", nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := model.ParseOptions{Intern: bc.intern}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				node, _, err := model.ParseEntry("firefly", "prod", key, raw, opts)
				if err != nil || len(node.Methods) != 20 {
					b.Fatalf("ParseEntry: %v", err)
				}
			}
		})
	}
}
