package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Field is one top-level member of an entry's JSON object, kept verbatim.
type Field struct {
	Key   string
	Value json.RawMessage
}

// Fields is an entry's top-level JSON object in its original order. Rewriting
// an entry through Fields changes only the members set, so fields written by
// other writers (and unknown to us) survive byte for byte.
type Fields []Field

// DecodeFields splits a JSON object into its members.
func DecodeFields(raw []byte) (Fields, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("read entry: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("read entry: not a JSON object")
	}
	var out Fields
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("read entry: %w", err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("read entry member %q: %w", key, err)
		}
		out.Set(key, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("read entry: %w", err)
	}
	// Only white space may follow (dec.More misses a stray '}' or ']').
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read entry: trailing data after the JSON object")
	}
	return out, nil
}

// Get returns the member named key.
func (f Fields) Get(key string) (json.RawMessage, bool) {
	for _, fl := range f {
		if fl.Key == key {
			return fl.Value, true
		}
	}
	return nil, false
}

// Set replaces the member named key in place, or appends it.
func (f *Fields) Set(key string, value json.RawMessage) {
	for i := range *f {
		if (*f)[i].Key == key {
			(*f)[i].Value = value
			return
		}
	}
	*f = append(*f, Field{Key: key, Value: value})
}

// SetJSON marshals v and sets it as the member named key.
func (f *Fields) SetJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode entry member %q: %w", key, err)
	}
	f.Set(key, b)
	return nil
}

// Delete removes the member named key.
func (f *Fields) Delete(key string) {
	for i := range *f {
		if (*f)[i].Key == key {
			*f = append((*f)[:i], (*f)[i+1:]...)
			return
		}
	}
}

// Bytes encodes the object compactly, members in order.
func (f Fields) Bytes() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, fl := range f {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(fl.Key)
		b.Write(k)
		b.WriteByte(':')
		if err := json.Compact(&b, fl.Value); err != nil {
			b.Write(fl.Value)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}
