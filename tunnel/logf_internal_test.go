package tunnel

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestSlogLogfLevels(t *testing.T) {
	tests := []struct {
		format string
		args   []any
		want   string
	}{
		{"[v1] magicsock: %s", []any{"x"}, "level=DEBUG"},
		{"wg: [v2] Routine %d", []any{1}, "level=DEBUG"},
		{"netcheck: [v1] report", nil, "level=DEBUG"},
		{"magicsock: home is now derp-%d", []any{1}, "level=INFO"},
	}
	for _, tc := range tests {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			logf := slogLogf(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
			logf(tc.format, tc.args...)
			if !strings.Contains(buf.String(), tc.want) {
				t.Fatalf("log line %q, want %s", buf.String(), tc.want)
			}
		})
	}
	var buf bytes.Buffer
	logf := slogLogf(slog.New(slog.NewTextHandler(&buf, nil))) // Info level
	logf("[v1] hidden")
	logf("wg: [v2] hidden")
	if buf.Len() != 0 {
		t.Fatalf("verbose lines logged at Info level: %q", buf.String())
	}
}
