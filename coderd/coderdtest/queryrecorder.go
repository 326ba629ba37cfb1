package coderdtest

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// QueryRecorder is a pgx QueryTracer (see Options.QueryTracer) that records
// the queries run on behalf of HTTP requests, that is with a context that
// comes from an http.Server; the server's background work is not recorded.
// A query is recorded by its sqlc name ("GetWorkspaceByID"), other SQL by
// its first line.
type QueryRecorder struct {
	mu    sync.Mutex
	names []string
}

var _ pgx.QueryTracer = (*QueryRecorder)(nil)

// sqlcName matches the comment sqlc puts first in every generated query.
var sqlcName = regexp.MustCompile(`^-- name: (\w+) :`)

// TraceQueryStart implements pgx.QueryTracer.
func (q *QueryRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if ctx.Value(http.ServerContextKey) == nil {
		return ctx
	}
	name, _, _ := strings.Cut(strings.TrimSpace(data.SQL), "\n")
	if m := sqlcName.FindStringSubmatch(name); m != nil {
		name = m[1]
	}
	q.mu.Lock()
	q.names = append(q.names, name)
	q.mu.Unlock()
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (q *QueryRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Take returns the names recorded since the last Take, in order.
func (q *QueryRecorder) Take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	names := q.names
	q.names = nil
	return names
}
