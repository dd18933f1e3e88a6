package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/acme/registry-api/internal/jsonscan"
	"github.com/acme/registry-api/internal/model"
)

// readBody reads a JSON request body whole, within limit bytes and the
// server's body deadline, and checks that it is exactly one JSON value
// nested at most maxJSONDepth deep. It runs before the validator, whose
// error texts and allocations grow with a body's depth.
//
// A body that is not JSON by its Content-Type is left to the validator,
// which refuses it as unsupported after reading nothing.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	// Given the connection's own writer, MaxBytesReader also tells the
	// server to close the connection rather than drain the rest.
	if rec, ok := w.(*recorder); ok {
		w = rec.ResponseWriter
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		// The deadline was for the body alone: an answer may take its time,
		// and a read deadline left on the connection would end it. After a
		// failed read it stays, so that the server's drain of the rest of
		// the body fails at once too and the connection closes.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, tooLarge(limit)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, &model.Error{Code: model.CodeRequestTimeout, Message: "the request body did not arrive in time", Err: err}
		case errors.As(err, new(*model.Error)):
			return nil, err // the body budget's
		default:
			return nil, &model.Error{Code: model.CodeInvalid, Message: "the request body could not be read", Err: err}
		}
	}
	if err := checkJSON(body, maxJSONDepth); err != nil {
		return nil, err
	}
	return body, nil
}

func tooLarge(limit int64) error {
	return model.Errorf(model.CodePayloadTooLarge, "request body is larger than %d bytes", limit)
}

// isJSON reports whether a Content-Type names JSON (application/json or a
// +json type).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// checkJSON checks in one pass, without allocating, that b holds exactly
// one JSON value nested at most maxDepth deep, in valid UTF-8. It stops at
// the first byte that breaks a rule, so a hostile body costs at most its
// length.
func checkJSON(b []byte, maxDepth int) error {
	s := jsonscan.Scanner[[]byte]{B: b, MaxDepth: maxDepth, UTF8: true}
	s.Space()
	if s.Pos == len(b) {
		return model.Errorf(model.CodeInvalid, "request body is empty; a JSON value is required")
	}
	if err := s.Value(); err != nil {
		var syntax *jsonscan.SyntaxError
		switch {
		case errors.As(err, &syntax) && syntax.EOF:
			return model.Errorf(model.CodeInvalid, "request body is not valid JSON: it ends early, %s", syntax.What)
		case errors.As(err, &syntax):
			return model.Errorf(model.CodeInvalid, "request body is not valid JSON: at byte %d, %s", syntax.Offset, syntax.What)
		}
		return model.Errorf(model.CodeInvalid, "request body nests deeper than %d levels", maxDepth)
	}
	s.Space()
	if s.Pos != len(b) {
		return model.Errorf(model.CodeInvalid, "request body has data after its JSON value, at byte %d: %s", s.Pos, quoteValue(b[s.Pos:]))
	}
	return nil
}
