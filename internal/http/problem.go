package httpapi

import (
	"errors"
	"net/http"

	"github.com/acme/registry-api/internal/model"
)

// problemKind is what an error code looks like over HTTP.
type problemKind struct {
	status int
	title  string
	// retry is the Retry-After every answer of the kind carries.
	retry retryHint
}

// retryHint says when a refused client may try again.
type retryHint int

const (
	// noRetry: the same request gets the same answer.
	noRetry retryHint = iota
	// retrySoon: the replica's load, its API server or its cap pass, or
	// another replica answers, within a second.
	retrySoon
	// retryHeartbeat: a new instance is seen within one heartbeat interval
	// (half the TTL).
	retryHeartbeat
)

// retrySoonAfter is retrySoon's Retry-After.
var retrySoonAfter = []string{"1"}

// problemKinds maps every error code to its HTTP status: the one table.
var problemKinds = map[model.Code]problemKind{
	model.CodeInvalid:            {http.StatusBadRequest, "Invalid request", noRetry},
	model.CodeMalformedMethod:    {http.StatusBadRequest, "Malformed method name", noRetry},
	model.CodeTooManyMethods:     {http.StatusBadRequest, "Too many methods", noRetry},
	model.CodePayloadTooLarge:    {http.StatusRequestEntityTooLarge, "Payload too large", noRetry},
	model.CodeURITooLong:         {http.StatusRequestURITooLong, "URI too long", noRetry},
	model.CodeRequestTimeout:     {http.StatusRequestTimeout, "Request timeout", noRetry},
	model.CodeOverloaded:         {http.StatusServiceUnavailable, "Overloaded", retrySoon},
	model.CodeNotFound:           {http.StatusNotFound, "Not found", noRetry},
	model.CodeMethodNotAllowed:   {http.StatusMethodNotAllowed, "Method not allowed", noRetry},
	model.CodeNotAcceptable:      {http.StatusNotAcceptable, "Not acceptable", noRetry},
	model.CodeUnsupportedMedia:   {http.StatusUnsupportedMediaType, "Unsupported media type", noRetry},
	model.CodeEnvNotFound:        {http.StatusNotFound, "Env not found", noRetry},
	model.CodeAppNotFound:        {http.StatusNotFound, "App not found", noRetry},
	model.CodeMethodNotFound:     {http.StatusNotFound, "Method not found", noRetry},
	model.CodeVersionNotFound:    {http.StatusNotFound, "Version not found", noRetry},
	model.CodeNoLiveInstances:    {http.StatusServiceUnavailable, "No live instances", retryHeartbeat},
	model.CodeLeaseNotFound:      {http.StatusNotFound, "Lease not found", noRetry},
	model.CodeAmbiguousNamespace: {http.StatusConflict, "Ambiguous namespace", noRetry},
	model.CodeConflict:           {http.StatusConflict, "Conflict", noRetry},
	model.CodeRegistryFull:       {http.StatusInsufficientStorage, "Registry full", noRetry},
	model.CodeStoreUnavailable:   {http.StatusServiceUnavailable, "Store unavailable", retrySoon},
	model.CodeReadOnly:           {http.StatusMethodNotAllowed, "Read-only", noRetry},
	model.CodeUnauthorized:       {http.StatusUnauthorized, "Unauthorized", noRetry},
	model.CodeForbidden:          {http.StatusForbidden, "Forbidden", noRetry},
	model.CodeNotReady:           {http.StatusServiceUnavailable, "Not ready", retrySoon},
	model.CodeTooManyFollowers:   {http.StatusServiceUnavailable, "Too many followers", retrySoon},
	model.CodeInternal:           {http.StatusInternalServerError, "Internal error", noRetry},
}

// problemTypePrefix starts every problem's type URI; the code completes it.
const problemTypePrefix = "urn:problem-type:registry-api:"

// problem is an RFC 9457 problem with our stable code.
type problem struct {
	Type     string     `json:"type"`
	Title    string     `json:"title"`
	Status   int        `json:"status"`
	Detail   string     `json:"detail"`
	Instance string     `json:"instance,omitempty"`
	Code     model.Code `json:"code"`
}

// newProblem renders err for clients: codes and messages of *model.Error as
// they are; anything else is an internal error whose details stay in the log.
func newProblem(err error) problem {
	var me *model.Error
	if !errors.As(err, &me) || me.Code == model.CodeInternal {
		me = &model.Error{Code: model.CodeInternal, Message: "internal error"}
	}
	kind, ok := problemKinds[me.Code]
	if !ok {
		// A code missing from the table is a bug; say so without leaking.
		me = &model.Error{Code: model.CodeInternal, Message: "internal error"}
		kind = problemKinds[model.CodeInternal]
	}
	return problem{
		Type:   problemTypePrefix + string(me.Code),
		Title:  kind.title,
		Status: kind.status,
		Detail: me.Message,
		Code:   me.Code,
	}
}

// writeProblem answers with err as a problem: the one error shape, with the
// Retry-After of its kind. The error itself, internal details included, goes
// to the request's log line.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	rec, _ := w.(*recorder)
	if rec != nil {
		rec.err = err
	}
	p := newProblem(err)
	switch problemKinds[p.Code].retry {
	case retrySoon:
		w.Header()[hdrRetryAfter] = retrySoonAfter
	case retryHeartbeat:
		// Known to the server that observes the request; every answer
		// goes through it.
		if rec != nil && rec.retryHeartbeat != nil {
			w.Header()[hdrRetryAfter] = rec.retryHeartbeat
		}
	}
	if path := r.URL.EscapedPath(); len(path) <= maxPathBytes {
		p.Instance = path
	}
	writeJSON(w, r, p.Status, ctProblem, p)
}
