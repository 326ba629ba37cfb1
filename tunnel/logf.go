package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"tailscale.com/types/logger"
)

// slogLogf adapts a *slog.Logger to tailscale's printf-style logger.
// Verbose lines ("[v1] ", "[v2] ") are logged at Debug, the rest at Info.
func slogLogf(l *slog.Logger) logger.Logf {
	return func(format string, args ...any) {
		ctx := context.Background()
		if !l.Enabled(ctx, slog.LevelDebug) && (isVerbose(format) || !l.Enabled(ctx, slog.LevelInfo)) {
			return // cheap path: skip formatting lines nobody reads
		}
		msg := strings.TrimSuffix(fmt.Sprintf(format, args...), "\n")
		level := slog.LevelInfo
		if isVerbose(msg) {
			level = slog.LevelDebug
		}
		if !l.Enabled(ctx, level) {
			return
		}
		l.Log(ctx, level, msg)
	}
}

// isVerbose reports whether a tailscale log line is verbose: "[v1] " or
// "[v2] " at the start or after a short subsystem prefix such as "wg: ".
func isVerbose(msg string) bool {
	head := msg[:min(len(msg), 40)]
	return strings.Contains(head, "[v1] ") || strings.Contains(head, "[v2] ")
}
