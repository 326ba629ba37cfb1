package codersdk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// WorkspaceAgentStatus is the connection status of an agent, derived by
// coderd from its first/last-connected times and its connection timeout.
type WorkspaceAgentStatus string

// Agent connection statuses.
const (
	// WorkspaceAgentConnecting: the agent never connected, and its
	// connection timeout has not expired.
	WorkspaceAgentConnecting WorkspaceAgentStatus = "connecting"
	// WorkspaceAgentConnected: the agent's coordinator connection is alive.
	WorkspaceAgentConnected WorkspaceAgentStatus = "connected"
	// WorkspaceAgentDisconnected: the agent connected once and is gone.
	WorkspaceAgentDisconnected WorkspaceAgentStatus = "disconnected"
	// WorkspaceAgentTimeout: the agent never connected within its
	// connection timeout.
	WorkspaceAgentTimeout WorkspaceAgentStatus = "timeout"
)

// WorkspaceAgentLifecycle is the state of an agent's startup and shutdown
// scripts.
type WorkspaceAgentLifecycle string

// Agent lifecycle states.
const (
	WorkspaceAgentLifecycleCreated         WorkspaceAgentLifecycle = "created"
	WorkspaceAgentLifecycleStarting        WorkspaceAgentLifecycle = "starting"
	WorkspaceAgentLifecycleStartTimeout    WorkspaceAgentLifecycle = "start_timeout"
	WorkspaceAgentLifecycleStartError      WorkspaceAgentLifecycle = "start_error"
	WorkspaceAgentLifecycleReady           WorkspaceAgentLifecycle = "ready"
	WorkspaceAgentLifecycleShuttingDown    WorkspaceAgentLifecycle = "shutting_down"
	WorkspaceAgentLifecycleShutdownTimeout WorkspaceAgentLifecycle = "shutdown_timeout"
	WorkspaceAgentLifecycleShutdownError   WorkspaceAgentLifecycle = "shutdown_error"
	WorkspaceAgentLifecycleOff             WorkspaceAgentLifecycle = "off"
)

// WorkspaceAgentLifecycleOrder lists every lifecycle state.
var WorkspaceAgentLifecycleOrder = []WorkspaceAgentLifecycle{
	WorkspaceAgentLifecycleCreated, WorkspaceAgentLifecycleStarting, WorkspaceAgentLifecycleStartTimeout,
	WorkspaceAgentLifecycleStartError, WorkspaceAgentLifecycleReady, WorkspaceAgentLifecycleShuttingDown,
	WorkspaceAgentLifecycleShutdownTimeout, WorkspaceAgentLifecycleShutdownError, WorkspaceAgentLifecycleOff,
}

// Valid reports whether l is a known lifecycle state.
func (l WorkspaceAgentLifecycle) Valid() bool {
	for _, s := range WorkspaceAgentLifecycleOrder {
		if s == l {
			return true
		}
	}
	return false
}

// WorkspaceAppHealth is the result of an app's health checks.
type WorkspaceAppHealth string

// App health states.
const (
	WorkspaceAppHealthDisabled     WorkspaceAppHealth = "disabled"
	WorkspaceAppHealthInitializing WorkspaceAppHealth = "initializing"
	WorkspaceAppHealthHealthy      WorkspaceAppHealth = "healthy"
	WorkspaceAppHealthUnhealthy    WorkspaceAppHealth = "unhealthy"
)

