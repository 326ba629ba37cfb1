package coderd

import (
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// postWorkspaceBuild queues a start, stop or delete of a workspace.
func (api *API) postWorkspaceBuild(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ok := api.readableWorkspace(w, r)
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
	if transition == database.WorkspaceTransitionStart && !refuseDormantStart(w, r, ws) {
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
	if convert.JobStatus(prevJob).Active() {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: "A workspace build is already active.",
			Detail:  fmt.Sprintf("Build #%d (%s) is %s; wait for it or cancel it.", prev.BuildNumber, prev.Transition, convert.JobStatus(prevJob)),
		})
		return
	}
	tmpl, err := api.db.GetTemplateByID(ctx, ws.TemplateID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template.", err)
		return
	}
	versionID, ok := api.buildVersionID(w, r, tmpl, transition, prev.TemplateVersionID, req.TemplateVersionID)
	if !ok {
		return
	}
	version, err := api.db.GetTemplateVersionByID(ctx, versionID)
	if err != nil || !version.TemplateID.Valid || version.TemplateID.UUID != ws.TemplateID {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Template version not found.", Validations: []codersdk.ValidationError{{Field: "template_version_id", Detail: "not a version of the workspace's template"}},
		})
		return
	}
	if req.TemplateVersionID != uuid.Nil && req.TemplateVersionID != prev.TemplateVersionID && !api.versionAllowed(w, r, tmpl, version) {
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
	if transition != database.WorkspaceTransitionStart {
		// A stopping or deleting workspace is no longer reachable: end
		// users' terminals, app connections and tunnels to its agents
		// (the agents' own connections end when the build completes).
		api.revoke(ctx, revocation.Workspace(ws.ID))
	}
	out, err := api.convertBuilds(ctx, ws, []database.WorkspaceBuild{build})
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert build.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, out[0])
}

// readableBuild returns the {workspacebuild} of the route and its workspace
// when the caller may read the workspace; otherwise it answers 404 and
// returns false.
func (api *API) readableBuild(w http.ResponseWriter, r *http.Request) (database.WorkspaceBuild, database.Workspace, bool) {
	ws, ok := api.readableWorkspace(w, r)
	if !ok {
		return database.WorkspaceBuild{}, database.Workspace{}, false
	}
	return httpmw.WorkspaceBuildParam(r), ws, true
}

func (api *API) workspaceBuild(w http.ResponseWriter, r *http.Request) {
	b, ws, ok := api.readableBuild(w, r)
	if !ok {
		return
	}
	out, err := api.convertBuilds(r.Context(), ws, []database.WorkspaceBuild{b})
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert build.", err)
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out[0])
}

func (api *API) workspaceBuilds(w http.ResponseWriter, r *http.Request) {
	ws, ok := api.readableWorkspace(w, r)
	if !ok {
		return
	}
	builds, err := api.db.GetWorkspaceBuildsByWorkspaceID(r.Context(), ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get builds.", err)
		return
	}
	out, err := api.convertBuilds(r.Context(), ws, builds)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert build.", err)
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) workspaceBuildLogs(w http.ResponseWriter, r *http.Request) {
	b, _, ok := api.readableBuild(w, r)
	if !ok {
		return
	}
	api.serveJobLogs(w, r, b.JobID)
}

func (api *API) workspaceBuildResources(w http.ResponseWriter, r *http.Request) {
	b, ws, ok := api.readableBuild(w, r)
	if !ok {
		return
	}
	resources, err := api.fetchResources(r.Context(), []uuid.UUID{b.JobID}, map[uuid.UUID]uuid.UUID{b.JobID: ws.ID})
	if err != nil {
		httpapi.InternalServerError(w, r, "Get resources.", err)
		return
	}
	out := resources[b.JobID]
	if out == nil {
		out = []codersdk.WorkspaceResource{}
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) patchCancelWorkspaceBuild(w http.ResponseWriter, r *http.Request) {
	b, ws, ok := api.readableBuild(w, r)
	if !ok {
		return
	}
	if !api.authorize(r, rbac.ActionUpdate, workspaceObject(ws)) {
		httpapi.Forbidden(w, r)
		return
	}
	// A template may forbid workspace owners to cancel their builds (a
	// half-applied build can leave resources behind); those who may
	// update the template (owners, template admins) still can.
	tmpl, err := api.db.GetTemplateByID(r.Context(), ws.TemplateID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template.", err)
		return
	}
	if !tmpl.AllowUserCancelWorkspaceJobs && !api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceTemplate, ID: tmpl.ID.String()}) {
		httpapi.Write(r.Context(), w, http.StatusForbidden, codersdk.Response{
			Message: "The template does not allow users to cancel workspace builds.",
			Detail:  fmt.Sprintf("Template %q has allow_user_cancel_workspace_jobs off; ask an owner or template admin to cancel the build.", tmpl.Name),
		})
		return
	}
	job, err := api.db.GetProvisionerJobByID(r.Context(), b.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get job.", err)
		return
	}
	api.cancelJob(w, r, job)
}
