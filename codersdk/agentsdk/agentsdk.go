// Package agentsdk is the workspace agent's client of coderd's agent API
// (/api/v2/workspaceagents/me/...). Every request is authenticated by the
// agent token in the Coder-Session-Token header; coderd stores only the
// token's SHA-256.
package agentsdk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/codersdk"
)

// AgentLogSourceID is the log source of lines the agent writes itself (for
// example the marker that says log lines were dropped).
var AgentLogSourceID = uuid.MustParse("3b9a1b7e-3f4f-4a8b-9d6e-2c1d0c0a9e01")

// Client talks to coderd on behalf of one agent.
type Client struct {
	// SDK is the underlying HTTP client; its session token is the agent token.
	SDK *codersdk.Client
}

// New returns a client of the deployment at serverURL, authenticated with
// the agent token.
func New(serverURL *url.URL, token string) *Client {
	sdk := codersdk.New(serverURL)
	sdk.SetSessionToken(token)
	return &Client{SDK: sdk}
}

// Script is a script of the manifest (coder_script, or the agent's
// startup/shutdown script).
type Script struct {
	ID               uuid.UUID `json:"id"`
	LogSourceID      uuid.UUID `json:"log_source_id"`
	DisplayName      string    `json:"display_name"`
	Script           string    `json:"script"`
	Cron             string    `json:"cron,omitempty"`
	RunOnStart       bool      `json:"run_on_start"`
	RunOnStop        bool      `json:"run_on_stop"`
	StartBlocksLogin bool      `json:"start_blocks_login"`
	TimeoutSeconds   int32     `json:"timeout_seconds"`
	LogPath          string    `json:"log_path,omitempty"`
}

// Timeout returns the script's timeout (zero: none).
func (s Script) Timeout() time.Duration { return time.Duration(s.TimeoutSeconds) * time.Second }

// App is an app of the manifest, with its health check settings.
type App struct {
	ID          uuid.UUID                   `json:"id"`
	Slug        string                      `json:"slug"`
	DisplayName string                      `json:"display_name"`
	URL         string                      `json:"url,omitempty"`
	Command     string                      `json:"command,omitempty"`
	Subdomain   bool                        `json:"subdomain"`
	External    bool                        `json:"external"`
	Healthcheck codersdk.Healthcheck        `json:"healthcheck"`
	Health      codersdk.WorkspaceAppHealth `json:"health"`
}

// MetadataDescription is a metadata item the agent collects by running
// Script every Interval seconds (bounded by Timeout seconds).
type MetadataDescription struct {
	Key         string `json:"key"`
	DisplayName string `json:"display_name"`
	Script      string `json:"script"`
	Interval    int64  `json:"interval"`
	Timeout     int64  `json:"timeout"`
}

// Manifest is everything the agent needs to serve its workspace.
type Manifest struct {
	AgentID                  uuid.UUID             `json:"agent_id"`
	AgentName                string                `json:"agent_name"`
	OwnerName                string                `json:"owner_name"`
	WorkspaceID              uuid.UUID             `json:"workspace_id"`
	WorkspaceName            string                `json:"workspace_name"`
	Directory                string                `json:"directory"`
	EnvironmentVariables     map[string]string     `json:"environment_variables"`
	Scripts                  []Script              `json:"scripts"`
	Apps                     []App                 `json:"apps"`
	Metadata                 []MetadataDescription `json:"metadata"`
	DERPMap                  *tailcfg.DERPMap      `json:"derpmap"`
	DERPForceWebSockets      bool                  `json:"derp_force_websockets"`
	DisableDirectConnections bool                  `json:"disable_direct_connections"`
	VSCodePortProxyURI       string                `json:"vscode_port_proxy_uri"`
	MOTDFile                 string                `json:"motd_file"`
	DisableSFTP              bool                  `json:"disable_sftp"`
}

// Manifest fetches the agent's manifest.
func (c *Client) Manifest(ctx context.Context) (Manifest, error) {
	var m Manifest
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceagents/me/manifest", nil, &m)
	return m, err
}

// PostLifecycleRequest reports a lifecycle change.
type PostLifecycleRequest struct {
	State     codersdk.WorkspaceAgentLifecycle `json:"state"`
	ChangedAt time.Time                        `json:"changed_at"`
}

// PostLifecycle reports a lifecycle change.
func (c *Client) PostLifecycle(ctx context.Context, req PostLifecycleRequest) error {
	return c.do(ctx, http.MethodPost, "/api/v2/workspaceagents/me/lifecycle", req, nil)
}

// PostStartupRequest tells coderd about the running agent.
type PostStartupRequest struct {
	Version           string   `json:"version"`
	ExpandedDirectory string   `json:"expanded_directory"`
	Subsystems        []string `json:"subsystems"`
	// SSHHostKey is the agent's SSH host public key in authorized_keys
	// format. coderd stores it; clients verify the agent against it.
	SSHHostKey string `json:"ssh_host_key,omitempty"`
}

