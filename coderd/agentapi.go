package coderd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	gossh "golang.org/x/crypto/ssh"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/derp"
)

// Defaults of AgentOptions.
const (
	DefaultAgentStatsReportInterval = 30 * time.Second
	DefaultAgentHeartbeatInterval   = 10 * time.Second
	DefaultAgentLogsPollInterval    = 250 * time.Millisecond
	// MaxAgentLogsBytes bounds the log output stored per agent; past it the
	// agent's logs are marked overflowed and further batches are refused
	// with 413.
	MaxAgentLogsBytes = 1 << 20
	// maxAgentLogLine is the column width of workspace_agent_logs.output.
	maxAgentLogLine = 1024
	// maxAgentLogsPerBatch bounds one log batch.
	maxAgentLogsPerBatch = 1000
)

// AgentOptions configures the workspace agent API, the coordinator and the
// embedded DERP relay.
type AgentOptions struct {
	// DERPServer is the embedded relay served at /derp; nil serves none.
	DERPServer *derp.Server
	// DERPMap is the map handed to peers (manifest, /api/v2/derp-map and
	// the coordination stream). When nil and DERPServer is set, a map with
	// only the embedded region at AccessURL is built.
	DERPMap *tailcfg.DERPMap
	// DERPForceWebSockets tells peers to reach DERP over websockets.
	DERPForceWebSockets bool
	// DisableDirectConnections tells peers to use DERP only.
	DisableDirectConnections bool
	// VSCodePortProxyURI is handed to agents in the manifest.
	VSCodePortProxyURI string
	// Coordinator exchanges nodes between peers; nil starts an in-memory
	// coordinator owned (and closed) by the API.
	Coordinator coordinator.Coordinator
	// NodeKeyDirectory, when set, publishes the node keys of this
	// replica's peers to the other replicas and lets the embedded relay
	// admit keys any replica's coordinator knows (pgcoord.KeyDirectory):
	// behind a load balancer a peer's relay and coordinator connections
	// may reach different replicas.
	NodeKeyDirectory NodeKeyDirectory
	// StatsReportInterval is how often agents report stats (default 30s).
	StatsReportInterval time.Duration
	// HeartbeatInterval is how often a connected agent's last_connected_at
	// is refreshed (default 10s).
	HeartbeatInterval time.Duration
	// InactiveDisconnectTimeout: an agent whose last_connected_at is older
	// is reported disconnected even without a recorded disconnect (a
	// crashed coderd). Default: 3 × HeartbeatInterval.
	InactiveDisconnectTimeout time.Duration
	// LogsPollInterval is how often a followed log stream looks for new
	// lines (default 250ms).
	LogsPollInterval time.Duration
	// CoordinatorPingInterval is the keepalive of coordination websockets
	// (0: the coordinator package's default).
	CoordinatorPingInterval time.Duration
	// ConnReconcileInterval is how often agents recorded as connected to a
	// coderd that is gone are recorded disconnected (it also runs once
	// when coderd starts). Default DefaultAgentConnReconcileInterval.
	ConnReconcileInterval time.Duration
}

// NodeKeyDirectory shares node keys between replicas (see
// AgentOptions.NodeKeyDirectory).
type NodeKeyDirectory interface {
	coordinator.KeyObserver
	// AdmitFunc admits keys of local or of any replica's peers, waiting
	// (polling every poll) until ctx ends for an unknown one.
	AdmitFunc(local *coordinator.NodeKeys, poll time.Duration) func(ctx context.Context, k key.NodePublic) bool
}

