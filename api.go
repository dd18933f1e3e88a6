// Package registryapi embeds the API document at the module root.
package registryapi

import _ "embed"

// OpenAPISpec is openapi.yaml, the contract requests are validated against.
//
//go:embed openapi.yaml
var OpenAPISpec []byte
