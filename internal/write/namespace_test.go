package write

import (
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

func TestChooseNamespace(t *testing.T) {
	envs := map[string]*model.EnvIndex{
		"prod":    {Name: "prod", Namespaces: []string{"firefly"}},
		"staging": {Name: "staging", Namespaces: []string{"firefly", "shop"}},
		"empty":   {Name: "empty"},
	}
	watched := &model.Snapshot{Envs: envs, Namespaces: []string{"firefly", "shop"}}
	all := &model.Snapshot{Envs: envs, Namespaces: []string{""}}

	for _, tc := range []struct {
		name      string
		snap      *model.Snapshot
		env       string
		requested string
		def       string
		want      string
		code      model.Code
		mentions  []string
	}{
		{name: "env in one namespace", snap: watched, env: "prod", def: "shop", want: "firefly"},
		{name: "requested other watched namespace", snap: watched, env: "prod", requested: "shop", def: "firefly", want: "shop"},
		{name: "requested its own namespace", snap: watched, env: "prod", requested: "firefly", want: "firefly"},
		{name: "requested unwatched", snap: watched, env: "prod", requested: "kube-system", code: model.CodeInvalid, mentions: []string{"kube-system", "firefly, shop"}},
		{name: "requested invalid", snap: watched, env: "prod", requested: "Not_A_Namespace", code: model.CodeInvalid},
		{name: "ambiguous", snap: watched, env: "staging", def: "firefly", code: model.CodeAmbiguousNamespace, mentions: []string{"firefly, shop", "?namespace="}},
		{name: "ambiguous, requested", snap: watched, env: "staging", requested: "shop", want: "shop"},
		{name: "new env", snap: watched, env: "qa", def: "firefly", want: "firefly"},
		{name: "env without namespaces", snap: watched, env: "empty", def: "shop", want: "shop"},
		{name: "new env, no default", snap: watched, env: "qa", code: model.CodeInvalid},
		{name: "all watched, any namespace", snap: all, env: "prod", requested: "anything", want: "anything"},
		{name: "all watched, invalid", snap: all, env: "prod", requested: "a/b", code: model.CodeInvalid},
		{name: "all watched, known env", snap: all, env: "prod", def: "firefly", want: "firefly"},
		{name: "all watched, new env", snap: all, env: "qa", def: "registry", want: "registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChooseNamespace(tc.snap, tc.env, tc.requested, tc.def)
			if tc.code != "" {
				wantCode(t, err, tc.code)
				for _, m := range tc.mentions {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("message %q does not mention %q", err, m)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