// agentState is the API's agent-side state: the coordinator, the DERP map
// publisher and the context that stops long-lived agent connections.
type agentState struct {
	opts     AgentOptions
	coord    coordinator.Coordinator
	ownCoord bool
	derpMaps *coordinator.DERPMapPublisher
	// nodeKeys are the node keys of the peers on the coordinator: the only
	// keys the embedded DERP relay admits.
	nodeKeys  *coordinator.NodeKeys
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

func newAgentState(api *API) (*agentState, error) {
	opts := api.opts.Agents
	if opts.StatsReportInterval <= 0 {
		opts.StatsReportInterval = DefaultAgentStatsReportInterval
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultAgentHeartbeatInterval
	}
	if opts.InactiveDisconnectTimeout <= 0 {
		opts.InactiveDisconnectTimeout = 3 * opts.HeartbeatInterval
	}
	if opts.LogsPollInterval <= 0 {
		opts.LogsPollInterval = DefaultAgentLogsPollInterval
	}
	if opts.ConnReconcileInterval <= 0 {
		opts.ConnReconcileInterval = DefaultAgentConnReconcileInterval
	}
	m := opts.DERPMap
	if m == nil && opts.DERPServer != nil {
		built, err := derp.BuildMap(context.Background(), derp.MapOptions{EnableEmbedded: true, AccessURL: api.opts.AccessURL})
		if err != nil {
			return nil, fmt.Errorf("build DERP map: %w", err)
		}
		m = built
	}
	if m != nil {
		if err := derp.ValidateMap(m); err != nil {
			return nil, fmt.Errorf("validate DERP map: %w", err)
		}
	}
	s := &agentState{opts: opts, coord: opts.Coordinator, derpMaps: coordinator.NewDERPMapPublisher(m), nodeKeys: coordinator.NewNodeKeys()}
	admit := s.nodeKeys.Await
	if opts.NodeKeyDirectory != nil {
		s.nodeKeys.SetObserver(opts.NodeKeyDirectory)
		admit = opts.NodeKeyDirectory.AdmitFunc(s.nodeKeys, 250*time.Millisecond)
	}
	if opts.DERPServer != nil {
		// Open relays are abused: admit only peers the coordinator knows.
		if err := opts.DERPServer.AdmitOnly(admit); err != nil {
			return nil, fmt.Errorf("DERP relay admission: %w", err)
		}
	}
	if s.coord == nil {
		s.coord = coordinator.NewInMemory(api.logger.With("component", "coordinator"))
		s.ownCoord = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// close ends every coordination and log-follow websocket.
func (s *agentState) close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cancel()
		if s.ownCoord {
			err = s.coord.Close()
		}
	})
	return err
}

// SetDERPMap replaces the DERP map handed to peers; connected peers receive
// it on their coordination stream.
func (api *API) SetDERPMap(m *tailcfg.DERPMap) error {
	if err := derp.ValidateMap(m); err != nil {
		return fmt.Errorf("validate DERP map: %w", err)
	}
	api.agents.derpMaps.Set(m)
	return nil
}

// AgentTokenRoutes returns the "METHOD pattern" of routes authenticated by
// a workspace agent token instead of a user API key.
func AgentTokenRoutes() map[string]bool {
	const p = "/api/v2/workspaceagents/me/"
	return map[string]bool{
		"GET " + p + "manifest":      true,
		"POST " + p + "lifecycle":    true,
		"POST " + p + "startup":      true,
		"PATCH " + p + "logs":        true,
		"POST " + p + "logs":         true,
		"POST " + p + "report-stats": true,
		"POST " + p + "metadata":     true,
		"POST " + p + "app-health":   true,
		"POST " + p + "script-runs":  true,
		"GET " + p + "coordinate":    true,
	}
}

