package coderd

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/database"
)

// agentCoordinate serves GET /api/v2/workspaceagents/me/coordinate: the
// agent's coordination websocket. Agents may not add tunnels; they only
// receive the tunnels clients open to them. While the socket is up the
// agent's last_connected_at is refreshed every heartbeat interval; when it
// drops, disconnected_at is recorded.
func (api *API) agentCoordinate(w http.ResponseWriter, r *http.Request) {
	connected := time.Now()
	agent := httpmw.WorkspaceAgent(r)
	nodeKey, ok := parseNodeKey(w, r)
	if !ok {
		return
	}
	ws, ok := api.acceptWebsocket(w, r)
	if !ok {
		return
	}
	connCtx, cancel := api.agentConnContext(r.Context())
	defer cancel()
	// When the workspace's stop or delete completes (the agent's token
	// stops working), this socket is closed and the agent removed from the
	// coordinator (its clients drop it). While the stop runs the agent
	// stays, to hear its clients being removed.
	ctx, revoke := context.WithCancelCause(connCtx)
	defer revoke(nil)
	unregister := api.revocations.Register(revocation.Session{
		Kind: "agent coordinate", WorkspaceID: httpmw.WorkspaceAgentWorkspaceID(r), Agent: true,
	}, connected, func() {
		revoke(coordinator.ErrRevoked)
		api.disconnectPeer(agent.ID)
	})
	defer unregister()

	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		api.agentHeartbeats(ctx, agent)
	}()
	err := coordinator.ServeWebsocket(ctx, ws, coordinator.ServeOptions{
		Coordinator:  api.agents.coord,
		ID:           agent.ID,
		Name:         "agent " + agent.Name,
		Auth:         nil,
		NodeKey:      nodeKey,
		NodeKeys:     api.agents.nodeKeys,
		DERPMaps:     api.agents.derpMaps,
		Logger:       api.logger.With("component", "coordinate", "agent_id", agent.ID),
		PingInterval: api.agents.opts.CoordinatorPingInterval,
	})
	if err != nil {
		api.logger.DebugContext(ctx, "agent coordinate ended", "agent_id", agent.ID, "error", err)
	}
	cancel()
	<-hbDone
}

// agentConnContext returns a context for a long-lived agent connection: it
// ends with the request or when the API closes, but not with the request's
// handler deadline.
func (api *API) agentConnContext(req context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(req))
	stopReq := context.AfterFunc(req, cancel)
	stopAPI := context.AfterFunc(api.agents.ctx, cancel)
	return ctx, func() {
		stopReq()
		stopAPI()
		cancel()
	}
}

// agentHeartbeats records the agent as connected until ctx is done, then
// records the disconnect.
func (api *API) agentHeartbeats(ctx context.Context, agent database.WorkspaceAgent) {
	logger := api.logger.With("agent_id", agent.ID)
	first := agent.FirstConnectedAt
	update := func(ctx context.Context, disconnected bool) {
		now := api.now()
		if !first.Valid {
			first = pgtype.Timestamptz{Time: now, Valid: true}
		}
		params := database.UpdateWorkspaceAgentConnectionByIDParams{
			ID:               agent.ID,
			FirstConnectedAt: first,
			LastConnectedAt:  pgtype.Timestamptz{Time: now, Valid: true},
			// This instance holds the connection (see agentconns.go).
			LastConnectedReplicaID: uuid.NullUUID{UUID: api.conns.id, Valid: true},
			UpdatedAt:              now,
		}
		if disconnected {
			params.DisconnectedAt = pgtype.Timestamptz{Time: now, Valid: true}
		}
		if err := api.db.UpdateWorkspaceAgentConnectionByID(ctx, params); err != nil {
			logger.WarnContext(ctx, "update agent connection", "error", err)
		}
	}
	update(ctx, false)
	ticker := time.NewTicker(api.agents.opts.HeartbeatInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			// The request is over: record the disconnect with a fresh,
			// bounded context.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			update(dctx, true)
			cancel()
			return
		case <-ticker.C:
			update(ctx, false)
		}
	}
}

// workspaceAgentCoordinate serves GET /api/v2/workspaceagents/{agent}/coordinate
// for users. Only a user who may connect to the agent's workspace (its owner
// or a site owner) gets a websocket; everyone else gets 403 before anything
// about the agent is sent. The client's peer ID is derived from the user and
// its client_id (see workspaceAgentTailnetClient; random when absent) and
// it may only open a tunnel to this agent.
func (api *API) workspaceAgentCoordinate(w http.ResponseWriter, r *http.Request) {
	agent, ok := api.authorizedAgent(w, r, true)
	if !ok {
		return
	}
	clientID, ok := parseClientID(w, r)
	if !ok {
		return
	}
	nodeKey, ok := parseNodeKey(w, r)
	if !ok {
		return
	}
	if clientID == uuid.Nil {
		clientID = uuid.New()
	}
	workspace := httpmw.WorkspaceParam(r)
	if !api.agentInRunningBuild(w, r, workspace, agent) {
		return
	}
	auth, _ := httpmw.AuthorizationFromContext(r.Context())
	ws, ok := api.acceptWebsocket(w, r)
	if !ok {
		return
	}
	connCtx, cancel := api.agentConnContext(r.Context())
	defer cancel()
	peerID := tailnetClientPeerID(auth.User.ID, clientID)
	// Revoking the key, suspending or deleting the user, or stopping the
	// workspace closes this socket and removes the client and its tunnel
	// from the coordinator: the agent drops the peer, which ends the
	// WireGuard session and every connection through it.
	ctx, revoke := context.WithCancelCause(connCtx)
	defer revoke(nil)
	var revoked atomic.Bool
	defer api.trackUserSession(r, "client coordinate", workspace.ID, func() {
		revoked.Store(true)
		revoke(coordinator.ErrRevoked)
		api.disconnectPeer(peerID)
	})()

	err := coordinator.ServeWebsocket(ctx, ws, coordinator.ServeOptions{
		Coordinator:  api.agents.coord,
		ID:           peerID,
		Name:         "client of agent " + agent.Name,
		Auth:         coordinator.AllowTunnelsTo(agent.ID),
		NodeKey:      nodeKey,
		NodeKeys:     api.agents.nodeKeys,
		DERPMaps:     api.agents.derpMaps,
		Logger:       api.logger.With("component", "coordinate", "peer_id", peerID, "agent_id", agent.ID),
		PingInterval: api.agents.opts.CoordinatorPingInterval,
	})
	if err != nil {
		api.logger.DebugContext(ctx, "client coordinate ended", "peer_id", peerID, "error", err)
	}
	// A client whose socket dropped without a goodbye is only lost: the
	// coordinator keeps its tunnel, and the agent its WireGuard peer, for
	// it to resume (coordinator.DefaultLostTimeout). A revocation in that
	// time must still remove it, so it stays registered as long.
	if err != nil && !revoked.Load() {
		unregister := api.trackUserSession(r, "lost client", workspace.ID, func() { api.disconnectPeer(peerID) })
		time.AfterFunc(coordinator.DefaultLostTimeout, unregister)
	}
}
