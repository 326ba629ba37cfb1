package coderd

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// maxLogsPerResponse bounds the logs returned (or streamed) at once.
const maxLogsPerResponse = 1000

// authorizedAgent returns the {workspaceagent} of the route when the caller
// may read its workspace (connect=false; 404 otherwise) or connect to it
// (connect=true; 403 otherwise, the answer the route also gives for an
// agent that does not exist, so nothing about it is revealed).
func (api *API) authorizedAgent(w http.ResponseWriter, r *http.Request, connect bool) (database.WorkspaceAgent, bool) {
	ws := httpmw.WorkspaceParam(r)
	if connect {
		if !api.authorize(r, rbac.ActionUpdate, workspaceObject(ws)) {
			httpapi.Forbidden(w, r)
			return database.WorkspaceAgent{}, false
		}
	} else if !api.authorize(r, rbac.ActionRead, workspaceObject(ws)) {
		httpapi.ResourceNotFound(w, r)
		return database.WorkspaceAgent{}, false
	}
	return httpmw.WorkspaceAgentParam(r), true
}

// workspaceAgentParams are the {workspaceagent} middlewares: for routes
// that read the agent (a missing agent is 404) and for routes that connect
// to it (403, like an agent the caller may not reach).
func (api *API) workspaceAgentParams() (read, connect func(http.Handler) http.Handler) {
	read = httpmw.ExtractWorkspaceAgentParam(httpmw.ParamConfig{DB: api.db})
	connect = httpmw.ExtractWorkspaceAgentParam(httpmw.ParamConfig{DB: api.db, NotFound: httpapi.Forbidden})
	return read, connect
}

// workspaceAgent serves GET /api/v2/workspaceagents/{workspaceagent}.
func (api *API) workspaceAgent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent, ok := api.authorizedAgent(w, r, false)
	if !ok {
		return
	}
	ids := []uuid.UUID{agent.ID}
	apps, err := api.db.GetWorkspaceAppsByAgentIDs(ctx, ids)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error getting workspace apps.", err)
		return
	}
	scripts, err := api.db.GetWorkspaceAgentScriptsByAgentIDs(ctx, ids)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error getting agent scripts.", err)
		return
	}
	out, err := convert.Agent(agent, httpmw.WorkspaceParam(r).ID, apps, scripts, api.agentStatus(agent))
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error converting workspace agent.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// workspaceAgentMetadata serves GET /api/v2/workspaceagents/{workspaceagent}/metadata:
// the agent's metadata items with their latest reported results.
func (api *API) workspaceAgentMetadata(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent, ok := api.authorizedAgent(w, r, false)
	if !ok {
		return
	}
	rows, err := api.db.GetWorkspaceAgentMetadata(ctx, agent.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error getting agent metadata.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, convert.AgentMetadata(rows))
}

// workspaceAgentLogs serves GET /api/v2/workspaceagents/{workspaceagent}/logs:
// the logs with an ID above ?after=, or with ?follow a websocket that
// streams them (JSON arrays of logs) as they arrive.
func (api *API) workspaceAgentLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent, ok := api.authorizedAgent(w, r, false)
	if !ok {
		return
	}
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "Invalid after.", Validations: []codersdk.ValidationError{{Field: "after", Detail: "must be a non-negative integer"}},
			})
			return
		}
		after = n
	}
	fetch := func() ([]database.WorkspaceAgentLog, error) {
		return api.db.GetWorkspaceAgentLogsAfterLimit(r.Context(), database.GetWorkspaceAgentLogsAfterLimitParams{
			AgentID: agent.ID, AfterID: after, MaxRows: maxLogsPerResponse,
		})
	}
	if _, follow := r.URL.Query()["follow"]; !follow {
		logs, err := fetch()
		if err != nil {
			httpapi.InternalServerError(w, r, "Internal error getting logs.", err)
			return
		}
		httpapi.Write(ctx, w, http.StatusOK, convert.AgentLogs(logs))
		return
	}
	ws, ok := api.acceptWebsocket(w, r)
	if !ok {
		return
	}
	defer ws.CloseNow()
	ctx, cancel := api.agentConnContext(r.Context())
	defer cancel()
	// The client only reads; a read loop notices it going away.
	ctx = ws.CloseRead(ctx)
	ticker := time.NewTicker(api.agents.opts.LogsPollInterval)
	defer ticker.Stop()
	for {
		logs, err := api.db.GetWorkspaceAgentLogsAfterLimit(ctx, database.GetWorkspaceAgentLogsAfterLimitParams{
			AgentID: agent.ID, AfterID: after, MaxRows: maxLogsPerResponse,
		})
		if err != nil {
			_ = ws.Close(websocket.StatusInternalError, "get logs")
			return
		}
		if len(logs) > 0 {
			data, err := json.Marshal(convert.AgentLogs(logs))
			if err != nil {
				return
			}
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			err = ws.Write(wctx, websocket.MessageText, data)
			wcancel()
			if err != nil {
				return
			}
			after = logs[len(logs)-1].ID
			if len(logs) == maxLogsPerResponse {
				continue
			}
		}
		select {
		case <-ctx.Done():
			_ = ws.Close(websocket.StatusNormalClosure, "")
			return
		case <-ticker.C:
		}
	}
}
