# Swagger UI assets served at /docs (internal/http/swaggerui).
#
# The assets are committed and embedded with go:embed so the binary works
# air-gapped; this target is only for bumping them and is not part of `make test`.
# To upgrade: set the exact version in internal/http/swaggerui/package.json and
# run `make swagger-ui`, then review and commit the diff.

SWAGGER_UI_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../internal/http/swaggerui)
# Copied from the npm package; the .js/.css get their sourceMappingURL stripped
# because the maps are not shipped. index.html and swagger-initializer.js are ours.
SWAGGER_UI_REQUIRED := swagger-ui-bundle.js swagger-ui.css favicon-32x32.png favicon-16x16.png LICENSE
SWAGGER_UI_OPTIONAL := NOTICE swagger-ui-bundle.js.LICENSE.txt index.css

.PHONY: swagger-ui
swagger-ui: ## Re-fetch the swagger-ui-dist version pinned in internal/http/swaggerui/package.json into its dist/
	@set -eu; \
	dir='$(SWAGGER_UI_DIR)'; \
	ver=$$(node -p "require('$$dir/package.json').dependencies['swagger-ui-dist']"); \
	case "$$ver" in ''|*[!0-9A-Za-z.+-]*) echo "swagger-ui: pin an exact version in $$dir/package.json (got '$$ver')" >&2; exit 1;; esac; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent --ignore-scripts "swagger-ui-dist@$$ver" >/dev/null); \
	tar -xzf "$$tmp"/swagger-ui-dist-*.tgz -C "$$tmp"; \
	got=$$(node -p "require('$$tmp/package/package.json').version"); \
	[ "$$got" = "$$ver" ] || { echo "swagger-ui: npm returned $$got, want $$ver" >&2; exit 1; }; \
	for f in $(SWAGGER_UI_REQUIRED) $(SWAGGER_UI_OPTIONAL); do \
	  src="$$tmp/package/$$f"; \
	  if [ ! -f "$$src" ]; then \
	    case " $(SWAGGER_UI_OPTIONAL) " in *" $$f "*) rm -f "$$dir/dist/$$f"; continue;; esac; \
	    echo "swagger-ui: $$f missing from swagger-ui-dist@$$ver" >&2; exit 1; \
	  fi; \
	  case "$$f" in \
	    *.js|*.css) sed -e '/^\/\/# sourceMappingURL=/d' -e '/^\/\*# sourceMappingURL=.*\*\/$$/d' "$$src" > "$$dir/dist/$$f";; \
	    *) cp "$$src" "$$dir/dist/$$f";; \
	  esac; \
	done; \
	sed -e "s/^const Version = \".*\"$$/const Version = \"$$ver\"/" "$$dir/swaggerui.go" > "$$tmp/swaggerui.go"; \
	cp "$$tmp/swaggerui.go" "$$dir/swaggerui.go"; \
	echo "swagger-ui: dist/ now holds swagger-ui-dist@$$ver"
