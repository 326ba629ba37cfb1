package coderd

import (
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
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

func (api *API) convertBuild(r *http.Request, b database.WorkspaceBuild, ws database.Workspace, owner database.User) (codersdk.WorkspaceBuild, error) {
	ctx := r.Context()
	job, err := api.db.GetProvisionerJobByID(ctx, b.JobID)
	if err != nil {
		return codersdk.WorkspaceBuild{}, fmt.Errorf("get build job: %w", err)
	}
	sdkJob, err := api.convertJob(ctx, job)
	if err != nil {
		return codersdk.WorkspaceBuild{}, err
	}
	out := codersdk.WorkspaceBuild{
		ID: b.ID, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt, WorkspaceID: ws.ID, WorkspaceName: ws.Name,
		WorkspaceOwnerID: owner.ID, WorkspaceOwnerName: owner.Username, TemplateVersionID: b.TemplateVersionID,
		BuildNumber: b.BuildNumber, Transition: codersdk.WorkspaceTransition(b.Transition), InitiatorID: b.InitiatorID,
		Job: sdkJob, Reason: string(b.Reason), DailyCost: b.DailyCost,
	}
	out.Status = BuildStatus(sdkJob.Status, out.Transition)
	if v, err := api.db.GetTemplateVersionByID(ctx, b.TemplateVersionID); err == nil {
		out.TemplateVersionName = v.Name
	}
	if u, err := api.db.GetUserByID(ctx, b.InitiatorID); err == nil {
		out.InitiatorUsername = u.Username
	}
	out.Resources, err = api.jobResources(r, b.JobID)
	if err != nil {
		return codersdk.WorkspaceBuild{}, err
	}
	if out.Resources == nil {
		out.Resources = []codersdk.WorkspaceResource{}
	}
	return out, nil
}

// postWorkspaceBuild queues a start, stop or delete of a workspace.
func (api *API) postWorkspaceBuild(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ok := api.workspaceFromRequest(w, r)
	if !ok {
		return
	}
	var req codersdk.CreateWorkspaceBuildRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	var transition database.WorkspaceTransition
	var action rbac.Action
	switch req.Transition {
	case codersdk.WorkspaceTransitionStart, codersdk.WorkspaceTransitionStop:
		transition, action = database.WorkspaceTransition(req.Transition), rbac.ActionUpdate
	case codersdk.WorkspaceTransitionDelete:
		transition, action = database.WorkspaceTransitionDelete, rbac.ActionDelete
	default:
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Validation failed.", Validations: []codersdk.ValidationError{{Field: "transition", Detail: "must be start, stop or delete"}},
		})
		return
	}
	if !api.authorize(r, action, workspaceObject(ws)) {
		httpapi.Forbidden(w, r)
		return
	}
	if req.Orphan && transition != database.WorkspaceTransitionDelete {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Validation failed.", Validations: []codersdk.ValidationError{{Field: "orphan", Detail: "only a delete may orphan resources"}},
		})
		return
	}
	if ws.Deleted {
		httpapi.Write(ctx, w, http.StatusGone, codersdk.Response{Message: "The workspace is deleted."})
		return
	}
	prev, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get latest build.", err)
		return
	}
	prevJob, err := api.db.GetProvisionerJobByID(ctx, prev.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get latest build job.", err)
		return
	}
	if jobStatus(prevJob).Active() {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: "A workspace build is already active.",
			Detail:  fmt.Sprintf("Build #%d (%s) is %s; wait for it or cancel it.", prev.BuildNumber, prev.Transition, jobStatus(prevJob)),
		})
		return
	}
	versionID := prev.TemplateVersionID
	if req.TemplateVersionID != uuid.Nil {
		versionID = req.TemplateVersionID
	}
	version, err := api.db.GetTemplateVersionByID(ctx, versionID)
	if err != nil || !version.TemplateID.Valid || version.TemplateID.UUID != ws.TemplateID {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Template version not found.", Validations: []codersdk.ValidationError{{Field: "template_version_id", Detail: "not a version of the workspace's template"}},
		})
		return
	}
	var values []codersdk.WorkspaceBuildParameter
	if !req.Orphan {
		if !api.importSucceeded(ctx, w, r, version, "template_version_id") {
			return
		}
		prevValues, err := api.db.GetWorkspaceBuildParameters(ctx, prev.ID)
		if err != nil {
			httpapi.InternalServerError(w, r, "Get build parameters.", err)
			return
		}
		if values, ok = api.resolveParameters(w, r, version.ID, prevValues, req.RichParameterValues); !ok {
			return
		}
	}
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	var build database.WorkspaceBuild
	err = api.db.InTx(ctx, func(q *database.Queries) error {
		var err error
		build, err = api.insertBuild(ctx, q, ws, version, transition, auth.User.ID, values, &prev, req.Orphan)
		return err
	})
	if err != nil {
		if database.IsUniqueViolation(err) {
			httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{Message: "Another build was queued concurrently."})
			return
		}
		httpapi.InternalServerError(w, r, "Create build.", err)
		return
	}
	api.prov.notifyJobs()
	owner, err := api.db.GetUserByID(ctx, ws.OwnerID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get owner.", err)
		return
	}
	out, err := api.convertBuild(r, build, ws, owner)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert build.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, out)
}

