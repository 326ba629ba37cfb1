package coderd

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// workspaceParityRoutes mounts the rename, favorite and usage routes of a
// {workspace}.
func (api *API) workspaceParityRoutes(r chi.Router) {
	r.Patch("/", api.patchWorkspace)
	r.Put("/favorite", api.putWorkspaceFavorite(true))
	r.Delete("/favorite", api.putWorkspaceFavorite(false))
	r.Post("/usage", api.postWorkspaceUsage)
}

// updatableWorkspace returns the route's workspace when the caller may
// update it and it is not deleted; otherwise it answers (404, 403, 410).
func (api *API) updatableWorkspace(w http.ResponseWriter, r *http.Request) (database.Workspace, bool) {
	ws, ok := api.readableWorkspace(w, r)
	if !ok {
		return ws, false
	}
	if !api.authorize(r, rbac.ActionUpdate, workspaceObject(ws)) {
		httpapi.Forbidden(w, r)
		return ws, false
	}
	if ws.Deleted {
		httpapi.Write(r.Context(), w, http.StatusGone, codersdk.Response{Message: "The workspace is deleted."})
		return ws, false
	}
	return ws, true
}

// patchWorkspace renames a workspace (PATCH /api/v2/workspaces/{workspace}).
// A workspace that runs or builds is refused: its resources were created
// with the old name (CODER_WORKSPACE_NAME), and the next build would plan
// against the new one.
func (api *API) patchWorkspace(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ok := api.updatableWorkspace(w, r)
	if !ok {
		return
	}
	var req codersdk.UpdateWorkspaceRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if errs := nameErrors("name", req.Name); len(errs) > 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Validation failed.", Validations: errs})
		return
	}
	if req.Name == ws.Name {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get latest build.", err)
		return
	}
	job, err := api.db.GetProvisionerJobByID(ctx, b.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get latest build job.", err)
		return
	}
	status := convert.BuildStatus(convert.JobStatus(job), codersdk.WorkspaceTransition(b.Transition))
	if status != codersdk.WorkspaceStatusStopped && status != codersdk.WorkspaceStatusFailed && status != codersdk.WorkspaceStatusCanceled {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: fmt.Sprintf("Workspace %q is %s and cannot be renamed.", ws.Name, status),
			Detail:  "Stop it first (coder stop " + ws.Name + "): its resources were created with the current name.",
		})
		return
	}
	if _, err := api.db.UpdateWorkspaceName(ctx, database.UpdateWorkspaceNameParams{ID: ws.ID, Name: req.Name, UpdatedAt: api.now()}); err != nil {
		if database.IsUniqueViolation(err) {
			httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
				Message:     fmt.Sprintf("Workspace %q already exists.", req.Name),
				Validations: []codersdk.ValidationError{{Field: "name", Detail: "this value is already in use"}},
			})
			return
		}
		httpapi.InternalServerError(w, r, "Rename workspace.", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// putWorkspaceFavorite marks (PUT) or unmarks (DELETE) a workspace as a
// favorite of its owner. Only the owner may: the mark orders the owner's
// own lists.
func (api *API) putWorkspaceFavorite(favorite bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		ws, ok := api.updatableWorkspace(w, r)
		if !ok {
			return
		}
		auth, _ := httpmw.AuthorizationFromContext(ctx)
		if auth.User.ID != ws.OwnerID {
			httpapi.Write(ctx, w, http.StatusForbidden, codersdk.Response{Message: "You can only favorite workspaces that you own."})
			return
		}
		if err := api.db.UpdateWorkspaceFavorite(ctx, database.UpdateWorkspaceFavoriteParams{ID: ws.ID, Favorite: favorite}); err != nil {
			httpapi.InternalServerError(w, r, "Update favorite.", err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

var usageApps = []string{codersdk.UsageAppSSH, codersdk.UsageAppVSCode, codersdk.UsageAppJetBrains, codersdk.UsageAppReconnectingPTY}

// postWorkspaceUsage records that a client uses the workspace through an
// app (coder ssh --usage-app): its last use and a deadline bump.
func (api *API) postWorkspaceUsage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ok := api.updatableWorkspace(w, r)
	if !ok {
		return
	}
	var req codersdk.PostWorkspaceUsageRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if !slices.Contains(usageApps, req.AppName) {
		validationFailed(w, r, "app_name", fmt.Sprintf("must be one of %s", strings.Join(usageApps, ", ")))
		return
	}
	if req.AgentID != uuid.Nil {
		owner, err := api.db.GetWorkspaceByAgentID(ctx, req.AgentID)
		if err != nil || owner.ID != ws.ID {
			validationFailed(w, r, "agent_id", "not an agent of this workspace")
			return
		}
	}
	now := api.now()
	if err := api.db.UpdateWorkspaceLastUsedAt(ctx, database.UpdateWorkspaceLastUsedAtParams{ID: ws.ID, LastUsedAt: now}); err != nil {
		httpapi.InternalServerError(w, r, "Record last use.", err)
		return
	}
	if err := api.bumpDeadline(ctx, ws); err != nil {
		httpapi.InternalServerError(w, r, "Bump deadline.", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// workspaceBuildParameters serves GET /api/v2/workspacebuilds/{workspacebuild}/parameters.
func (api *API) workspaceBuildParameters(w http.ResponseWriter, r *http.Request) {
	b, _, ok := api.readableBuild(w, r)
	if !ok {
		return
	}
	params, err := api.db.GetWorkspaceBuildParameters(r.Context(), b.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get build parameters.", err)
		return
	}
	out := make([]codersdk.WorkspaceBuildParameter, 0, len(params))
	for _, p := range params {
		out = append(out, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: p.Value})
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

// workspaceFilter is a parsed ?q= of the workspace list (Coder's search
// syntax): owner, name (substring), template, status, outdated, dormant.
type workspaceFilter struct {
	owner    string
	name     string
	template string
	status   codersdk.WorkspaceStatus
	outdated *bool
	dormant  *bool
}

var workspaceStatuses = []codersdk.WorkspaceStatus{
	codersdk.WorkspaceStatusPending, codersdk.WorkspaceStatusStarting, codersdk.WorkspaceStatusRunning,
	codersdk.WorkspaceStatusStopping, codersdk.WorkspaceStatusStopped, codersdk.WorkspaceStatusFailed,
	codersdk.WorkspaceStatusCanceling, codersdk.WorkspaceStatusCanceled, codersdk.WorkspaceStatusDeleting,
	codersdk.WorkspaceStatusDeleted,
}

// parseWorkspaceFilter parses space-separated key:value terms; a bare word
// filters by name. Unknown keys and bad values are validation errors.
func parseWorkspaceFilter(q string) (workspaceFilter, []codersdk.ValidationError) {
	var f workspaceFilter
	var errs []codersdk.ValidationError
	bad := func(detail string) { errs = append(errs, codersdk.ValidationError{Field: "q", Detail: detail}) }
	boolean := func(key, v string) *bool {
		switch strings.ToLower(v) {
		case "true":
			t := true
			return &t
		case "false":
			f := false
			return &f
		}
		bad(fmt.Sprintf("%s: %q is not true or false", key, v))
		return nil
	}
	for _, term := range strings.Fields(q) {
		key, value, ok := strings.Cut(term, ":")
		if !ok {
			key, value = "name", term
		}
		key = strings.ToLower(key)
		if value == "" {
			bad(fmt.Sprintf("%s: empty value", key))
			continue
		}
		switch key {
		case "owner":
			f.owner = value
		case "name":
			f.name = strings.ToLower(value)
		case "template":
			f.template = strings.ToLower(value)
		case "status":
			s := codersdk.WorkspaceStatus(strings.ToLower(value))
			if !slices.Contains(workspaceStatuses, s) {
				bad(fmt.Sprintf("status: unknown status %q", value))
				continue
			}
			f.status = s
		case "outdated":
			f.outdated = boolean(key, value)
		case "dormant":
			f.dormant = boolean(key, value)
		default:
			bad(fmt.Sprintf("unknown filter %q (known: owner, name, template, status, outdated, dormant)", key))
		}
	}
	return f, errs
}

// match reports whether a converted workspace passes the filter (owner is
// applied by the query).
func (f workspaceFilter) match(ws codersdk.Workspace) bool {
	if f.name != "" && !strings.Contains(strings.ToLower(ws.Name), f.name) {
		return false
	}
	if f.template != "" && strings.ToLower(ws.TemplateName) != f.template {
		return false
	}
	if f.status != "" && ws.LatestBuild.Status != f.status {
		return false
	}
	if f.outdated != nil && ws.Outdated != *f.outdated {
		return false
	}
	if f.dormant != nil && (ws.DormantAt != nil) != *f.dormant {
		return false
	}
	return true
}

// sortFavoritesFirst moves the caller's own favorite workspaces to the
// front, keeping the order otherwise.
func sortFavoritesFirst(list []codersdk.Workspace, caller uuid.UUID) {
	slices.SortStableFunc(list, func(a, b codersdk.Workspace) int {
		fa, fb := a.Favorite && a.OwnerID == caller, b.Favorite && b.OwnerID == caller
		switch {
		case fa && !fb:
			return -1
		case fb && !fa:
			return 1
		}
		return 0
	})
}
