package httprule_test

import (
	"fmt"

	"github.com/acme/registry-api/internal/httprule"
)

func ExampleMatcher_Match() {
	var rules []httprule.Rule
	for id, b := range [][2]string{
		{"POST", "/v1/app/type"},
		{"GET", "/v1/app/type/{id}"},
		{"GET", "/v1/app/type/latest"},
		{"POST", "/v1/{name=operations/*}:cancel"},
	} {
		tmpl, err := httprule.Parse(b[1])
		if err != nil {
			panic(err)
		}
		rules = append(rules, httprule.Rule{Method: b[0], Template: tmpl, ID: id})
	}
	m, err := httprule.New(rules)
	if err != nil {
		panic(err)
	}
	buf := make([]httprule.Var, 0, 4)
	for _, req := range [][2]string{
		{"GET", "/v1/app/type/42"},
		{"GET", "/v1/app/type/latest"},
		{"POST", "/v1/operations/op%2F1:cancel"},
		{"DELETE", "/v1/app/type/42"},
		{"GET", "/v2/app"},
	} {
		id, vars, status := m.Match(req[0], req[1], buf)
		switch status {
		case httprule.Matched:
			fmt.Println(req[0], req[1], "->", id, vars)
		case httprule.MethodNotAllowed:
			fmt.Println(req[0], req[1], "->", status, m.Allow(req[1], nil))
		default:
			fmt.Println(req[0], req[1], "->", status)
		}
	}
	// Output:
	// GET /v1/app/type/42 -> 1 [{id 42}]
	// GET /v1/app/type/latest -> 2 []
	// POST /v1/operations/op%2F1:cancel -> 3 [{name operations/op%2F1}]
	// DELETE /v1/app/type/42 -> method not allowed [GET]
	// GET /v2/app -> no match
}
