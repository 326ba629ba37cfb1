package convert

import (
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// BuildStatus derives a workspace build's status from its job status and transition.
func BuildStatus(job codersdk.ProvisionerJobStatus, transition codersdk.WorkspaceTransition) codersdk.WorkspaceStatus {
	switch job {
	case codersdk.ProvisionerJobPending:
		return codersdk.WorkspaceStatusPending
	case codersdk.ProvisionerJobRunning:
		switch transition {
		case codersdk.WorkspaceTransitionStop:
			return codersdk.WorkspaceStatusStopping
		case codersdk.WorkspaceTransitionDelete:
			return codersdk.WorkspaceStatusDeleting
		default:
			return codersdk.WorkspaceStatusStarting
		}
	case codersdk.ProvisionerJobSucceeded:
		switch transition {
		case codersdk.WorkspaceTransitionStop:
			return codersdk.WorkspaceStatusStopped
		case codersdk.WorkspaceTransitionDelete:
			return codersdk.WorkspaceStatusDeleted
		default:
			return codersdk.WorkspaceStatusRunning
		}
	case codersdk.ProvisionerJobCanceling:
		return codersdk.WorkspaceStatusCanceling
	case codersdk.ProvisionerJobCanceled:
		return codersdk.WorkspaceStatusCanceled
	default:
		return codersdk.WorkspaceStatusFailed
	}
}

// Resource turns a resource, its metadata and its converted agents into
// the resource's API shape. Sensitive metadata values are blanked. A
// resource with agents is computational, any other peripheral; persistent
// says whether it survives a stop (see ResourceKey).
func Resource(r database.WorkspaceResource, metadata []database.WorkspaceResourceMetadatum, agents []codersdk.WorkspaceAgent, persistent bool) codersdk.WorkspaceResource {
	out := codersdk.WorkspaceResource{
		ID: r.ID, CreatedAt: r.CreatedAt, JobID: r.JobID, Transition: codersdk.WorkspaceTransition(r.Transition),
		Type: r.Type, Name: r.Name, Hide: r.Hide, Icon: r.Icon, DailyCost: r.DailyCost, Agents: agents,
		Kind: codersdk.ResourceKindPeripheral, Lifetime: codersdk.ResourceLifetimeEphemeral,
	}
	if len(agents) > 0 {
		out.Kind = codersdk.ResourceKindComputational
	}
	if persistent {
		out.Lifetime = codersdk.ResourceLifetimePersistent
	}
	for _, md := range metadata {
		value := md.Value.String
		if md.Sensitive {
			value = ""
		}
		out.Metadata = append(out.Metadata, codersdk.WorkspaceResourceMetadata{Key: md.Key, Value: value, Sensitive: md.Sensitive})
	}
	return out
}

// ResourceKey names a resource the same way across the states of a
// workspace's builds: its Terraform type and name.
type ResourceKey struct {
	Type, Name string
}

// BuildNames are the names a build's API shape shows next to IDs; a name
// whose row is gone is empty.
type BuildNames struct {
	// Owner is the username of the workspace's owner.
	Owner string
	// Initiator is the username of the user who started the build.
	Initiator string
	// TemplateVersion is the name of the build's template version.
	TemplateVersion string
}

// WorkspaceBuild turns a build of ws into its API shape, given its
// converted job and resources (nil resources become an empty list).
func WorkspaceBuild(b database.WorkspaceBuild, ws database.Workspace, names BuildNames, job codersdk.ProvisionerJob, resources []codersdk.WorkspaceResource) codersdk.WorkspaceBuild {
	if resources == nil {
		resources = []codersdk.WorkspaceResource{}
	}
	out := codersdk.WorkspaceBuild{
		ID: b.ID, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt, WorkspaceID: ws.ID, WorkspaceName: ws.Name,
		WorkspaceOwnerID: ws.OwnerID, WorkspaceOwnerName: names.Owner, TemplateVersionID: b.TemplateVersionID,
		TemplateVersionName: names.TemplateVersion, BuildNumber: b.BuildNumber,
		Transition: codersdk.WorkspaceTransition(b.Transition), InitiatorID: b.InitiatorID,
		InitiatorUsername: names.Initiator, Job: job, Reason: string(b.Reason), DailyCost: b.DailyCost,
		Resources: resources,
	}
	out.Status = BuildStatus(job.Status, out.Transition)
	if !b.Deadline.IsZero() {
		d := b.Deadline
		out.Deadline = &d
	}
	if !b.MaxDeadline.IsZero() {
		d := b.MaxDeadline
		out.MaxDeadline = &d
	}
	return out
}

// Workspace turns a workspace, its owner's username, its template and its
// converted latest build into the workspace's API shape.
func Workspace(ws database.Workspace, ownerName string, tmpl database.Template, latest codersdk.WorkspaceBuild) codersdk.Workspace {
	out := codersdk.Workspace{
		ID: ws.ID, CreatedAt: ws.CreatedAt, UpdatedAt: ws.UpdatedAt, OwnerID: ws.OwnerID, OwnerName: ownerName,
		TemplateID: ws.TemplateID, TemplateName: tmpl.Name, TemplateDisplayName: tmpl.DisplayName, TemplateIcon: tmpl.Icon,
		TemplateActiveVersionID:              tmpl.ActiveVersionID,
		TemplateAllowUserCancelWorkspaceJobs: tmpl.AllowUserCancelWorkspaceJobs,
		LatestBuild:                          latest,
		Outdated:                             latest.TemplateVersionID != tmpl.ActiveVersionID,
		Name:                                 ws.Name, LastUsedAt: ws.LastUsedAt,
		Favorite: ws.Favorite,
	}
	if ws.AutostartSchedule.Valid {
		s := ws.AutostartSchedule.String
		out.AutostartSchedule = &s
	}
	if ws.Ttl.Valid {
		ms := ws.Ttl.Int64 / 1e6
		out.TTLMillis = &ms
	}
	if ws.DormantAt.Valid {
		t := ws.DormantAt.Time
		out.DormantAt = &t
	}
	if ws.DeletingAt.Valid {
		t := ws.DeletingAt.Time
		out.DeletingAt = &t
	}
	return out
}
