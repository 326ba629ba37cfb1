package coderd

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// This file fetches the rows API responses are made of, in a fixed number
// of batched queries whatever the number of workspaces, builds, resources
// and agents, and hands them to the pure converters of coderd/convert.

// liveSince is the time since which a provisioner daemon last seen counts as live.
func (api *API) liveSince() time.Time { return api.now().Add(-api.liveDaemonWindow()) }

// agentStatus is an agent's connection status now.
func (api *API) agentStatus(a database.WorkspaceAgent) codersdk.WorkspaceAgentStatus {
	return convert.AgentStatus(a, api.opts.Now(), api.agents.opts.InactiveDisconnectTimeout)
}

// fetchResources returns the converted resources of each job, keyed by job
// ID, in four queries (resources with metadata, which of them survive a
// stop, agents with scripts, apps). workspaceOfJob names the workspace of each build job; agents of
// other jobs (template version imports) have no workspace.
func (api *API) fetchResources(ctx context.Context, jobIDs []uuid.UUID, workspaceOfJob map[uuid.UUID]uuid.UUID) (map[uuid.UUID][]codersdk.WorkspaceResource, error) {
	out := map[uuid.UUID][]codersdk.WorkspaceResource{}
	if len(jobIDs) == 0 {
		return out, nil
	}
	rows, err := api.db.GetWorkspaceResourcesWithMetadataByJobIDs(ctx, jobIDs)
	if err != nil {
		return nil, fmt.Errorf("get resources: %w", err)
	}
	type resource struct {
		row      database.WorkspaceResource
		metadata []database.WorkspaceResourceMetadatum
	}
	var resources []*resource
	byID := map[uuid.UUID]*resource{}
	for _, row := range rows {
		res, ok := byID[row.WorkspaceResource.ID]
		if !ok {
			res = &resource{row: row.WorkspaceResource}
			byID[res.row.ID] = res
			resources = append(resources, res)
		}
		if row.MetadataID.Valid {
			res.metadata = append(res.metadata, database.WorkspaceResourceMetadatum{
				ID: row.MetadataID.Int64, WorkspaceResourceID: res.row.ID, Key: row.MetadataKey.String,
				Value: row.MetadataValue, Sensitive: row.MetadataSensitive.Bool,
			})
		}
	}
	workspaceOfResource := make(map[uuid.UUID]uuid.UUID, len(resources))
	for _, res := range resources {
		workspaceOfResource[res.row.ID] = workspaceOfJob[res.row.JobID]
	}
	agents, err := api.fetchAgents(ctx, workspaceOfResource)
	if err != nil {
		return nil, err
	}
	persistentRows, err := api.db.GetPersistentResourceKeysByJobIDs(ctx, jobIDs)
	if err != nil {
		return nil, fmt.Errorf("get persistent resources: %w", err)
	}
	persistent := make(map[uuid.UUID]map[convert.ResourceKey]bool, len(jobIDs))
	for _, row := range persistentRows {
		if persistent[row.JobID] == nil {
			persistent[row.JobID] = map[convert.ResourceKey]bool{}
		}
		persistent[row.JobID][convert.ResourceKey{Type: row.Type, Name: row.Name}] = true
	}
	for _, res := range resources {
		key := convert.ResourceKey{Type: res.row.Type, Name: res.row.Name}
		// What a stop left in place survived it by definition.
		survives := res.row.Transition == database.WorkspaceTransitionStop || persistent[res.row.JobID][key]
		out[res.row.JobID] = append(out[res.row.JobID], convert.Resource(res.row, res.metadata, agents[res.row.ID], survives))
	}
	return out, nil
}

