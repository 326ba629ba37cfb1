package httpmw

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
)

// StatusRecorder wraps a ResponseWriter and remembers the status written.
type StatusRecorder struct {
	http.ResponseWriter
	// Status is the status code written (200 if the handler only wrote a body).
	Status int
	// Bytes counts the body bytes written.
	Bytes int
}

// WriteHeader implements http.ResponseWriter.
func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.Bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer
// (hijacking for websockets, flushing).
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// RoutePattern returns the chi route pattern that served r, or "unknown".
func RoutePattern(r *http.Request) string {
	if rctx := chi.RouteContext(r.Context()); rctx != nil {
		if p := rctx.RoutePattern(); p != "" {
			return p
		}
	}
	return "unknown"
}

// Logger logs one structured line per request and puts the logger, tagged
// with the request's method and path, in the request context for
// handlers (httpapi.Logger; httpapi.InternalServerError logs with it).
// A nil logger discards.
func Logger(logger *slog.Logger) func(http.Handler) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &StatusRecorder{ResponseWriter: w}
			reqLogger := logger.With("method", r.Method, "path", r.URL.Path)
			next.ServeHTTP(rec, r.WithContext(httpapi.WithLogger(r.Context(), reqLogger)))
			status := rec.Status
			if status == 0 {
				status = http.StatusOK
			}
			level := slog.LevelDebug
			switch {
			case status == http.StatusServiceUnavailable:
				// The database is down: logged where it is detected.
				level = slog.LevelWarn
			case status >= 500:
				level = slog.LevelError
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", RoutePattern(r)),
				slog.Int("status", status),
				slog.Int("bytes", rec.Bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr),
			}
			logger.LogAttrs(r.Context(), level, "http request", attrs...)
		})
	}
}