// agentRoutes mounts the agent API (agent token), the user-side agent
// routes (API key) and the DERP map under /api/v2.
func (api *API) agentRoutes(r chi.Router, apiKey func(http.Handler) http.Handler) {
	r.Route("/workspaceagents", func(r chi.Router) {
		r.Route("/me", func(r chi.Router) {
			r.Use(httpmw.ExtractWorkspaceAgent(api.db))
			r.Get("/manifest", api.agentManifest)
			r.Post("/lifecycle", api.postAgentLifecycle)
			r.Post("/startup", api.postAgentStartup)
			r.Patch("/logs", api.patchAgentLogs)
			r.Post("/logs", api.patchAgentLogs)
			r.Post("/report-stats", api.postAgentStats)
			r.Post("/metadata", api.postAgentMetadata)
			r.Post("/app-health", api.postAgentAppHealth)
			r.Post("/script-runs", api.postAgentScriptRun) // workspaceagents_scriptruns.go
			r.Get("/coordinate", api.agentCoordinate)
		})
		r.Group(func(r chi.Router) {
			r.Use(apiKey)
			r.Get("/connection", api.workspaceAgentConnectionInfo)
			r.Get("/connection/client", api.workspaceAgentTailnetClient)
			readAgent, connectAgent := api.workspaceAgentParams()
			r.With(readAgent).Get("/{workspaceagent}", api.workspaceAgent)
			r.With(readAgent).Get("/{workspaceagent}/logs", api.workspaceAgentLogs)
			r.With(readAgent).Get("/{workspaceagent}/metadata", api.workspaceAgentMetadata)
			r.With(connectAgent).Get("/{workspaceagent}/listening-ports", api.workspaceAgentListeningPorts) // workspaceagents_ports.go
			r.With(readAgent).Get("/{workspaceagent}/script-runs", api.workspaceAgentScriptRuns)            // workspaceagents_scriptruns.go
			r.With(connectAgent).Get("/{workspaceagent}/coordinate", api.workspaceAgentCoordinate)
		})
	})
	r.With(apiKey).Get("/derp-map", api.derpMap)
}

// agentManifest serves GET /api/v2/workspaceagents/me/manifest.
func (api *API) agentManifest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	derpMap := api.agents.derpMaps.Current()
	if derpMap == nil {
		httpapi.InternalServerError(w, r, "No DERP map is configured.", errors.New("no DERP map"))
		return
	}
	manifest, err := api.buildManifest(ctx, agent)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error building the agent manifest.", err)
		return
	}
	manifest.DERPMap = derpMap
	httpapi.Write(ctx, w, http.StatusOK, manifest)
}

func (api *API) buildManifest(ctx context.Context, agent database.WorkspaceAgent) (agentsdk.Manifest, error) {
	workspace, err := api.db.GetWorkspaceByAgentID(ctx, agent.ID)
	if err != nil {
		return agentsdk.Manifest{}, fmt.Errorf("get workspace of agent: %w", err)
	}
	owner, err := api.db.GetUserByID(ctx, workspace.OwnerID)
	if err != nil {
		return agentsdk.Manifest{}, fmt.Errorf("get workspace owner: %w", err)
	}
	scripts, err := api.db.GetWorkspaceAgentScriptsByAgentIDs(ctx, []uuid.UUID{agent.ID})
	if err != nil {
		return agentsdk.Manifest{}, fmt.Errorf("get agent scripts: %w", err)
	}
	apps, err := api.db.GetWorkspaceAppsByAgentID(ctx, agent.ID)
	if err != nil {
		return agentsdk.Manifest{}, fmt.Errorf("get agent apps: %w", err)
	}
	metadata, err := api.db.GetWorkspaceAgentMetadata(ctx, agent.ID)
	if err != nil {
		return agentsdk.Manifest{}, fmt.Errorf("get agent metadata: %w", err)
	}
	env, err := convert.AgentEnvironment(agent)
	if err != nil {
		return agentsdk.Manifest{}, err
	}
	m := agentsdk.Manifest{
		AgentID:                  agent.ID,
		AgentName:                agent.Name,
		OwnerName:                owner.Username,
		WorkspaceID:              workspace.ID,
		WorkspaceName:            workspace.Name,
		Directory:                agent.Directory,
		EnvironmentVariables:     env,
		Scripts:                  []agentsdk.Script{},
		Apps:                     []agentsdk.App{},
		Metadata:                 []agentsdk.MetadataDescription{},
		DERPForceWebSockets:      api.agents.opts.DERPForceWebSockets,
		DisableDirectConnections: api.agents.opts.DisableDirectConnections,
		VSCodePortProxyURI:       api.agents.opts.VSCodePortProxyURI,
		MOTDFile:                 agent.MotdFile,
	}
	for _, s := range scripts {
		m.Scripts = append(m.Scripts, agentsdk.Script{
			ID: s.ID, LogSourceID: s.LogSourceID, DisplayName: s.DisplayName, Script: s.Script,
			Cron: s.Cron, RunOnStart: s.RunOnStart, RunOnStop: s.RunOnStop,
			StartBlocksLogin: s.StartBlocksLogin, TimeoutSeconds: s.TimeoutSeconds, LogPath: s.LogPath,
		})
	}
	for _, a := range apps {
		m.Apps = append(m.Apps, agentsdk.App{
			ID: a.ID, Slug: a.Slug, DisplayName: a.DisplayName, URL: a.Url.String, Command: a.Command.String,
			Subdomain: a.Subdomain, External: a.External,
			Healthcheck: codersdk.Healthcheck{URL: a.HealthcheckUrl, Interval: a.HealthcheckInterval, Threshold: a.HealthcheckThreshold},
			Health:      codersdk.WorkspaceAppHealth(a.Health),
		})
	}
	for _, md := range metadata {
		m.Metadata = append(m.Metadata, agentsdk.MetadataDescription{
			Key: md.Key, DisplayName: md.DisplayName, Script: md.Script, Interval: md.Interval, Timeout: md.Timeout,
		})
	}
	return m, nil
}