// fetchAgents returns the converted agents of the resources in
// workspaceOfResource (resource ID → workspace ID, uuid.Nil for none),
// keyed by resource ID, in two queries (agents with scripts, apps).
func (api *API) fetchAgents(ctx context.Context, workspaceOfResource map[uuid.UUID]uuid.UUID) (map[uuid.UUID][]codersdk.WorkspaceAgent, error) {
	out := map[uuid.UUID][]codersdk.WorkspaceAgent{}
	if len(workspaceOfResource) == 0 {
		return out, nil
	}
	resourceIDs := make([]uuid.UUID, 0, len(workspaceOfResource))
	for id := range workspaceOfResource {
		resourceIDs = append(resourceIDs, id)
	}
	rows, err := api.db.GetWorkspaceAgentsWithScriptsByResourceIDs(ctx, resourceIDs)
	if err != nil {
		return nil, fmt.Errorf("get agents: %w", err)
	}
	type agent struct {
		row     database.WorkspaceAgent
		scripts []database.WorkspaceAgentScript
	}
	var agents []*agent
	byID := map[uuid.UUID]*agent{}
	for _, row := range rows {
		a, ok := byID[row.WorkspaceAgent.ID]
		if !ok {
			a = &agent{row: row.WorkspaceAgent}
			byID[a.row.ID] = a
			agents = append(agents, a)
		}
		if row.ScriptID.Valid {
			a.scripts = append(a.scripts, database.WorkspaceAgentScript{
				ID: row.ScriptID.UUID, WorkspaceAgentID: a.row.ID, LogSourceID: row.ScriptLogSourceID.UUID,
				LogPath: row.ScriptLogPath.String, CreatedAt: row.ScriptCreatedAt.Time, Script: row.ScriptScript.String,
				Cron: row.ScriptCron.String, StartBlocksLogin: row.ScriptStartBlocksLogin.Bool,
				RunOnStart: row.ScriptRunOnStart.Bool, RunOnStop: row.ScriptRunOnStop.Bool,
				TimeoutSeconds: row.ScriptTimeoutSeconds.Int32, DisplayName: row.ScriptDisplayName.String,
			})
		}
	}
	if len(agents) == 0 {
		return out, nil
	}
	agentIDs := make([]uuid.UUID, 0, len(agents))
	for _, a := range agents {
		agentIDs = append(agentIDs, a.row.ID)
	}
	appRows, err := api.db.GetWorkspaceAppsByAgentIDs(ctx, agentIDs)
	if err != nil {
		return nil, fmt.Errorf("get apps: %w", err)
	}
	apps := map[uuid.UUID][]database.WorkspaceApp{}
	for _, app := range appRows {
		apps[app.AgentID] = append(apps[app.AgentID], app)
	}
	for _, a := range agents {
		sa, err := convert.Agent(a.row, workspaceOfResource[a.row.ResourceID], apps[a.row.ID], a.scripts, api.agentStatus(a.row))
		if err != nil {
			return nil, fmt.Errorf("convert agent %s: %w", a.row.ID, err)
		}
		out[a.row.ResourceID] = append(out[a.row.ResourceID], sa)
	}
	return out, nil
}

// fetchedBuild is a build's details row and its API shape.
type fetchedBuild struct {
	row database.GetWorkspaceBuildsWithDetailsRow
	sdk codersdk.WorkspaceBuild
}

