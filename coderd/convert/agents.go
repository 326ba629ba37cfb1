package convert

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/tunnel"
)

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

// AgentEnvironment decodes the environment variables the template gave an
// agent (an empty map when it gave none).
func AgentEnvironment(agent database.WorkspaceAgent) (map[string]string, error) {
	env := map[string]string{}
	if len(agent.EnvironmentVariables) > 0 && string(agent.EnvironmentVariables) != "null" {
		if err := json.Unmarshal(agent.EnvironmentVariables, &env); err != nil {
			return nil, fmt.Errorf("decode agent environment variables: %w", err)
		}
	}
	return env, nil
}

// Agent turns an agent, its apps and scripts into the agent's API shape.
// workspaceID is the workspace whose build created the agent (uuid.Nil for
// an agent of a template version's import); status comes from AgentStatus.
// It fails only when the stored environment variables are not valid JSON.
func Agent(agent database.WorkspaceAgent, workspaceID uuid.UUID, apps []database.WorkspaceApp, scripts []database.WorkspaceAgentScript, status codersdk.WorkspaceAgentStatus) (codersdk.WorkspaceAgent, error) {
	env, err := AgentEnvironment(agent)
	if err != nil {
		return codersdk.WorkspaceAgent{}, err
	}
	out := codersdk.WorkspaceAgent{
		ID: agent.ID, CreatedAt: agent.CreatedAt, UpdatedAt: agent.UpdatedAt,
		FirstConnectedAt: timePtr(agent.FirstConnectedAt), LastConnectedAt: timePtr(agent.LastConnectedAt),
		DisconnectedAt: timePtr(agent.DisconnectedAt), StartedAt: timePtr(agent.StartedAt), ReadyAt: timePtr(agent.ReadyAt),
		Status:         status,
		LifecycleState: codersdk.WorkspaceAgentLifecycle(agent.LifecycleState),
		Name:           agent.Name, ResourceID: agent.ResourceID, WorkspaceID: workspaceID,
		Architecture: agent.Architecture, OperatingSystem: agent.OperatingSystem,
		Directory: agent.Directory, ExpandedDirectory: agent.ExpandedDirectory,
		EnvironmentVariables: env, Version: agent.Version, APIVersion: agent.ApiVersion,
		TailnetIP:                tunnel.IPFromUUID(agent.ID).String(),
		SSHHostKey:               agent.SshHostKey,
		ConnectionTimeoutSeconds: agent.ConnectionTimeoutSeconds,
		TroubleshootingURL:       agent.TroubleshootingUrl,
		LogsLength:               agent.LogsLength, LogsOverflowed: agent.LogsOverflowed,
		Apps:                  make([]codersdk.WorkspaceApp, 0, len(apps)),
		StartupScriptBehavior: "non-blocking",
		Scripts:               make([]codersdk.WorkspaceAgentScript, 0, len(scripts)),
	}
	for _, a := range apps {
		out.Apps = append(out.Apps, App(a))
	}
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

// App turns a workspace app into its API shape.
func App(a database.WorkspaceApp) codersdk.WorkspaceApp {
	app := codersdk.WorkspaceApp{
		ID: a.ID, Slug: a.Slug, DisplayName: a.DisplayName, Icon: a.Icon, Command: a.Command.String,
		URL: a.Url.String, External: a.External, Subdomain: a.Subdomain, SharingLevel: string(a.SharingLevel),
		Health: codersdk.WorkspaceAppHealth(a.Health), Hidden: a.Hidden,
	}
	if a.HealthcheckUrl != "" {
		app.Healthcheck = &codersdk.Healthcheck{URL: a.HealthcheckUrl, Interval: a.HealthcheckInterval, Threshold: a.HealthcheckThreshold}
	}
	return app
}

// AgentMetadata turns an agent's metadata rows into their API shape; a
// result never collected (the zero timestamp the column defaults to) has
// no collected_at.
func AgentMetadata(rows []database.WorkspaceAgentMetadatum) []codersdk.WorkspaceAgentMetadata {
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

// AgentLogs turns stored agent log lines into their API shape.
func AgentLogs(logs []database.WorkspaceAgentLog) []codersdk.WorkspaceAgentLog {
	out := make([]codersdk.WorkspaceAgentLog, 0, len(logs))
	for _, l := range logs {
		out = append(out, codersdk.WorkspaceAgentLog{
			ID: l.ID, CreatedAt: l.CreatedAt, Output: l.Output, Level: codersdk.LogLevel(l.Level),
			SourceID: l.LogSourceID, AgentID: l.AgentID,
		})
	}
	return out
}