// postAgentLifecycle serves POST /api/v2/workspaceagents/me/lifecycle.
func (api *API) postAgentLifecycle(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	var req agentsdk.PostLifecycleRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if !req.State.Valid() {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     "Invalid lifecycle state.",
			Validations: []codersdk.ValidationError{{Field: "state", Detail: fmt.Sprintf("unknown state %q", req.State)}},
		})
		return
	}
	changedAt := req.ChangedAt
	if changedAt.IsZero() {
		changedAt = api.now()
	}
	changedAt = changedAt.UTC().Truncate(time.Microsecond)
	started, ready := agent.StartedAt, agent.ReadyAt
	switch req.State {
	case codersdk.WorkspaceAgentLifecycleStarting:
		started = pgtype.Timestamptz{Time: changedAt, Valid: true}
		ready = pgtype.Timestamptz{}
	case codersdk.WorkspaceAgentLifecycleReady, codersdk.WorkspaceAgentLifecycleStartError,
		codersdk.WorkspaceAgentLifecycleStartTimeout:
		ready = pgtype.Timestamptz{Time: changedAt, Valid: true}
	}
	err := api.db.UpdateWorkspaceAgentLifecycleStateByID(ctx, database.UpdateWorkspaceAgentLifecycleStateByIDParams{
		ID: agent.ID, LifecycleState: database.WorkspaceAgentLifecycleState(req.State), StartedAt: started, ReadyAt: ready,
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error updating lifecycle state.", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// postAgentStartup serves POST /api/v2/workspaceagents/me/startup.
func (api *API) postAgentStartup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	var req agentsdk.PostStartupRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if req.Subsystems == nil {
		req.Subsystems = []string{}
	}
	if req.SSHHostKey != "" {
		if _, _, _, _, err := gossh.ParseAuthorizedKey([]byte(req.SSHHostKey)); err != nil {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message:     "Invalid SSH host key.",
				Validations: []codersdk.ValidationError{{Field: "ssh_host_key", Detail: "must be a public key in authorized_keys format"}},
			})
			return
		}
		// Stored as reported; a changed key (a re-created data directory)
		// replaces the old one, because only the agent's token can set it.
		if err := api.db.UpdateWorkspaceAgentSSHHostKeyByID(ctx, database.UpdateWorkspaceAgentSSHHostKeyByIDParams{
			ID: agent.ID, SshHostKey: req.SSHHostKey,
		}); err != nil {
			httpapi.InternalServerError(w, r, "Internal error storing the agent's SSH host key.", err)
			return
		}
	}
	err := api.db.UpdateWorkspaceAgentStartupByID(ctx, database.UpdateWorkspaceAgentStartupByIDParams{
		ID: agent.ID, Version: req.Version, ExpandedDirectory: req.ExpandedDirectory,
		Subsystems: req.Subsystems, ApiVersion: "1.0",
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error updating agent startup.", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

var validLogLevels = map[codersdk.LogLevel]bool{
	codersdk.LogLevelTrace: true, codersdk.LogLevelDebug: true, codersdk.LogLevelInfo: true,
	codersdk.LogLevelWarn: true, codersdk.LogLevelError: true,
}

// truncateChars cuts s to at most n characters (varchar semantics), on a rune boundary.
func truncateChars(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	rs := []rune(s)
	return string(rs[:n])
}

// patchAgentLogs serves PATCH (and POST) /api/v2/workspaceagents/me/logs: a
// batch is stored at most once (by its batch sequence number).
func (api *API) patchAgentLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	var req agentsdk.PatchLogsRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if len(req.Logs) == 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "No logs provided."})
		return
	}
	if len(req.Logs) > maxAgentLogsPerBatch {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: fmt.Sprintf("Too many logs in one batch (max %d).", maxAgentLogsPerBatch),
		})
		return
	}
	if req.BatchSeq <= 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     "Invalid batch sequence number.",
			Validations: []codersdk.ValidationError{{Field: "batch_seq", Detail: "must be positive"}},
		})
		return
	}
	params := database.InsertWorkspaceAgentLogsParams{AgentID: agent.ID, LogSourceID: req.LogSourceID}
	size := 0
	for i, l := range req.Logs {
		if l.Level == "" {
			l.Level = codersdk.LogLevelInfo
		}
		if !validLogLevels[l.Level] {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message:     "Invalid log level.",
				Validations: []codersdk.ValidationError{{Field: fmt.Sprintf("logs[%d].level", i), Detail: string(l.Level)}},
			})
			return
		}
		created := l.CreatedAt
		if created.IsZero() {
			created = api.now()
		}
		out := truncateChars(strings.ToValidUTF8(strings.ReplaceAll(l.Output, "\x00", ""), "\uFFFD"), maxAgentLogLine)
		size += len(out)
		params.CreatedAt = append(params.CreatedAt, created.UTC())
		params.Output = append(params.Output, out)
		params.Level = append(params.Level, string(l.Level))
	}
	var duplicate, overflow bool
	err := api.db.InTx(ctx, func(q *database.Queries) error {
		current, err := q.GetWorkspaceAgentByID(ctx, agent.ID)
		if err != nil {
			return fmt.Errorf("get agent: %w", err)
		}
		n, err := q.ClaimWorkspaceAgentLogBatch(ctx, database.ClaimWorkspaceAgentLogBatchParams{AgentID: agent.ID, BatchSeq: req.BatchSeq})
		if err != nil {
			return fmt.Errorf("claim log batch: %w", err)
		}
		if n == 0 {
			duplicate = true
			return nil
		}
		if current.LogsOverflowed || int(current.LogsLength)+size > MaxAgentLogsBytes {
			overflow = true
			return q.UpdateWorkspaceAgentLogOverflowByID(ctx, database.UpdateWorkspaceAgentLogOverflowByIDParams{
				ID: agent.ID, LogsOverflowed: true,
			})
		}
		if _, err := q.InsertWorkspaceAgentLogs(ctx, params); err != nil {
			return fmt.Errorf("insert logs: %w", err)
		}
		return q.UpdateWorkspaceAgentLogsLength(ctx, database.UpdateWorkspaceAgentLogsLengthParams{
			ID: agent.ID, OutputLength: int32(size),
		})
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error storing logs.", err)
		return
	}
	if overflow {
		httpapi.Write(ctx, w, http.StatusRequestEntityTooLarge, codersdk.Response{
			Message: fmt.Sprintf("The agent's logs exceed the limit of %d bytes; further logs are dropped.", MaxAgentLogsBytes),
		})
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, agentsdk.PatchLogsResponse{Duplicate: duplicate})
}

