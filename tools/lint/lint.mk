# OpenAPI linters for openapi.yaml: Spectral's spectral:oas ruleset
# (.spectral.yaml) and Redocly's recommended rules (redocly.yaml), at the exact
# versions in tools/lint/package-lock.json. `make lint` installs them here with
# `npm ci` when node_modules is missing or older than the lock file; nothing is
# installed globally. Both must report no errors and no warnings.

LINT_DIR   := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
LINT_BIN   := $(LINT_DIR)/node_modules/.bin
# npm ci writes this file last; it stands for the whole install.
LINT_STAMP := $(LINT_DIR)/node_modules/.package-lock.json
# The linters run offline: no telemetry, no update check.
LINT_ENV   := REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true

$(LINT_STAMP): $(LINT_DIR)/package.json $(LINT_DIR)/package-lock.json
	npm ci --prefix '$(LINT_DIR)' --no-audit --no-fund --ignore-scripts
	@touch '$@'

.PHONY: lint-openapi
lint-openapi: $(LINT_STAMP) ## Lint openapi.yaml with Spectral (spectral:oas) and Redocly (recommended): no errors, no warnings
	$(LINT_ENV) '$(LINT_BIN)/spectral' lint --ruleset .spectral.yaml --fail-severity warn openapi.yaml
	@set -eu; \
	totals=$$($(LINT_ENV) '$(LINT_BIN)/redocly' lint --config redocly.yaml --format json openapi.yaml 2>/dev/null \
	  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const t=JSON.parse(s).totals;console.log(t.errors+t.warnings)})'); \
	if [ "$$totals" != 0 ]; then \
	  $(LINT_ENV) '$(LINT_BIN)/redocly' lint --config redocly.yaml --format stylish openapi.yaml || true; \
	  echo "redocly: $$totals problems in openapi.yaml" >&2; exit 1; \
	fi; \
	echo "redocly: openapi.yaml has no errors and no warnings"

# A TypeScript client generated from openapi.yaml (openapi-typescript), used
# as a gateway would (client/check.ts) and compiled with --strict: a schema
# that generates an unusable type fails here.
LINT_CLIENT := $(LINT_DIR)/client

.PHONY: lint-client
lint-client: $(LINT_STAMP) ## Generate TypeScript types from openapi.yaml and compile a client against them with --strict
	'$(LINT_BIN)/openapi-typescript' openapi.yaml --output '$(LINT_CLIENT)/schema.d.ts' --silent
	'$(LINT_BIN)/tsc' --strict --noEmit --module nodenext --moduleResolution nodenext --target es2022 '$(LINT_CLIENT)/check.ts'