// PostStartup tells coderd the agent's version and expanded directory.
func (c *Client) PostStartup(ctx context.Context, req PostStartupRequest) error {
	return c.do(ctx, http.MethodPost, "/api/v2/workspaceagents/me/startup", req, nil)
}

// Log is one line of agent log output.
type Log struct {
	CreatedAt time.Time         `json:"created_at"`
	Output    string            `json:"output"`
	Level     codersdk.LogLevel `json:"level"`
}

// PatchLogsRequest is a batch of log lines of one source. BatchSeq orders the
// batches of an agent: coderd stores a batch only when its BatchSeq is above
// the last stored one, so a retried batch is never stored twice.
type PatchLogsRequest struct {
	LogSourceID uuid.UUID `json:"log_source_id"`
	BatchSeq    int64     `json:"batch_seq"`
	Logs        []Log     `json:"logs"`
}

// PatchLogsResponse acknowledges a batch.
type PatchLogsResponse struct {
	// Duplicate is true when the batch had been stored before.
	Duplicate bool `json:"duplicate"`
}

// PatchLogs sends a batch of log lines.
func (c *Client) PatchLogs(ctx context.Context, req PatchLogsRequest) (PatchLogsResponse, error) {
	var res PatchLogsResponse
	err := c.do(ctx, http.MethodPatch, "/api/v2/workspaceagents/me/logs", req, &res)
	return res, err
}

// Stats are the agent's network and session counters for one interval.
type Stats struct {
	// ConnectionsByProto counts open connections by protocol (e.g. "ssh").
	ConnectionsByProto map[string]int64 `json:"connections_by_proto"`
	ConnectionCount    int64            `json:"connection_count"`
	// ConnectionMedianLatencyMS is the median latency to peers, -1 if unknown.
	ConnectionMedianLatencyMS   float64 `json:"connection_median_latency_ms"`
	RxBytes                     int64   `json:"rx_bytes"`
	TxBytes                     int64   `json:"tx_bytes"`
	SessionCountVSCode          int64   `json:"session_count_vscode"`
	SessionCountJetBrains       int64   `json:"session_count_jetbrains"`
	SessionCountReconnectingPTY int64   `json:"session_count_reconnecting_pty"`
	SessionCountSSH             int64   `json:"session_count_ssh"`
}

// StatsResponse tells the agent when to report next.
type StatsResponse struct {
	ReportInterval time.Duration `json:"report_interval"`
}

// PostStats reports stats and returns the report interval.
func (c *Client) PostStats(ctx context.Context, stats Stats) (StatsResponse, error) {
	var res StatsResponse
	err := c.do(ctx, http.MethodPost, "/api/v2/workspaceagents/me/report-stats", stats, &res)
	return res, err
}

// MetadataResult is the latest result of one metadata item.
type MetadataResult struct {
	Key         string    `json:"key"`
	CollectedAt time.Time `json:"collected_at"`
	Value       string    `json:"value"`
	Error       string    `json:"error"`
}

// PostMetadataRequest carries metadata results.
type PostMetadataRequest struct {
	Metadata []MetadataResult `json:"metadata"`
}

// PostMetadata reports metadata results.
func (c *Client) PostMetadata(ctx context.Context, req PostMetadataRequest) error {
	return c.do(ctx, http.MethodPost, "/api/v2/workspaceagents/me/metadata", req, nil)
}

// PostAppHealthsRequest maps app IDs to their health.
type PostAppHealthsRequest struct {
	Healths map[uuid.UUID]codersdk.WorkspaceAppHealth `json:"healths"`
}

// PostAppHealth reports app health changes.
func (c *Client) PostAppHealth(ctx context.Context, req PostAppHealthsRequest) error {
	return c.do(ctx, http.MethodPost, "/api/v2/workspaceagents/me/app-health", req, nil)
}

// DialCoordinator opens the agent's coordination websocket
// (GET /api/v2/workspaceagents/me/coordinate). It is a coordinator.Dialer.
func (c *Client) DialCoordinator(ctx context.Context) (*websocket.Conn, error) {
	return c.SDK.DialWebsocket(ctx, "/api/v2/workspaceagents/me/coordinate")
}

// CoordinatorDialer returns a coordinator.Dialer for the agent's
// coordination websocket that tells coderd the tunnel's node key, so the
// DERP relay admits the agent as soon as the socket is up.
func (c *Client) CoordinatorDialer(nodeKey key.NodePublic) func(ctx context.Context) (*websocket.Conn, error) {
	return func(ctx context.Context) (*websocket.Conn, error) {
		text, err := nodeKey.MarshalText()
		if err != nil {
			return nil, fmt.Errorf("encode node key: %w", err)
		}
		return c.SDK.DialWebsocket(ctx, "/api/v2/workspaceagents/me/coordinate?node_key="+url.QueryEscape(string(text)))
	}
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	res, err := c.SDK.Request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return codersdk.ReadBodyAsError(res)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s response: %w", method, path, err)
	}
	return nil
}
