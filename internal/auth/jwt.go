package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"
)

// tokenExpiry reads the exp claim of a JWT without verifying it. ok is false
// for tokens that are not JWTs or carry no usable exp.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp any `json:"exp"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return time.Time{}, false
	}
	// exp is a NumericDate: a JSON number of seconds, possibly fractional.
	n, ok := claims.Exp.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	exp, err := n.Float64()
	if err != nil || math.IsNaN(exp) || exp <= 0 || exp > math.MaxInt64/2 {
		return time.Time{}, false
	}
	return time.Unix(int64(exp), 0), true
}
