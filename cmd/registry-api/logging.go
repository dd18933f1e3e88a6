package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// minLogLineBytes is the smallest REGISTRY_LOG_LINE_BYTES: room for a
// request's line with its bounded error and path.
const minLogLineBytes = 1024

// defaultLogLineBytes leaves room for a panic's stack.
const defaultLogLineBytes = 8192

// defaultLogFlushInterval delays a line by less than a person notices.
const defaultLogFlushInterval = 100 * time.Millisecond

// maxLogFlushInterval bounds REGISTRY_LOG_FLUSH_INTERVAL: a line seen a
// second late is still a line seen while it matters.
const maxLogFlushInterval = time.Second

// logBufferBytes holds a few hundred request lines: past it the buffer is
// written out at once, so a flood never waits for the next flush.
const logBufferBytes = 64 << 10

// logLevel reads REGISTRY_LOG_LEVEL. It takes the four levels the README
// lists, not the rest of zerolog's: trace logs nothing more here, and
// fatal, panic or disabled would hide the errors an operator needs.
func logLevel(name string) (zerolog.Level, error) {
	switch level := strings.ToLower(name); level {
	case "debug", "info", "warn", "error":
		return zerolog.ParseLevel(level)
	}
	return zerolog.NoLevel, fmt.Errorf("REGISTRY_LOG_LEVEL=%q: want debug, info, warn or error", name)
}

// newLogger returns the service's logger and a close that writes out what
// it still holds; serve calls it last.
func newLogger(cfg Config, stdout io.Writer) (zerolog.Logger, func(), error) {
	level, err := logLevel(cfg.LogLevel)
	if err != nil {
		return zerolog.Logger{}, nil, err
	}
	closeLog := func() {}
	out := stdout
	var buffer *logBuffer
	if cfg.LogFlushInterval > 0 {
		buffer = newLogBuffer(stdout)
		stop := buffer.flushEvery(cfg.LogFlushInterval)
		closeLog = stop
		out = buffer
	}
	var w io.Writer = out
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.RFC3339}
	}
	max := cfg.LogLineBytes
	if max == 0 {
		max = defaultLogLineBytes
	}
	w = lineCap{w: w, max: max}
	if buffer != nil {
		w = flushOnError{w: w, buffer: buffer}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("service", "registry-api").Logger(), closeLog, nil
}

// logBuffer gathers log lines and writes them out together. Written one by
// one, each request's line costs a write system call of its own, which under
// load is a fifth of what serving a read costs (BENCHMARKS.md, "Routes view,
// load test and followers").
type logBuffer struct {
	mu  sync.Mutex
	out io.Writer
	buf *bufio.Writer
}

func newLogBuffer(out io.Writer) *logBuffer {
	return &logBuffer{out: out, buf: bufio.NewWriterSize(out, logBufferBytes)}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if len(p) > b.buf.Available() && b.buf.Buffered() > 0 {
		// Written out whole lines at a time: a reader of the output never
		// sees half of one.
		err = b.buf.Flush()
	}
	n := 0
	if err == nil {
		n, err = b.buf.Write(p)
	}
	if err != nil {
		// bufio keeps a write error for good; the next lines get a fresh
		// buffer instead of being refused forever.
		b.buf.Reset(b.out)
	}
	return n, err
}

// Flush writes out what the buffer holds.
func (b *logBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.buf.Flush()
	if err != nil {
		b.buf.Reset(b.out)
	}
	return err
}

// flushEvery flushes the buffer every interval until the returned stop,
// which flushes it a last time.
func (b *logBuffer) flushEvery(interval time.Duration) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				_ = b.Flush()
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
			_ = b.Flush()
		})
	}
}

// flushOnError writes out an error line, and what came before it, at once:
// the line that says the service is failing must not wait for a tick that a
// crash may never reach.
type flushOnError struct {
	w      io.Writer
	buffer *logBuffer
}

func (f flushOnError) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f flushOnError) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	n, err := f.w.Write(p)
	if level >= zerolog.ErrorLevel {
		if ferr := f.buffer.Flush(); err == nil {
			err = ferr
		}
	}
	return n, err
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