// WorkspaceAgent is an agent as users see it.
type WorkspaceAgent struct {
	ID                   uuid.UUID               `json:"id"`
	CreatedAt            time.Time               `json:"created_at"`
	UpdatedAt            time.Time               `json:"updated_at"`
	FirstConnectedAt     *time.Time              `json:"first_connected_at,omitempty"`
	LastConnectedAt      *time.Time              `json:"last_connected_at,omitempty"`
	DisconnectedAt       *time.Time              `json:"disconnected_at,omitempty"`
	StartedAt            *time.Time              `json:"started_at,omitempty"`
	ReadyAt              *time.Time              `json:"ready_at,omitempty"`
	Status               WorkspaceAgentStatus    `json:"status"`
	LifecycleState       WorkspaceAgentLifecycle `json:"lifecycle_state"`
	Name                 string                  `json:"name"`
	ResourceID           uuid.UUID               `json:"resource_id"`
	WorkspaceID          uuid.UUID               `json:"workspace_id"`
	Architecture         string                  `json:"architecture"`
	OperatingSystem      string                  `json:"operating_system"`
	Directory            string                  `json:"directory,omitempty"`
	ExpandedDirectory    string                  `json:"expanded_directory,omitempty"`
	EnvironmentVariables map[string]string       `json:"environment_variables"`
	Version              string                  `json:"version"`
	APIVersion           string                  `json:"api_version"`
	// TailnetIP is the agent's address on the mesh (derived from its ID).
	TailnetIP string `json:"tailnet_ip"`
	// SSHHostKey is the agent's SSH host key (authorized_keys format) as it
	// reported at startup; empty until then. Clients verify the agent's SSH
	// server against it.
	SSHHostKey               string         `json:"ssh_host_key,omitempty"`
	ConnectionTimeoutSeconds int32          `json:"connection_timeout_seconds"`
	TroubleshootingURL       string         `json:"troubleshooting_url"`
	LogsLength               int32          `json:"logs_length"`
	LogsOverflowed           bool           `json:"logs_overflowed"`
	Apps                     []WorkspaceApp `json:"apps"`
	// StartupScriptBehavior is "blocking" when a start script blocks
	// login (clients such as `coder ssh` wait for ready), else
	// "non-blocking".
	StartupScriptBehavior string `json:"startup_script_behavior"`
	// Scripts are the agent's scripts; a client that must wait for the
	// workspace to be usable (`coder ssh`) waits for LifecycleState
	// "ready" when any script has RunOnStart and StartBlocksLogin.
	Scripts []WorkspaceAgentScript `json:"scripts"`
}

// WorkspaceAgentScript is a script an agent runs (coder_script or the
// agent's startup/shutdown script), as users see it.
type WorkspaceAgentScript struct {
	ID               uuid.UUID `json:"id"`
	LogSourceID      uuid.UUID `json:"log_source_id"`
	DisplayName      string    `json:"display_name"`
	Cron             string    `json:"cron,omitempty"`
	RunOnStart       bool      `json:"run_on_start"`
	RunOnStop        bool      `json:"run_on_stop"`
	StartBlocksLogin bool      `json:"start_blocks_login"`
	TimeoutSeconds   int32     `json:"timeout_seconds"`
}

// LoginBlocked reports whether a client should wait before logging in:
// a start script blocks login and the agent is still created or starting.
func (a WorkspaceAgent) LoginBlocked() bool {
	if a.LifecycleState != WorkspaceAgentLifecycleCreated && a.LifecycleState != WorkspaceAgentLifecycleStarting {
		return false
	}
	for _, s := range a.Scripts {
		if s.RunOnStart && s.StartBlocksLogin {
			return true
		}
	}
	return false
}

// WorkspaceAgentMetadataDescription describes a metadata item: Script runs
// every Interval seconds, bounded by Timeout seconds.
type WorkspaceAgentMetadataDescription struct {
	Key         string `json:"key"`
	DisplayName string `json:"display_name"`
	Script      string `json:"script"`
	Interval    int64  `json:"interval"`
	Timeout     int64  `json:"timeout"`
}

// WorkspaceAgentMetadataResult is the latest result of a metadata item.
// CollectedAt is nil until the agent reported a result.
type WorkspaceAgentMetadataResult struct {
	CollectedAt *time.Time `json:"collected_at,omitempty"`
	Value       string     `json:"value"`
	Error       string     `json:"error"`
}

