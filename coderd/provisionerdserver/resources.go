package provisionerdserver

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/apikey"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/database"
)

// insertParameter stores a rich parameter an import found; i is its position
// in the template, the display order when the template names none.
func insertParameter(ctx context.Context, q *database.Queries, versionID uuid.UUID, p provisionersdk.RichParameter, i int) error {
	opts := p.Options
	if opts == nil {
		opts = []codersdk.TemplateVersionParameterOption{}
	}
	rawOpts, err := json.Marshal(opts)
	if err != nil {
		return fmt.Errorf("encode options: %w", err)
	}
	order := p.Order
	if order == 0 {
		order = int32(i)
	}
	in := database.InsertTemplateVersionParameterParams{
		TemplateVersionID: versionID, Name: p.Name, Description: p.Description, Type: p.Type,
		Mutable: p.Mutable, DefaultValue: p.DefaultValue, Icon: p.Icon, Options: rawOpts,
		ValidationRegex: p.ValidationRegex, ValidationError: p.ValidationError,
		ValidationMonotonic: p.ValidationMonotonic, Required: p.Required, DisplayName: p.DisplayName,
		DisplayOrder: order, Ephemeral: p.Ephemeral, FormType: p.FormType,
	}
	if p.ValidationMin != nil {
		in.ValidationMin = pgtype.Int4{Int32: *p.ValidationMin, Valid: true}
	}
	if p.ValidationMax != nil {
		in.ValidationMax = pgtype.Int4{Int32: *p.ValidationMax, Valid: true}
	}
	if _, err := q.InsertTemplateVersionParameter(ctx, in); err != nil {
		return fmt.Errorf("insert parameter %q: %w", p.Name, err)
	}
	return nil
}