// fetchBuilds converts the builds named by buildIDs and the latest build of
// each workspace in latestOf, in five queries (builds with their details,
// then fetchResources), ordered by workspace and newest build first.
// workspaces holds the workspace of every build.
func (api *API) fetchBuilds(ctx context.Context, workspaces map[uuid.UUID]database.Workspace, buildIDs, latestOf []uuid.UUID) ([]fetchedBuild, error) {
	if len(buildIDs) == 0 && len(latestOf) == 0 {
		return nil, nil
	}
	rows, err := api.db.GetWorkspaceBuildsWithDetails(ctx, database.GetWorkspaceBuildsWithDetailsParams{
		LiveSince: api.liveSince(), BuildIds: buildIDs, LatestOf: latestOf,
	})
	if err != nil {
		return nil, fmt.Errorf("get builds: %w", err)
	}
	jobIDs := make([]uuid.UUID, 0, len(rows))
	workspaceOfJob := make(map[uuid.UUID]uuid.UUID, len(rows))
	for _, row := range rows {
		jobIDs = append(jobIDs, row.WorkspaceBuild.JobID)
		workspaceOfJob[row.WorkspaceBuild.JobID] = row.WorkspaceBuild.WorkspaceID
	}
	resources, err := api.fetchResources(ctx, jobIDs, workspaceOfJob)
	if err != nil {
		return nil, err
	}
	out := make([]fetchedBuild, 0, len(rows))
	for _, row := range rows {
		ws, ok := workspaces[row.WorkspaceBuild.WorkspaceID]
		if !ok {
			return nil, fmt.Errorf("build %s: workspace %s not given", row.WorkspaceBuild.ID, row.WorkspaceBuild.WorkspaceID)
		}
		job := convert.Job(row.ProvisionerJob, convert.JobQueue{
			Position: int(row.QueuePosition), Size: int(row.QueueSize), LiveDaemons: int(row.LiveDaemons),
		})
		names := convert.BuildNames{Owner: row.OwnerUsername, Initiator: row.InitiatorUsername, TemplateVersion: row.TemplateVersionName}
		out = append(out, fetchedBuild{
			row: row,
			sdk: convert.WorkspaceBuild(row.WorkspaceBuild, ws, names, job, resources[row.WorkspaceBuild.JobID]),
		})
	}
	return out, nil
}

// convertBuilds converts builds of ws (see fetchBuilds), keeping their order.
func (api *API) convertBuilds(ctx context.Context, ws database.Workspace, builds []database.WorkspaceBuild) ([]codersdk.WorkspaceBuild, error) {
	ids := make([]uuid.UUID, 0, len(builds))
	for _, b := range builds {
		ids = append(ids, b.ID)
	}
	fetched, err := api.fetchBuilds(ctx, map[uuid.UUID]database.Workspace{ws.ID: ws}, ids, nil)
	if err != nil {
		return nil, err
	}
	byID := make(map[uuid.UUID]codersdk.WorkspaceBuild, len(fetched))
	for _, f := range fetched {
		byID[f.sdk.ID] = f.sdk
	}
	out := make([]codersdk.WorkspaceBuild, 0, len(builds))
	for _, b := range builds {
		sb, ok := byID[b.ID]
		if !ok {
			return nil, fmt.Errorf("build %s vanished", b.ID)
		}
		out = append(out, sb)
	}
	return out, nil
}

// convertWorkspaces converts workspaces with their latest builds (see
// fetchBuilds), keeping their order.
func (api *API) convertWorkspaces(ctx context.Context, wss []database.Workspace) ([]codersdk.Workspace, error) {
	out := make([]codersdk.Workspace, 0, len(wss))
	if len(wss) == 0 {
		return out, nil
	}
	byID := make(map[uuid.UUID]database.Workspace, len(wss))
	ids := make([]uuid.UUID, 0, len(wss))
	for _, ws := range wss {
		byID[ws.ID] = ws
		ids = append(ids, ws.ID)
	}
	fetched, err := api.fetchBuilds(ctx, byID, nil, ids)
	if err != nil {
		return nil, err
	}
	latest := make(map[uuid.UUID]fetchedBuild, len(fetched))
	for _, f := range fetched {
		latest[f.row.WorkspaceBuild.WorkspaceID] = f
	}
	for _, ws := range wss {
		b, ok := latest[ws.ID]
		if !ok {
			return nil, fmt.Errorf("workspace %s has no build", ws.ID)
		}
		out = append(out, convert.Workspace(ws, b.row.OwnerUsername, b.row.Template, b.sdk))
	}
	return out, nil
}

// convertWorkspace converts one workspace (see convertWorkspaces).
func (api *API) convertWorkspace(ctx context.Context, ws database.Workspace) (codersdk.Workspace, error) {
	out, err := api.convertWorkspaces(ctx, []database.Workspace{ws})
	if err != nil {
		return codersdk.Workspace{}, err
	}
	return out[0], nil
}

