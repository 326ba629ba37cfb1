package coderd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/tunnel"
)

// maxLogsPerResponse bounds the logs returned (or streamed) at once.
const maxLogsPerResponse = 1000

// authorizedAgent loads the {workspaceagent} path parameter and checks the
// caller may read it (connect=false: 404 otherwise) or connect to it
// (connect=true: 403 otherwise, for any agent the caller may not reach, so
// nothing about it is revealed).
func (api *API) authorizedAgent(w http.ResponseWriter, r *http.Request, connect bool) (database.WorkspaceAgent, bool) {
	ctx := r.Context()
	deny := func() {
		if connect {
			httpapi.Forbidden(w, r)
		} else {
			httpapi.ResourceNotFound(w, r)
		}
	}
	id, err := uuid.Parse(chi.URLParam(r, "workspaceagent"))
	if err != nil {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Invalid workspace agent ID."})
		return database.WorkspaceAgent{}, false
	}
	agent, err := api.db.GetWorkspaceAgentByID(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		deny()
		return database.WorkspaceAgent{}, false
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error getting workspace agent.", err)
		return database.WorkspaceAgent{}, false
	}
	workspace, err := api.db.GetWorkspaceByAgentID(ctx, agent.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		deny()
		return database.WorkspaceAgent{}, false
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error getting workspace.", err)
		return database.WorkspaceAgent{}, false
	}
	action := rbac.ActionRead
	if connect {
		action = rbac.ActionUpdate
	}
	obj := rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: workspace.OwnerID, ID: workspace.ID.String()}
	if !api.authorize(r, action, obj) {
		deny()
		return database.WorkspaceAgent{}, false
	}
	return agent, true
}

// workspaceAgent serves GET /api/v2/workspaceagents/{workspaceagent}.
func (api *API) workspaceAgent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent, ok := api.authorizedAgent(w, r, false)
	if !ok {
		return
	}
	out, err := api.convertWorkspaceAgent(r, agent)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error converting workspace agent.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// ConvertWorkspaceAgent turns an agent row into its API shape (status
// derived at now). It is exported for the handlers that list agents of
// workspace resources.
func (api *API) ConvertWorkspaceAgent(r *http.Request, agent database.WorkspaceAgent) (codersdk.WorkspaceAgent, error) {
	return api.convertWorkspaceAgent(r, agent)
}

func (api *API) convertWorkspaceAgent(r *http.Request, agent database.WorkspaceAgent) (codersdk.WorkspaceAgent, error) {
	ctx := r.Context()
	env, err := agentEnv(agent)
	if err != nil {
		return codersdk.WorkspaceAgent{}, err
	}
	out := codersdk.WorkspaceAgent{
		ID: agent.ID, CreatedAt: agent.CreatedAt, UpdatedAt: agent.UpdatedAt,
		FirstConnectedAt: tsPtr(agent.FirstConnectedAt), LastConnectedAt: tsPtr(agent.LastConnectedAt),
		DisconnectedAt: tsPtr(agent.DisconnectedAt), StartedAt: tsPtr(agent.StartedAt), ReadyAt: tsPtr(agent.ReadyAt),
		Status:         AgentStatus(agent, api.opts.Now(), api.agents.opts.InactiveDisconnectTimeout),
		LifecycleState: codersdk.WorkspaceAgentLifecycle(agent.LifecycleState),
		Name:           agent.Name, ResourceID: agent.ResourceID,
		Architecture: agent.Architecture, OperatingSystem: agent.OperatingSystem,
		Directory: agent.Directory, ExpandedDirectory: agent.ExpandedDirectory,
		EnvironmentVariables: env, Version: agent.Version, APIVersion: agent.ApiVersion,
		TailnetIP:                tunnel.IPFromUUID(agent.ID).String(),
		ConnectionTimeoutSeconds: agent.ConnectionTimeoutSeconds,
		TroubleshootingURL:       agent.TroubleshootingUrl,
		LogsLength:               agent.LogsLength, LogsOverflowed: agent.LogsOverflowed,
		Apps:                  []codersdk.WorkspaceApp{},
		StartupScriptBehavior: "non-blocking",
	}
	if ws, err := api.db.GetWorkspaceByAgentID(ctx, agent.ID); err == nil {
		out.WorkspaceID = ws.ID
	}
	apps, err := api.db.GetWorkspaceAppsByAgentID(ctx, agent.ID)
	if err != nil {
		return codersdk.WorkspaceAgent{}, err
	}
	for _, a := range apps {
		app := codersdk.WorkspaceApp{
			ID: a.ID, Slug: a.Slug, DisplayName: a.DisplayName, Icon: a.Icon, Command: a.Command.String,
			URL: a.Url.String, External: a.External, Subdomain: a.Subdomain, SharingLevel: string(a.SharingLevel),
			Health: codersdk.WorkspaceAppHealth(a.Health), Hidden: a.Hidden,
		}
		if a.HealthcheckUrl != "" {
			app.Healthcheck = &codersdk.Healthcheck{URL: a.HealthcheckUrl, Interval: a.HealthcheckInterval, Threshold: a.HealthcheckThreshold}
		}
		out.Apps = append(out.Apps, app)
	}
	scripts, err := api.db.GetWorkspaceAgentScriptsByAgentIDs(ctx, []uuid.UUID{agent.ID})
	if err != nil {
		return codersdk.WorkspaceAgent{}, err
	}
	out.Scripts = make([]codersdk.WorkspaceAgentScript, 0, len(scripts))
	for _, s := range scripts {
		if s.RunOnStart && s.StartBlocksLogin {
			out.StartupScriptBehavior = "blocking"
		}
		out.Scripts = append(out.Scripts, codersdk.WorkspaceAgentScript{
			ID: s.ID, LogSourceID: s.LogSourceID, DisplayName: s.DisplayName, Cron: s.Cron,
			RunOnStart: s.RunOnStart, RunOnStop: s.RunOnStop, StartBlocksLogin: s.StartBlocksLogin,
			TimeoutSeconds: s.TimeoutSeconds,
		})
	}
	return out, nil
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
	httpapi.Write(ctx, w, http.StatusOK, convertAgentMetadata(rows))
}

