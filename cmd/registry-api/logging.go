package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// minLogLineBytes is the smallest REGISTRY_LOG_LINE_BYTES: room for a
// request's line with its bounded error and path.
const minLogLineBytes = 1024

// defaultLogLineBytes leaves room for a panic's stack.
const defaultLogLineBytes = 8192

func newLogger(cfg Config, stdout io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil || level == zerolog.NoLevel {
		return zerolog.Logger{}, fmt.Errorf("REGISTRY_LOG_LEVEL=%q: want debug, info, warn or error", cfg.LogLevel)
	}
	var w io.Writer = stdout
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: stdout, TimeFormat: time.RFC3339}
	}
	max := cfg.LogLineBytes
	if max == 0 {
		max = defaultLogLineBytes
	}
	w = lineCap{w: w, max: max}
	return zerolog.New(w).Level(level).With().Timestamp().Str("service", "registry-api").Logger(), nil
}

// lineCap bounds every log line. zerolog hands its writer one whole JSON
// line per event, so a line over max is replaced, never split: by a short
// line of valid JSON that keeps the start of the original, which names its
// level, time and message.
type lineCap struct {
	w   io.Writer
	max int
}

// keptPrefix is how much of an oversized line its replacement quotes.
const keptPrefix = 256

func (c lineCap) Write(p []byte) (int, error) {
	if len(p) <= c.max {
		return c.w.Write(p)
	}
	line, err := json.Marshal(struct {
		Level   string `json:"level"`
		Service string `json:"service"`
		Message string `json:"message"`
		Bytes   int    `json:"bytes"`
		Prefix  string `json:"prefix"`
	}{
		Level:   zerolog.WarnLevel.String(),
		Service: "registry-api",
		Message: "log line too long: replaced",
		Bytes:   len(p),
		Prefix:  strings.ToValidUTF8(string(p[:keptPrefix]), ""),
	})
	if err != nil {
		return 0, fmt.Errorf("replace an oversized log line: %w", err)
	}
	if _, err := c.w.Write(append(line, '\n')); err != nil {
		return 0, err
	}
	return len(p), nil
}