// buildFromRequest loads {workspacebuild} and its workspace, checking read access.
func (api *API) buildFromRequest(w http.ResponseWriter, r *http.Request) (database.WorkspaceBuild, database.Workspace, bool) {
	id, ok := paramUUID(w, r, "workspacebuild")
	if !ok {
		return database.WorkspaceBuild{}, database.Workspace{}, false
	}
	b, err := api.db.GetWorkspaceBuildByID(r.Context(), id)
	if err != nil {
		notFoundOr500(w, r, "workspace build", err)
		return database.WorkspaceBuild{}, database.Workspace{}, false
	}
	ws, err := api.db.GetWorkspaceByID(r.Context(), b.WorkspaceID)
	if err != nil {
		notFoundOr500(w, r, "workspace", err)
		return database.WorkspaceBuild{}, database.Workspace{}, false
	}
	if !api.authorize(r, rbac.ActionRead, workspaceObject(ws)) {
		httpapi.ResourceNotFound(w, r)
		return database.WorkspaceBuild{}, database.Workspace{}, false
	}
	return b, ws, true
}

func (api *API) workspaceBuild(w http.ResponseWriter, r *http.Request) {
	b, ws, ok := api.buildFromRequest(w, r)
	if !ok {
		return
	}
	owner, err := api.db.GetUserByID(r.Context(), ws.OwnerID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get owner.", err)
		return
	}
	out, err := api.convertBuild(r, b, ws, owner)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert build.", err)
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) workspaceBuilds(w http.ResponseWriter, r *http.Request) {
	ws, ok := api.workspaceFromRequest(w, r)
	if !ok {
		return
	}
	builds, err := api.db.GetWorkspaceBuildsByWorkspaceID(r.Context(), ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get builds.", err)
		return
	}
	owner, err := api.db.GetUserByID(r.Context(), ws.OwnerID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get owner.", err)
		return
	}
	out := make([]codersdk.WorkspaceBuild, 0, len(builds))
	for _, b := range builds {
		sb, err := api.convertBuild(r, b, ws, owner)
		if err != nil {
			httpapi.InternalServerError(w, r, "Convert build.", err)
			return
		}
		out = append(out, sb)
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) workspaceBuildLogs(w http.ResponseWriter, r *http.Request) {
	b, _, ok := api.buildFromRequest(w, r)
	if !ok {
		return
	}
	api.serveJobLogs(w, r, b.JobID)
}

func (api *API) workspaceBuildResources(w http.ResponseWriter, r *http.Request) {
	b, _, ok := api.buildFromRequest(w, r)
	if !ok {
		return
	}
	out, err := api.jobResources(r, b.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get resources.", err)
		return
	}
	if out == nil {
		out = []codersdk.WorkspaceResource{}
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) patchCancelWorkspaceBuild(w http.ResponseWriter, r *http.Request) {
	b, ws, ok := api.buildFromRequest(w, r)
	if !ok {
		return
	}
	if !api.authorize(r, rbac.ActionUpdate, workspaceObject(ws)) {
		httpapi.Forbidden(w, r)
		return
	}
	job, err := api.db.GetProvisionerJobByID(r.Context(), b.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get job.", err)
		return
	}
	api.cancelJob(w, r, job)
}
