package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

func TestLoggerReplacesOversizedLines(t *testing.T) {
	var out bytes.Buffer
	cfg := testConfig(t)
	cfg.LogLineBytes = minLogLineBytes
	log, _, err := newLogger(cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("path", "/v1/envs").Msg("request")
	log.Error().Str("stack", strings.Repeat("goroutine 1 [running]:\n", 200)).Msg("handler panicked")

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out.String())
	}
	var short, long map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &short); err != nil || short["path"] != "/v1/envs" {
		t.Errorf("a short line is changed: %s", lines[0])
	}
	if len(lines[1]) > minLogLineBytes {
		t.Errorf("replacement line is %d bytes, over the cap of %d", len(lines[1]), minLogLineBytes)
	}
	if err := json.Unmarshal([]byte(lines[1]), &long); err != nil {
		t.Fatalf("replacement line is not JSON: %v: %s", err, lines[1])
	}
	if long["level"] != "warn" || long["bytes"].(float64) <= minLogLineBytes || !strings.Contains(long["prefix"].(string), `"level":"error"`) {
		t.Errorf("replacement line does not describe the original: %s", lines[1])
	}
}

// TestLogLinesAreWrittenTogether: with a flush interval, lines reach the
// output together at the next tick, an error line at once with those before
// it, and what is left when the logger closes.
func TestLogLinesAreWrittenTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out testkit.Buffer
		cfg := testConfig(t)
		cfg.LogLevel = "info"
		cfg.LogFlushInterval = 100 * time.Millisecond
		log, closeLog, err := newLogger(cfg, &out)
		if err != nil {
			t.Fatal(err)
		}
		lines := func() int { return strings.Count(out.String(), "\n") }

		log.Info().Msg("request")
		log.Info().Msg("request")
		if n := lines(); n != 0 {
			t.Fatalf("%d lines written before the flush interval, want 0", n)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if n := lines(); n != 2 {
			t.Fatalf("%d lines written after one interval, want 2", n)
		}

		log.Info().Msg("request")
		log.Error().Msg("handler panicked")
		if n := lines(); n != 4 {
			t.Errorf("%d lines after an error line, want 4: the error and the line before it at once", n)
		}

		log.Warn().Msg("overloaded")
		closeLog()
		if n := lines(); n != 5 {
			t.Errorf("%d lines after close, want 5", n)
		}
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if !json.Valid([]byte(l)) {
				t.Errorf("line is not JSON: %s", l)
			}
		}
	})
}

// TestLogLinesOverTheBufferAreWrittenAtOnce: a flood does not wait for the
// tick, and no line is split.
func TestLogLinesOverTheBufferAreWrittenAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out testkit.Buffer
		cfg := testConfig(t)
		cfg.LogFlushInterval = time.Second
		log, closeLog, err := newLogger(cfg, &out)
		if err != nil {
			t.Fatal(err)
		}
		defer closeLog()
		path := strings.Repeat("p", 1000)
		for range 2 * logBufferBytes / 1000 {
			log.Info().Str("path", path).Msg("request")
		}
		written := out.String()
		if len(written) < logBufferBytes {
			t.Fatalf("%d bytes written with %d logged, want the buffer written out as it filled", len(written), 2*logBufferBytes)
		}
		if !strings.HasSuffix(written, "\n") {
			t.Error("written output ends inside a line")
		}
	})
}
