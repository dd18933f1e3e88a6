package model

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code; clients switch on it.
type Code string

// Error codes. The HTTP layer maps each to one status in a single table.
const (
	CodeInvalid            Code = "invalid_request"
	CodeMalformedMethod    Code = "malformed_method"
	CodeTooManyMethods     Code = "too_many_methods"
	CodePayloadTooLarge    Code = "payload_too_large"
	CodeURITooLong         Code = "uri_too_long"
	CodeRequestTimeout     Code = "request_timeout"
	CodeOverloaded         Code = "overloaded"
	CodeNotFound           Code = "not_found"
	CodeMethodNotAllowed   Code = "method_not_allowed"
	CodeNotAcceptable      Code = "not_acceptable"
	CodeUnsupportedMedia   Code = "unsupported_media_type"
	CodeEnvNotFound        Code = "env_not_found"
	CodeAppNotFound        Code = "app_not_found"
	CodeMethodNotFound     Code = "method_not_found"
	CodeVersionNotFound    Code = "version_not_found"
	CodeNoLiveInstances    Code = "no_live_instances"
	CodeLeaseNotFound      Code = "lease_not_found"
	CodeAmbiguousNamespace Code = "ambiguous_namespace"
	CodeConflict           Code = "conflict"
	CodeRegistryFull       Code = "registry_full"
	CodeStoreUnavailable   Code = "store_unavailable"
	CodeReadOnly           Code = "read_only"
	CodeUnauthorized       Code = "unauthorized"
	CodeForbidden          Code = "forbidden"
	CodeNotReady           Code = "not_ready"
	CodeTooManyFollowers   Code = "too_many_followers"
	CodeInternal           Code = "internal"
)

// Error is the one error type that crosses package boundaries towards clients.
// Message is safe to show; internal details stay in the wrapped Err.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a formatted client-facing message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, or CodeInternal for anything else.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
