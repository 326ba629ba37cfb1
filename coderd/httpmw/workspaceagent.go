package httpmw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/database"
)

type workspaceAgentContextKey struct{}

// WorkspaceAgentFromContext returns the agent authenticated by
// ExtractWorkspaceAgent.
func WorkspaceAgentFromContext(ctx context.Context) (database.WorkspaceAgent, bool) {
	a, ok := ctx.Value(workspaceAgentContextKey{}).(database.WorkspaceAgent)
	return a, ok
}

type workspaceAgentWorkspaceKey struct{}

// WorkspaceAgentWorkspaceID returns the ID of the workspace of the agent
// authenticated by ExtractWorkspaceAgent (uuid.Nil without it).
func WorkspaceAgentWorkspaceID(r *http.Request) uuid.UUID {
	id, _ := r.Context().Value(workspaceAgentWorkspaceKey{}).(uuid.UUID)
	return id
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
// token is answered with 401, and so is the token of an agent that is no
// longer part of its workspace (see AgentTokenRefusal): the message tells
// a permanent refusal (agentsdk.TokenRevokedMessage) from a temporary one.
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
			row, err := db.GetWorkspaceAgentAuthByTokenHash(ctx, apikey.HashAgentToken(token))
			if errors.Is(err, pgx.ErrNoRows) {
				httpapi.Write(ctx, w, http.StatusUnauthorized, codersdk.Response{Message: agentsdk.TokenInvalidMessage})
				return
			}
			if err != nil {
				httpapi.InternalServerError(w, r, "Internal error authenticating agent.", err)
				return
			}
			if refusal, refused := AgentTokenRefusal(AgentTokenStanding{
				WorkspaceDeleted:     row.WorkspaceDeleted,
				AgentBuildNumber:     row.AgentBuildNumber,
				LatestBuildNumber:    row.LatestBuildNumber,
				LatestBuildCompleted: row.LatestBuildCompleted,
			}); refused {
				httpapi.Write(ctx, w, http.StatusUnauthorized, refusal)
				return
			}
			ctx = context.WithValue(ctx, workspaceAgentContextKey{}, row.WorkspaceAgent)
			ctx = context.WithValue(ctx, workspaceAgentWorkspaceKey{}, row.WorkspaceID)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// AgentTokenStanding is where an agent stands in its workspace: the facts
// AgentTokenRefusal decides on.
type AgentTokenStanding struct {
	// WorkspaceDeleted is set once the workspace's delete build completed.
	WorkspaceDeleted bool
	// AgentBuildNumber is the number of the build the agent belongs to.
	AgentBuildNumber int32
	// LatestBuildNumber is the number of the workspace's latest build.
	LatestBuildNumber int32
	// LatestBuildCompleted is whether the latest build's job has completed
	// (succeeded, failed or canceled).
	LatestBuildCompleted bool
}

// AgentTokenRefusal decides whether an agent token is still good. It is
// refused permanently (agentsdk.TokenRevokedMessage) when the workspace is
// deleted or a later build has completed (the agent is not in the latest
// build). While a later build is still running, the agent of the build
// right before it keeps working, so that a stopping or deleting workspace's
// agent can report its shutdown scripts and lifecycle; any older agent is
// refused temporarily (agentsdk.TokenBuildPendingMessage): its token may
// come back with the running build, which keeps the agent resource.
func AgentTokenRefusal(s AgentTokenStanding) (codersdk.Response, bool) {
	switch {
	case s.WorkspaceDeleted:
		return codersdk.Response{Message: agentsdk.TokenRevokedMessage, Detail: "The workspace was deleted."}, true
	case s.AgentBuildNumber == s.LatestBuildNumber:
		return codersdk.Response{}, false
	case !s.LatestBuildCompleted && s.AgentBuildNumber == s.LatestBuildNumber-1:
		return codersdk.Response{}, false
	case !s.LatestBuildCompleted:
		return codersdk.Response{
			Message: agentsdk.TokenBuildPendingMessage,
			Detail:  fmt.Sprintf("The agent belongs to build %d; build %d is still running.", s.AgentBuildNumber, s.LatestBuildNumber),
		}, true
	default:
		return codersdk.Response{
			Message: agentsdk.TokenRevokedMessage,
			Detail:  fmt.Sprintf("The agent belongs to build %d; the workspace's latest build is %d.", s.AgentBuildNumber, s.LatestBuildNumber),
		}, true
	}
}