// postAgentStats serves POST /api/v2/workspaceagents/me/report-stats.
func (api *API) postAgentStats(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	var req agentsdk.Stats
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	workspace, err := api.db.GetWorkspaceByAgentID(ctx, agent.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error getting the agent's workspace.", err)
		return
	}
	byProto := req.ConnectionsByProto
	if byProto == nil {
		byProto = map[string]int64{}
	}
	protoJSON, err := json.Marshal(byProto)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error encoding stats.", err)
		return
	}
	err = api.db.InsertWorkspaceAgentStat(ctx, database.InsertWorkspaceAgentStatParams{
		CreatedAt: api.now(), AgentID: agent.ID, WorkspaceID: workspace.ID, ConnectionsByProto: protoJSON,
		ConnectionCount: req.ConnectionCount, RxBytes: req.RxBytes, TxBytes: req.TxBytes,
		ConnectionMedianLatencyMs: req.ConnectionMedianLatencyMS, SessionCountVscode: req.SessionCountVSCode,
		SessionCountJetbrains: req.SessionCountJetBrains, SessionCountReconnectingPty: req.SessionCountReconnectingPTY,
		SessionCountSsh: req.SessionCountSSH,
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error storing stats.", err)
		return
	}
	if req.SessionCountSSH+req.SessionCountVSCode+req.SessionCountJetBrains+req.SessionCountReconnectingPTY > 0 {
		_ = api.db.UpdateWorkspaceLastUsedAt(ctx, database.UpdateWorkspaceLastUsedAtParams{ID: workspace.ID, LastUsedAt: api.now()})
		if err := api.bumpDeadline(ctx, workspace); err != nil {
			api.logger.WarnContext(ctx, "bump workspace deadline", "workspace_id", workspace.ID, "error", err)
		}
	}
	httpapi.Write(ctx, w, http.StatusOK, agentsdk.StatsResponse{ReportInterval: api.agents.opts.StatsReportInterval})
}