// WorkspaceAgentMetadata is one metadata item of an agent with its latest
// result.
type WorkspaceAgentMetadata struct {
	Description WorkspaceAgentMetadataDescription `json:"description"`
	Result      WorkspaceAgentMetadataResult      `json:"result"`
}

// Healthcheck is how the agent checks an app is up.
type Healthcheck struct {
	URL       string `json:"url"`
	Interval  int32  `json:"interval"`
	Threshold int32  `json:"threshold"`
}

// WorkspaceApp is an app an agent serves.
type WorkspaceApp struct {
	ID           uuid.UUID          `json:"id"`
	Slug         string             `json:"slug"`
	DisplayName  string             `json:"display_name"`
	Icon         string             `json:"icon,omitempty"`
	Command      string             `json:"command,omitempty"`
	URL          string             `json:"url,omitempty"`
	External     bool               `json:"external"`
	Subdomain    bool               `json:"subdomain"`
	SharingLevel string             `json:"sharing_level"`
	Healthcheck  *Healthcheck       `json:"healthcheck,omitempty"`
	Health       WorkspaceAppHealth `json:"health"`
	Hidden       bool               `json:"hidden"`
}

// WorkspaceAgentLog is one line of agent log output.
type WorkspaceAgentLog struct {
	ID        int64     `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Output    string    `json:"output"`
	Level     LogLevel  `json:"level"`
	SourceID  uuid.UUID `json:"source_id"`
	AgentID   uuid.UUID `json:"agent_id,omitempty"`
}

// WorkspaceAgent returns the agent with the given ID.
func (c *Client) WorkspaceAgent(ctx context.Context, id uuid.UUID) (WorkspaceAgent, error) {
	var agent WorkspaceAgent
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceagents/"+id.String(), nil, http.StatusOK, &agent)
	return agent, err
}

// WorkspaceAgentMetadata returns the agent's metadata items with their
// latest results (GET /api/v2/workspaceagents/{id}/metadata).
func (c *Client) WorkspaceAgentMetadata(ctx context.Context, id uuid.UUID) ([]WorkspaceAgentMetadata, error) {
	var md []WorkspaceAgentMetadata
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceagents/"+id.String()+"/metadata", nil, http.StatusOK, &md)
	return md, err
}

// WorkspaceAgentLogsAfter returns the agent's logs with an ID above after.
func (c *Client) WorkspaceAgentLogsAfter(ctx context.Context, id uuid.UUID, after int64) ([]WorkspaceAgentLog, error) {
	var logs []WorkspaceAgentLog
	path := fmt.Sprintf("/api/v2/workspaceagents/%s/logs?after=%d", id, after)
	err := c.do(ctx, http.MethodGet, path, nil, http.StatusOK, &logs)
	return logs, err
}

// FollowWorkspaceAgentLogs streams the agent's logs with an ID above after
// over a websocket (`?follow`). Each batch is delivered in order on the
// returned channel, which is closed when ctx is done or the stream ends;
// the closer stops the stream.
func (c *Client) FollowWorkspaceAgentLogs(ctx context.Context, id uuid.UUID, after int64) (<-chan []WorkspaceAgentLog, func() error, error) {
	path := fmt.Sprintf("/api/v2/workspaceagents/%s/logs?follow&after=%s", id, strconv.FormatInt(after, 10))
	ws, err := c.DialWebsocket(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan []WorkspaceAgentLog)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		defer ws.CloseNow()
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			var logs []WorkspaceAgentLog
			if err := json.Unmarshal(data, &logs); err != nil {
				return
			}
			select {
			case ch <- logs:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, func() error {
		cancel()
		<-done
		return nil
	}, nil
}

// DialWebsocket opens an authenticated websocket to path (relative to the
// deployment URL). A refused handshake returns an *Error with the status.
func (c *Client) DialWebsocket(ctx context.Context, path string) (*websocket.Conn, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("parse path %q: %w", path, err)
	}
	target := c.URL.ResolveReference(ref)
	header := http.Header{}
	if token := c.SessionToken(); token != "" {
		header.Set(SessionTokenHeader, token)
	}
	ws, res, err := websocket.Dial(ctx, target.String(), &websocket.DialOptions{
		HTTPClient: c.HTTPClient,
		HTTPHeader: header,
	})
	if err != nil {
		if res != nil && res.StatusCode != http.StatusSwitchingProtocols {
			return nil, ReadBodyAsError(res)
		}
		return nil, fmt.Errorf("dial websocket %s: %w", target.Redacted(), err)
	}
	ws.SetReadLimit(1 << 20)
	return ws, nil
}

// DialCoordinator opens the coordination websocket to reach the agent
// agentID (GET /api/v2/workspaceagents/{agent}/coordinate). It has the
// shape of coordinator.Dialer once agentID is bound.
func (c *Client) DialCoordinator(ctx context.Context, agentID uuid.UUID) (*websocket.Conn, error) {
	return c.DialWebsocket(ctx, "/api/v2/workspaceagents/"+agentID.String()+"/coordinate")
}

// DialClientCoordinator is DialCoordinator for the tunnel client clientID
// (see TailnetClient) whose tunnel uses nodeKey: coderd registers the
// client under the peer ID it assigned and admits nodeKey to its DERP relay
// while the socket is up.
func (c *Client) DialClientCoordinator(ctx context.Context, agentID, clientID uuid.UUID, nodeKey key.NodePublic) (*websocket.Conn, error) {
	q := url.Values{}
	q.Set("client_id", clientID.String())
	if !nodeKey.IsZero() {
		text, err := nodeKey.MarshalText()
		if err != nil {
			return nil, fmt.Errorf("encode node key: %w", err)
		}
		q.Set("node_key", string(text))
	}
	return c.DialWebsocket(ctx, "/api/v2/workspaceagents/"+agentID.String()+"/coordinate?"+q.Encode())
}

// TailnetClient is the identity coderd assigns to one tunnel client: the
// coordinator peer ID it is registered under and the only tailnet address
// its node may announce.
type TailnetClient struct {
	ClientID uuid.UUID    `json:"client_id"`
	PeerID   uuid.UUID    `json:"peer_id"`
	Address  netip.Prefix `json:"address"`
}

// TailnetClient asks coderd for the peer ID and address of the tunnel
// client clientID (a random UUID the client picks once per tunnel)
// (GET /api/v2/workspaceagents/connection/client).
func (c *Client) TailnetClient(ctx context.Context, clientID uuid.UUID) (TailnetClient, error) {
	var tc TailnetClient
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceagents/connection/client?client_id="+clientID.String(), nil, http.StatusOK, &tc)
	return tc, err
}

// DERPMap returns the deployment's DERP map (GET /api/v2/derp-map).
func (c *Client) DERPMap(ctx context.Context) (*tailcfg.DERPMap, error) {
	var m tailcfg.DERPMap
	if err := c.do(ctx, http.MethodGet, "/api/v2/derp-map", nil, http.StatusOK, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// AgentConnectionInfo is what a client needs to join the mesh and reach
// agents, besides its coordinator connection.
type AgentConnectionInfo struct {
	DERPMap *tailcfg.DERPMap `json:"derp_map"`
	// DERPForceWebsockets: reach DERP relays over websockets (for clients
	// behind proxies that break HTTP upgrades).
	DERPForceWebsockets bool `json:"derp_force_websockets"`
	// DisableDirectConnections: use DERP only.
	DisableDirectConnections bool `json:"disable_direct_connections"`
}

// AgentConnectionInfo returns the deployment's mesh settings
// (GET /api/v2/workspaceagents/connection).
func (c *Client) AgentConnectionInfo(ctx context.Context) (AgentConnectionInfo, error) {
	var info AgentConnectionInfo
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceagents/connection", nil, http.StatusOK, &info)
	return info, err
}