// fetchJobs converts the given jobs, keyed by ID, in one query.
func (api *API) fetchJobs(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]codersdk.ProvisionerJob, error) {
	out := make(map[uuid.UUID]codersdk.ProvisionerJob, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := api.db.GetProvisionerJobsWithQueueByIDs(ctx, database.GetProvisionerJobsWithQueueByIDsParams{
		LiveSince: api.liveSince(), Ids: ids,
	})
	if err != nil {
		return nil, fmt.Errorf("get jobs: %w", err)
	}
	for _, row := range rows {
		out[row.ProvisionerJob.ID] = convert.Job(row.ProvisionerJob, convert.JobQueue{
			Position: int(row.QueuePosition), Size: int(row.QueueSize), LiveDaemons: int(row.LiveDaemons),
		})
	}
	return out, nil
}

// usernames returns the usernames of the given users, keyed by ID, in one
// query; users that do not exist are absent.
func (api *API) usernames(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]string, error) {
	out := make(map[uuid.UUID]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	users, err := api.db.GetUsersByIDs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get users: %w", err)
	}
	for _, u := range users {
		out[u.ID] = u.Username
	}
	return out, nil
}

// convertTemplateVersions converts template versions, keeping their
// order, in two queries (jobs, creators).
func (api *API) convertTemplateVersions(ctx context.Context, versions []database.TemplateVersion) ([]codersdk.TemplateVersion, error) {
	jobIDs := make([]uuid.UUID, 0, len(versions))
	userIDs := make([]uuid.UUID, 0, len(versions))
	for _, v := range versions {
		jobIDs = append(jobIDs, v.JobID)
		userIDs = append(userIDs, v.CreatedBy)
	}
	jobs, err := api.fetchJobs(ctx, jobIDs)
	if err != nil {
		return nil, err
	}
	names, err := api.usernames(ctx, userIDs)
	if err != nil {
		return nil, err
	}
	out := make([]codersdk.TemplateVersion, 0, len(versions))
	for _, v := range versions {
		job, ok := jobs[v.JobID]
		if !ok {
			return nil, fmt.Errorf("template version %s: job %s not found", v.ID, v.JobID)
		}
		out = append(out, convert.TemplateVersion(v, job, names[v.CreatedBy]))
	}
	return out, nil
}

// convertTemplateVersion converts one template version (see convertTemplateVersions).
func (api *API) convertTemplateVersion(ctx context.Context, v database.TemplateVersion) (codersdk.TemplateVersion, error) {
	out, err := api.convertTemplateVersions(ctx, []database.TemplateVersion{v})
	if err != nil {
		return codersdk.TemplateVersion{}, err
	}
	return out[0], nil
}

// convertTemplates converts templates, keeping their order, in two
// queries (creators, workspace counts).
func (api *API) convertTemplates(ctx context.Context, templates []database.Template) ([]codersdk.Template, error) {
	out := make([]codersdk.Template, 0, len(templates))
	if len(templates) == 0 {
		return out, nil
	}
	ids := make([]uuid.UUID, 0, len(templates))
	userIDs := make([]uuid.UUID, 0, len(templates))
	for _, t := range templates {
		ids = append(ids, t.ID)
		userIDs = append(userIDs, t.CreatedBy)
	}
	names, err := api.usernames(ctx, userIDs)
	if err != nil {
		return nil, err
	}
	rows, err := api.db.GetWorkspaceCountsByTemplateIDs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get workspace counts: %w", err)
	}
	counts := make(map[uuid.UUID]int, len(rows))
	for _, row := range rows {
		counts[row.TemplateID] = int(row.WorkspaceCount)
	}
	schedules, err := api.templateSchedules(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, t := range templates {
		sdk := convert.Template(t, names[t.CreatedBy], counts[t.ID])
		sdk.TemplateSchedule = schedules[t.ID]
		out = append(out, sdk)
	}
	return out, nil
}

// convertTemplate converts one template (see convertTemplates).
func (api *API) convertTemplate(ctx context.Context, t database.Template) (codersdk.Template, error) {
	out, err := api.convertTemplates(ctx, []database.Template{t})
	if err != nil {
		return codersdk.Template{}, err
	}
	return out[0], nil
}
