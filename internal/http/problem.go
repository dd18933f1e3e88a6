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
}

// problemKinds maps every error code to its HTTP status: the one table.
var problemKinds = map[model.Code]problemKind{
	model.CodeInvalid:            {http.StatusBadRequest, "Invalid request"},
	model.CodeMalformedMethod:    {http.StatusBadRequest, "Malformed method name"},
	model.CodeTooManyMethods:     {http.StatusBadRequest, "Too many methods"},
	model.CodePayloadTooLarge:    {http.StatusRequestEntityTooLarge, "Payload too large"},
	model.CodeURITooLong:         {http.StatusRequestURITooLong, "URI too long"},
	model.CodeRequestTimeout:     {http.StatusRequestTimeout, "Request timeout"},
	model.CodeOverloaded:         {http.StatusServiceUnavailable, "Overloaded"},
	model.CodeNotFound:           {http.StatusNotFound, "Not found"},
	model.CodeMethodNotAllowed:   {http.StatusMethodNotAllowed, "Method not allowed"},
	model.CodeNotAcceptable:      {http.StatusNotAcceptable, "Not acceptable"},
	model.CodeUnsupportedMedia:   {http.StatusUnsupportedMediaType, "Unsupported media type"},
	model.CodeEnvNotFound:        {http.StatusNotFound, "Env not found"},
	model.CodeAppNotFound:        {http.StatusNotFound, "App not found"},
	model.CodeMethodNotFound:     {http.StatusNotFound, "Method not found"},
	model.CodeVersionNotFound:    {http.StatusNotFound, "Version not found"},
	model.CodeNoLiveInstances:    {http.StatusServiceUnavailable, "No live instances"},
	model.CodeLeaseNotFound:      {http.StatusNotFound, "Lease not found"},
	model.CodeAmbiguousNamespace: {http.StatusConflict, "Ambiguous namespace"},
	model.CodeConflict:           {http.StatusConflict, "Conflict"},
	model.CodeRegistryFull:       {http.StatusInsufficientStorage, "Registry full"},
	model.CodeStoreUnavailable:   {http.StatusServiceUnavailable, "Store unavailable"},
	model.CodeReadOnly:           {http.StatusMethodNotAllowed, "Read-only"},
	model.CodeUnauthorized:       {http.StatusUnauthorized, "Unauthorized"},
	model.CodeForbidden:          {http.StatusForbidden, "Forbidden"},
	model.CodeNotReady:           {http.StatusServiceUnavailable, "Not ready"},
	model.CodeTooManyFollowers:   {http.StatusServiceUnavailable, "Too many followers"},
	model.CodeInternal:           {http.StatusInternalServerError, "Internal error"},
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

// writeProblem answers with err as a problem: the one error shape. The error
// itself, internal details included, goes to the request's log line.
func writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	if rec, ok := w.(*recorder); ok {
		rec.err = err
	}
	p := newProblem(err)
	if path := r.URL.EscapedPath(); len(path) <= maxPathBytes {
		p.Instance = path
	}
	writeJSON(w, r, p.Status, ctProblem, p)
}