// insertResources stores resources with their metadata, agents (hashed
// tokens), scripts, apps and metadata definitions.
func (s *Server) insertResources(ctx context.Context, q *database.Queries, jobID uuid.UUID, transition database.WorkspaceTransition, resources []provisionersdk.Resource) error {
	now := s.now()
	for _, res := range resources {
		dbRes, err := q.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{
			ID: uuid.New(), CreatedAt: now, JobID: jobID, Transition: transition,
			Type: res.Type, Name: res.Name, Hide: res.Hide, Icon: res.Icon, DailyCost: res.DailyCost,
		})
		if err != nil {
			return fmt.Errorf("insert resource %s.%s: %w", res.Type, res.Name, err)
		}
		for _, md := range res.Metadata {
			if _, err := q.InsertWorkspaceResourceMetadata(ctx, database.InsertWorkspaceResourceMetadataParams{
				WorkspaceResourceID: dbRes.ID, Key: md.Key,
				Value: pgtype.Text{String: md.Value, Valid: !md.IsNull}, Sensitive: md.Sensitive,
			}); err != nil {
				return fmt.Errorf("insert resource metadata %q: %w", md.Key, err)
			}
		}
		for _, agent := range res.Agents {
			if err := s.insertAgent(ctx, q, dbRes.ID, agent); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) insertAgent(ctx context.Context, q *database.Queries, resourceID uuid.UUID, agent provisionersdk.Agent) error {
	now := s.now()
	token := agent.Token
	if token == "" {
		// Import and dry-run plans have no token yet; store an unusable hash.
		token = "unknown-" + uuid.NewString()
	}
	env, err := json.Marshal(agent.Env)
	if err != nil {
		return fmt.Errorf("encode agent env: %w", err)
	}
	displayApps := []byte(`{}`)
	if agent.DisplayApps != nil {
		if displayApps, err = json.Marshal(agent.DisplayApps); err != nil {
			return fmt.Errorf("encode display apps: %w", err)
		}
	}
	dbAgent, err := q.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
		ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: agent.Name, ResourceID: resourceID,
		AuthTokenHash: apikey.HashAgentToken(token), Architecture: agent.Architecture, OperatingSystem: agent.OperatingSystem,
		Directory: agent.Directory, EnvironmentVariables: env,
		ConnectionTimeoutSeconds: agent.ConnectionTimeoutSeconds, TroubleshootingUrl: agent.TroubleshootingURL,
		MotdFile: agent.MOTDFile, DisplayApps: displayApps, DisplayOrder: int32(agent.Order),
	})
	if err != nil {
		return fmt.Errorf("insert agent %q: %w", agent.Name, err)
	}
	if len(agent.Scripts) > 0 {
		srcs := database.InsertWorkspaceAgentLogSourcesParams{WorkspaceAgentID: dbAgent.ID, CreatedAt: now}
		scripts := database.InsertWorkspaceAgentScriptsParams{WorkspaceAgentID: dbAgent.ID, CreatedAt: now}
		for _, s := range agent.Scripts {
			src := uuid.New()
			srcs.ID = append(srcs.ID, src)
			srcs.DisplayName = append(srcs.DisplayName, truncateRunes(s.DisplayName, 127))
			srcs.Icon = append(srcs.Icon, s.Icon)
			scripts.ID = append(scripts.ID, uuid.New())
			scripts.LogSourceID = append(scripts.LogSourceID, src)
			scripts.LogPath = append(scripts.LogPath, s.LogPath)
			scripts.Script = append(scripts.Script, s.Script)
			scripts.Cron = append(scripts.Cron, s.Cron)
			scripts.StartBlocksLogin = append(scripts.StartBlocksLogin, s.StartBlocksLogin)
			scripts.RunOnStart = append(scripts.RunOnStart, s.RunOnStart)
			scripts.RunOnStop = append(scripts.RunOnStop, s.RunOnStop)
			scripts.TimeoutSeconds = append(scripts.TimeoutSeconds, s.TimeoutSeconds)
			scripts.DisplayName = append(scripts.DisplayName, s.DisplayName)
		}
		if _, err := q.InsertWorkspaceAgentLogSources(ctx, srcs); err != nil {
			return fmt.Errorf("insert agent log sources: %w", err)
		}
		if _, err := q.InsertWorkspaceAgentScripts(ctx, scripts); err != nil {
			return fmt.Errorf("insert agent scripts: %w", err)
		}
	}
	for i, md := range agent.Metadata {
		order := md.Order
		if order == 0 {
			order = int64(i)
		}
		if err := q.InsertWorkspaceAgentMetadata(ctx, database.InsertWorkspaceAgentMetadataParams{
			WorkspaceAgentID: dbAgent.ID, DisplayName: md.DisplayName, Key: md.Key, Script: md.Script,
			Timeout: md.Timeout, Interval: md.Interval, DisplayOrder: int32(order),
		}); err != nil {
			return fmt.Errorf("insert agent metadata %q: %w", md.Key, err)
		}
	}
	for i, app := range agent.Apps {
		health := database.WorkspaceAppHealthDisabled
		in := database.InsertWorkspaceAppParams{
			ID: uuid.New(), CreatedAt: now, AgentID: dbAgent.ID, Slug: app.Slug, DisplayName: app.DisplayName,
			Icon: app.Icon, Command: pgtype.Text{String: app.Command, Valid: app.Command != ""},
			Url: pgtype.Text{String: app.URL, Valid: app.URL != ""}, Subdomain: app.Subdomain,
			SharingLevel: database.AppSharingLevelOwner, External: app.External, Hidden: app.Hidden,
			DisplayOrder: int32(app.Order), OpenIn: app.OpenIn,
		}
		if in.DisplayOrder == 0 {
			in.DisplayOrder = int32(i)
		}
		if in.OpenIn == "" {
			in.OpenIn = "slim-window"
		}
		if lvl := database.AppSharingLevel(app.SharingLevel); lvl.Valid() {
			in.SharingLevel = lvl
		}
		if app.Healthcheck != nil && app.Healthcheck.URL != "" {
			health = database.WorkspaceAppHealthInitializing
			in.HealthcheckUrl = app.Healthcheck.URL
			in.HealthcheckInterval = app.Healthcheck.Interval
			in.HealthcheckThreshold = app.Healthcheck.Threshold
		}
		in.Health = health
		if _, err := q.InsertWorkspaceApp(ctx, in); err != nil {
			return fmt.Errorf("insert app %q: %w", app.Slug, err)
		}
	}
	return nil
}