// convertAgentMetadata turns metadata rows into their API shape; a result
// never collected (the zero timestamp the column defaults to) has no
// collected_at.
func convertAgentMetadata(rows []database.WorkspaceAgentMetadatum) []codersdk.WorkspaceAgentMetadata {
	out := make([]codersdk.WorkspaceAgentMetadata, 0, len(rows))
	for _, md := range rows {
		item := codersdk.WorkspaceAgentMetadata{
			Description: codersdk.WorkspaceAgentMetadataDescription{
				Key: md.Key, DisplayName: md.DisplayName, Script: md.Script, Interval: md.Interval, Timeout: md.Timeout,
			},
			Result: codersdk.WorkspaceAgentMetadataResult{Value: md.Value, Error: md.Error},
		}
		if md.CollectedAt.UTC().Year() > 1 {
			at := md.CollectedAt
			item.Result.CollectedAt = &at
		}
		out = append(out, item)
	}
	return out
}

func tsPtr(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time
	return &v
}

// AgentStatus derives an agent's connection status at now:
//   - never connected: "timeout" once connection_timeout_seconds (when
//     positive) have passed since the agent was created, else "connecting";
//   - a disconnect recorded after the last connection, or no heartbeat for
//     longer than inactiveTimeout: "disconnected";
//   - otherwise "connected".
func AgentStatus(agent database.WorkspaceAgent, now time.Time, inactiveTimeout time.Duration) codersdk.WorkspaceAgentStatus {
	if !agent.FirstConnectedAt.Valid {
		timeout := time.Duration(agent.ConnectionTimeoutSeconds) * time.Second
		if timeout > 0 && now.Sub(agent.CreatedAt) > timeout {
			return codersdk.WorkspaceAgentTimeout
		}
		return codersdk.WorkspaceAgentConnecting
	}
	if agent.DisconnectedAt.Valid && !agent.DisconnectedAt.Time.Before(agent.LastConnectedAt.Time) {
		return codersdk.WorkspaceAgentDisconnected
	}
	if !agent.LastConnectedAt.Valid || now.Sub(agent.LastConnectedAt.Time) > inactiveTimeout {
		return codersdk.WorkspaceAgentDisconnected
	}
	return codersdk.WorkspaceAgentConnected
}

func convertAgentLogs(logs []database.WorkspaceAgentLog) []codersdk.WorkspaceAgentLog {
	out := make([]codersdk.WorkspaceAgentLog, 0, len(logs))
	for _, l := range logs {
		out = append(out, codersdk.WorkspaceAgentLog{
			ID: l.ID, CreatedAt: l.CreatedAt, Output: l.Output, Level: codersdk.LogLevel(l.Level),
			SourceID: l.LogSourceID, AgentID: l.AgentID,
		})
	}
	return out
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
		httpapi.Write(ctx, w, http.StatusOK, convertAgentLogs(logs))
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
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
			data, err := json.Marshal(convertAgentLogs(logs))
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
