package coderd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/coderd/workspaceapps"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/database"
)

// disconnectTimeout bounds the coordinator work of ending one revoked peer.
const disconnectTimeout = 5 * time.Second

// newRevocations builds the API's session registry on the deployment's
// pubsub (nil: this coderd only).
func newRevocations(api *API) (*revocation.Registry, error) {
	return revocation.New(revocation.Options{
		Logger:  api.logger,
		Pubsub:  api.opts.Pubsub,
		Recheck: api.sessionAllowed,
		// Registration times are real times (Authorization.CheckedAt),
		// whatever clock the API runs on.
	})
}

// revoke ends the live sessions e covers, here and (through pubsub) on
// every replica, and forgets cached app decisions. A failure to publish is
// logged: the database change that caused the revocation already refuses
// new requests everywhere.
func (api *API) revoke(ctx context.Context, e revocation.Event) {
	api.apps.server.ForgetGrants()
	if err := api.revocations.Revoke(context.WithoutCancel(ctx), e); err != nil {
		api.logger.ErrorContext(ctx, "publish revocation", "kind", e.Kind, "id", e.ID, "error", err)
	}
}

// trackUserSession registers the live connection of a request
// authenticated by an API key, reaching workspace workspaceID: end is
// called when its key, user or workspace is revoked. Call the returned
// function when the connection ends.
func (api *API) trackUserSession(r *http.Request, kind string, workspaceID uuid.UUID, end func()) func() {
	auth, _ := httpmw.AuthorizationFromContext(r.Context())
	return api.revocations.Register(revocation.Session{
		Kind: kind, APIKeyID: auth.Key.ID, UserID: auth.User.ID, WorkspaceID: workspaceID,
	}, auth.CheckedAt, end)
}

// disconnectPeer removes a revoked peer from the coordinator so that its
// tunnel peers drop it (coordinator.Disconnect).
func (api *API) disconnectPeer(id uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.Background(), disconnectTimeout)
	defer cancel()
	if err := coordinator.Disconnect(ctx, api.agents.coord, id); err != nil {
		api.logger.Warn("disconnect revoked peer", "peer_id", id, "error", err)
	}
}

// sessionAllowed re-checks a live session against the database (after the
// pubsub may have dropped revocations): its key still exists, its user is
// active, its workspace is running.
func (api *API) sessionAllowed(ctx context.Context, s revocation.Session) (bool, error) {
	if s.APIKeyID != "" {
		if _, err := api.db.GetAPIKeyByID(ctx, s.APIKeyID); errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("get api key: %w", err)
		}
	}
	if s.UserID != uuid.Nil {
		u, err := api.db.GetUserByID(ctx, s.UserID)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("get user: %w", err)
		}
		if u.Deleted || u.Status == database.UserStatusSuspended {
			return false, nil
		}
	}
	if s.WorkspaceID != uuid.Nil {
		ws, err := api.db.GetWorkspaceByID(ctx, s.WorkspaceID)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("get workspace: %w", err)
		}
		if ws.Deleted {
			return false, nil
		}
		b, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
		if err != nil {
			return false, fmt.Errorf("get latest build: %w", err)
		}
		// An agent's own session stays during a stop (its token is still
		// accepted) and ends when the stop completed; users' sessions end
		// with the stop request.
		if b.Transition != database.WorkspaceTransitionStart {
			if !s.Agent {
				return false, nil
			}
			j, err := api.db.GetProvisionerJobByID(ctx, b.JobID)
			if err != nil {
				return false, fmt.Errorf("get latest build job: %w", err)
			}
			if j.CompletedAt.Valid {
				return false, nil
			}
		}
	}
	return true, nil
}

// agentInRunningBuild answers a user's new connection (coordination,
// terminal) to an agent whose workspace is not running: the latest build
// must be a start and include the agent. It writes 409 and returns false
// otherwise, so a stopped or stopping workspace cannot be reached again
// with credentials that are still valid.
func (api *API) agentInRunningBuild(w http.ResponseWriter, r *http.Request, ws database.Workspace, agent database.WorkspaceAgent) bool {
	ctx := r.Context()
	b, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error fetching the latest build.", err)
		return false
	}
	if ws.Deleted || b.Transition != database.WorkspaceTransitionStart {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: "The workspace is not running.",
			Detail:  fmt.Sprintf("Its latest build (#%d) is a %s. Start the workspace to connect.", b.BuildNumber, b.Transition),
		})
		return false
	}
	agents, err := api.db.GetWorkspaceAgentsInLatestBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error fetching the workspace's agents.", err)
		return false
	}
	if !slices.ContainsFunc(agents, func(a database.WorkspaceAgent) bool { return a.ID == agent.ID }) {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: "The agent is not part of the workspace's latest build.",
			Detail:  "A newer build replaced it; connect to the current agent.",
		})
		return false
	}
	return true
}

// trackAppRequest registers a proxied workspace app request (a websocket
// app's connection lives as long as the request): revoking its key, its
// user or its workspace cancels the request's context, which closes it.
func (api *API) trackAppRequest(ctx context.Context, g *workspaceapps.Grant) (context.Context, func()) {
	// An anonymous request to a public app has no key or user: only its
	// workspace can be revoked.
	ctx, cancel := context.WithCancel(ctx)
	unregister := api.revocations.Register(revocation.Session{Kind: "app", APIKeyID: g.KeyID, UserID: g.UserID, WorkspaceID: g.WorkspaceID}, g.CheckedAt, cancel)
	return ctx, func() { unregister(); cancel() }
}