// postAgentMetadata serves POST /api/v2/workspaceagents/me/metadata.
func (api *API) postAgentMetadata(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	var req agentsdk.PostMetadataRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	params := database.UpdateWorkspaceAgentMetadataParams{WorkspaceAgentID: agent.ID}
	for _, md := range req.Metadata {
		collected := md.CollectedAt
		if collected.IsZero() {
			collected = api.now()
		}
		params.Key = append(params.Key, truncateChars(md.Key, 127))
		params.Value = append(params.Value, truncateChars(strings.ToValidUTF8(md.Value, "\uFFFD"), 65535))
		params.Error = append(params.Error, truncateChars(strings.ToValidUTF8(md.Error, "\uFFFD"), 65535))
		params.CollectedAt = append(params.CollectedAt, collected.UTC())
	}
	if len(params.Key) > 0 {
		if err := api.db.UpdateWorkspaceAgentMetadata(ctx, params); err != nil {
			httpapi.InternalServerError(w, r, "Internal error storing metadata.", err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

var validAppHealths = map[codersdk.WorkspaceAppHealth]bool{
	codersdk.WorkspaceAppHealthDisabled: true, codersdk.WorkspaceAppHealthInitializing: true,
	codersdk.WorkspaceAppHealthHealthy: true, codersdk.WorkspaceAppHealthUnhealthy: true,
}

// postAgentAppHealth serves POST /api/v2/workspaceagents/me/app-health.
func (api *API) postAgentAppHealth(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	var req agentsdk.PostAppHealthsRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	for id, h := range req.Healths {
		if !validAppHealths[h] {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "Invalid app health.", Validations: []codersdk.ValidationError{{Field: "healths." + id.String(), Detail: string(h)}},
			})
			return
		}
	}
	for id, h := range req.Healths {
		n, err := api.db.UpdateWorkspaceAppHealthByAgentAndID(ctx, database.UpdateWorkspaceAppHealthByAgentAndIDParams{
			AgentID: agent.ID, ID: id, Health: database.WorkspaceAppHealth(h),
		})
		if err != nil {
			httpapi.InternalServerError(w, r, "Internal error storing app health.", err)
			return
		}
		if n == 0 {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: fmt.Sprintf("The agent has no app %s.", id),
			})
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
