package httpmw

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// ParamConfig configures the middlewares that resolve a path parameter
// ({workspace}, {workspacebuild}, {workspaceagent}, {template},
// {templateversion}, {fileid}) to its row. Each one answers a malformed ID
// with 400, a missing row with NotFound and a failed query with 500, and
// otherwise stores the row in the request context for the handler. None of
// them authorizes: whether the caller may see or act on the row is the
// handler's decision.
type ParamConfig struct {
	// DB is the store rows are loaded from.
	DB *database.Store
	// NotFound answers a request whose row does not exist; nil means
	// httpapi.ResourceNotFound (404). A route that answers callers who may
	// not use a row with something else (e.g. 403) passes the same answer,
	// so that a missing row and a forbidden one look alike.
	NotFound http.HandlerFunc
}

func (c ParamConfig) notFound(w http.ResponseWriter, r *http.Request) {
	if c.NotFound != nil {
		c.NotFound(w, r)
		return
	}
	httpapi.ResourceNotFound(w, r)
}

// loadFailed answers a failed row lookup: NotFound when there is no such
// row, 500 otherwise.
func (c ParamConfig) loadFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	if database.IsNotFound(err) {
		c.notFound(w, r)
		return
	}
	httpapi.InternalServerError(w, r, fmt.Sprintf("Internal error fetching %s.", what), err)
}

// uuidParam parses the UUID path parameter name, answering 400 when it is
// malformed.
func uuidParam(w http.ResponseWriter, r *http.Request, name, what string) (uuid.UUID, bool) {
	id, err := uuid.Parse(chi.URLParam(r, name))
	if err != nil {
		httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{
			Message: fmt.Sprintf("Invalid %s ID.", what),
			Detail:  fmt.Sprintf("The {%s} path parameter must be a UUID.", name),
		})
		return uuid.Nil, false
	}
	return id, true
}

// paramKey is the context key of the row of type T a middleware stored.
type paramKey[T any] struct{}

func withParam[T any](ctx context.Context, v T) context.Context {
	return context.WithValue(ctx, paramKey[T]{}, v)
}

// param returns the row of type T stored by one of the middlewares named
// in mw; a handler mounted without them is a programming error.
func param[T any](r *http.Request, mw string) T {
	v, ok := r.Context().Value(paramKey[T]{}).(T)
	if !ok {
		panic("developer error: route is missing the " + mw + " middleware")
	}
	return v
}
