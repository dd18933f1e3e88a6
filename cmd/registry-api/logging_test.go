package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLoggerReplacesOversizedLines(t *testing.T) {
	var out bytes.Buffer
	cfg := testConfig(t)
	cfg.LogLineBytes = minLogLineBytes
	log, err := newLogger(cfg, &out)
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
