// Package httpapi holds the helpers every coderd handler uses to read
// requests and write responses in the API's JSON shapes.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 1 << 20

type loggerContextKey struct{}

// WithLogger returns ctx carrying the request's logger. httpmw.Logger puts
// one, tagged with the request's method and path, in every request.
func WithLogger(ctx context.Context, logger *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerContextKey{}, logger)
}

// Logger returns the request's logger (see WithLogger), or slog.Default()
// when the request did not pass through httpmw.Logger, so that errors are
// never dropped silently.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerContextKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.Default()
}

// Write writes v as a JSON response with the given status.
func Write(ctx context.Context, w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(v); err != nil {
		Logger(ctx).ErrorContext(ctx, "encode response", "error", err)
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Validator is implemented by request bodies that check their own fields.
// It returns one entry per invalid field.
type Validator interface {
	Validate() []codersdk.ValidationError
}

// Read decodes the JSON request body into v. Unknown fields are tolerated.
// On malformed JSON, a string holding a NUL character or invalid UTF-8
// (PostgreSQL cannot store them; textErrors), or when v (a pointer) implements Validator
// and reports problems, it writes a 400 response with the error shape and
// returns false.
func Read(ctx context.Context, w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBodyBytes))
	if err := dec.Decode(v); err != nil {
		resp := codersdk.Response{Message: "Request body must be valid JSON.", Detail: err.Error()}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			resp.Validations = []codersdk.ValidationError{{
				Field:  typeErr.Field,
				Detail: fmt.Sprintf("must be of type %s", typeErr.Type),
			}}
		}
		Write(ctx, w, http.StatusBadRequest, resp)
		return false
	}
	if errs := textErrors(reflect.ValueOf(v), "", nil); len(errs) > 0 {
		Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     "Validation failed.",
			Validations: errs,
		})
		return false
	}
	if val, ok := v.(Validator); ok {
		if errs := val.Validate(); len(errs) > 0 {
			Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message:     "Validation failed.",
				Validations: errs,
			})
			return false
		}
	}
	return true
}

// ResourceNotFound writes a 404. It is also used when the caller may not
// know whether the resource exists.
func ResourceNotFound(w http.ResponseWriter, r *http.Request) {
	Write(r.Context(), w, http.StatusNotFound, codersdk.Response{
		Message: "Resource not found or you do not have access to this resource.",
	})
}

// Forbidden writes a 403.
func Forbidden(w http.ResponseWriter, r *http.Request) {
	Write(r.Context(), w, http.StatusForbidden, codersdk.Response{
		Message: "Forbidden.",
		Detail:  "You do not have permission to perform this action.",
	})
}

// InternalServerError logs err with the request's logger (see Logger) and
// writes a 500 whose message names the failed step. The error itself is
// only logged, never sent: driver and SQL text are not the client's
// business. Callers do not log it themselves. When err means the database
// cannot be reached it writes DatabaseUnavailable's 503 instead (logged at
// warn): the request was fine and the client may retry. When err is a
// PostgreSQL data exception (input PostgreSQL could not take, which the
// handler should have refused) it writes a 400 without the driver text.
func InternalServerError(w http.ResponseWriter, r *http.Request, message string, err error) {
	ctx := r.Context()
	if database.IsUnavailable(err) {
		Logger(ctx).WarnContext(ctx, "database unavailable", "message", message, "error", err)
		DatabaseUnavailable(w, r)
		return
	}
	if database.IsDataException(err) {
		Logger(ctx).WarnContext(ctx, "database refused request input", "message", message, "error", err)
		Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Invalid input.",
			Detail:  "A value in the request is out of range or holds characters that cannot be stored.",
		})
		return
	}
	Logger(ctx).ErrorContext(ctx, "internal server error", "message", message, "error", err)
	Write(ctx, w, http.StatusInternalServerError, codersdk.Response{
		Message: message,
		Detail:  "The error was logged on the server.",
	})
}

// DatabaseUnavailable writes a 503 (with Retry-After) for a request that
// failed only because the database cannot be reached.
func DatabaseUnavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	Write(r.Context(), w, http.StatusServiceUnavailable, codersdk.Response{
		Message: "The database is unavailable.",
		Detail:  "coderd cannot reach its database right now; try again shortly.",
	})
}

// NotFoundHandler answers unknown routes with the error shape.
func NotFoundHandler(w http.ResponseWriter, r *http.Request) {
	Write(r.Context(), w, http.StatusNotFound, codersdk.Response{
		Message: fmt.Sprintf("Route %s %s not found.", r.Method, r.URL.Path),
	})
}

// MethodNotAllowedHandler answers known routes called with the wrong method.
func MethodNotAllowedHandler(w http.ResponseWriter, r *http.Request) {
	Write(r.Context(), w, http.StatusMethodNotAllowed, codersdk.Response{
		Message: fmt.Sprintf("Method %s not allowed on %s.", r.Method, r.URL.Path),
	})
}

// Required returns a validation error for each empty field in fields
// (name → value).
func Required(fields ...[2]string) []codersdk.ValidationError {
	var errs []codersdk.ValidationError
	for _, f := range fields {
		if strings.TrimSpace(f[1]) == "" {
			errs = append(errs, codersdk.ValidationError{Field: f[0], Detail: "is required"})
		}
	}
	return errs
}
