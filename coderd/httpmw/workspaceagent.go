package httpmw

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

type workspaceAgentContextKey struct{}

// WorkspaceAgentFromContext returns the agent authenticated by
// ExtractWorkspaceAgent.
func WorkspaceAgentFromContext(ctx context.Context) (database.WorkspaceAgent, bool) {
	a, ok := ctx.Value(workspaceAgentContextKey{}).(database.WorkspaceAgent)
	return a, ok
}

// WorkspaceAgent returns the agent authenticated by ExtractWorkspaceAgent;
// it must run behind that middleware.
func WorkspaceAgent(r *http.Request) database.WorkspaceAgent {
	a, ok := WorkspaceAgentFromContext(r.Context())
	if !ok {
		panic("developer error: WorkspaceAgent used without ExtractWorkspaceAgent middleware")
	}
	return a
}

// ExtractWorkspaceAgent authenticates a request by its workspace agent
// token, sent in the Coder-Session-Token header (agents are not browsers:
// no cookie), and stores the agent in the context. A missing or unknown
// token is answered with 401.
func ExtractWorkspaceAgent(db *database.Store) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			token := strings.TrimSpace(r.Header.Get(codersdk.SessionTokenHeader))
			if token == "" {
				httpapi.Write(ctx, w, http.StatusUnauthorized, codersdk.Response{
					Message: "Agent token required in the " + codersdk.SessionTokenHeader + " header.",
				})
				return
			}
			agent, err := db.GetWorkspaceAgentByAuthTokenHash(ctx, apikey.HashAgentToken(token))
			if errors.Is(err, pgx.ErrNoRows) {
				httpapi.Write(ctx, w, http.StatusUnauthorized, codersdk.Response{Message: "Invalid agent token."})
				return
			}
			if err != nil {
				httpapi.InternalServerError(w, r, "Internal error authenticating agent.", err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, workspaceAgentContextKey{}, agent)))
		})
	}
}
