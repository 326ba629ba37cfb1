package derp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"tailscale.com/types/logger"
)

// discardLogger returns l, or a logger that drops everything when l is nil.
func discardLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// logfFor adapts a slog.Logger to tailscale's printf-style logger. Verbose
// upstream lines ("[v1] ...", "[v2] ...") go to Debug, the rest to Info.
func logfFor(l *slog.Logger) logger.Logf {
	return func(format string, args ...any) {
		msg := strings.TrimSpace(fmt.Sprintf(format, args...))
		level := slog.LevelInfo
		if strings.HasPrefix(msg, "[v1] ") || strings.HasPrefix(msg, "[v2] ") {
			level = slog.LevelDebug
			msg = msg[5:]
		}
		l.Log(context.Background(), level, msg)
	}
}
