package coderd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

func workspaceObject(ws database.Workspace) rbac.Object {
	return rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: ws.OwnerID, ID: ws.ID.String()}
}

// postWorkspace creates a workspace and queues its first (start) build
// (POST /api/v2/users/{user}/workspaces).
func (api *API) postWorkspace(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	owner := httpmw.UserParam(r)
	if !api.authorize(r, rbac.ActionCreate, rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: owner.ID}) {
		httpapi.Forbidden(w, r)
		return
	}
	var req codersdk.CreateWorkspaceRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	errs := nameErrors("name", req.Name)
	if req.TemplateID == uuid.Nil && req.TemplateVersionID == uuid.Nil {
		errs = append(errs, codersdk.ValidationError{Field: "template_id", Detail: "template_id or template_version_id is required"})
	}
	if len(errs) > 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Validation failed.", Validations: errs})
		return
	}
	var tmpl database.Template
	var version database.TemplateVersion
	var err error
	if req.TemplateVersionID != uuid.Nil {
		version, err = api.db.GetTemplateVersionByID(ctx, req.TemplateVersionID)
		if err != nil || !version.TemplateID.Valid {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "Template version not found.", Validations: []codersdk.ValidationError{{Field: "template_version_id", Detail: "no such template version of a template"}},
			})
			return
		}
		req.TemplateID = version.TemplateID.UUID
	}
	tmpl, err = api.db.GetTemplateByID(ctx, req.TemplateID)
	if err != nil || tmpl.Deleted {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Template not found.", Validations: []codersdk.ValidationError{{Field: "template_id", Detail: "no such template"}},
		})
		return
	}
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceTemplate, ID: tmpl.ID.String()}) {
		httpapi.Forbidden(w, r)
		return
	}
	if req.TemplateVersionID == uuid.Nil {
		if version, err = api.db.GetTemplateVersionByID(ctx, tmpl.ActiveVersionID); err != nil {
			httpapi.InternalServerError(w, r, "Get active template version.", err)
			return
		}
	}
	if req.TemplateVersionID != uuid.Nil && !api.versionAllowed(w, r, tmpl, version) {
		return
	}
	if _, ok := api.buildVersionID(w, r, tmpl, database.WorkspaceTransitionStart, version.ID, req.TemplateVersionID); !ok {
		return
	}
	if !api.importSucceeded(ctx, w, r, version, "template_version_id") {
		return
	}
	if !api.checkCreateSchedule(w, r, tmpl.ID, req) {
		return
	}
	if _, err := api.db.GetWorkspaceByOwnerIDAndName(ctx, database.GetWorkspaceByOwnerIDAndNameParams{OwnerID: owner.ID, Name: req.Name}); err == nil {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message:     fmt.Sprintf("Workspace %q already exists.", req.Name),
			Validations: []codersdk.ValidationError{{Field: "name", Detail: "this value is already in use"}},
		})
		return
	}
	values, ok := api.resolveParameters(w, r, version.ID, nil, req.RichParameterValues)
	if !ok {
		return
	}
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	now := api.now()
	var ws database.Workspace
	err = api.db.InTx(ctx, func(q *database.Queries) error {
		in := database.InsertWorkspaceParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, OwnerID: owner.ID, TemplateID: tmpl.ID, Name: req.Name,
			AutomaticUpdates: "never",
		}
		if req.AutostartSchedule != nil {
			in.AutostartSchedule = pgtype.Text{String: *req.AutostartSchedule, Valid: true}
		}
		if req.TTLMillis != nil {
			in.Ttl = pgtype.Int8{Int64: *req.TTLMillis * 1e6, Valid: true}
		}
		var err error
		if ws, err = q.InsertWorkspace(ctx, in); err != nil {
			return err
		}
		// A template deleted meanwhile (deleteTemplate locks its row and
		// counts its workspaces) must not get a workspace.
		if t, err := q.GetTemplateByID(ctx, tmpl.ID); err != nil || t.Deleted {
			return errTemplateDeleted
		}
		_, err = api.insertBuild(ctx, q, ws, version, database.WorkspaceTransitionStart, auth.User.ID, values, nil, false)
		return err
	})
	if errors.Is(err, errTemplateDeleted) {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Template not found.", Validations: []codersdk.ValidationError{{Field: "template_id", Detail: "the template was deleted"}},
		})
		return
	}
	if err != nil {
		if database.IsUniqueViolation(err) {
			httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
				Message:     fmt.Sprintf("Workspace %q already exists.", req.Name),
				Validations: []codersdk.ValidationError{{Field: "name", Detail: "this value is already in use"}},
			})
			return
		}
		httpapi.InternalServerError(w, r, "Create workspace.", err)
		return
	}
	api.prov.notifyJobs()
	out, err := api.convertWorkspace(ctx, ws)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert workspace.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, out)
}

// resolveParameters computes a build's parameter values from the template
// version's parameters, the previous build's values and the requested ones,
// and validates them. On failure it writes a 400 naming the parameters.
func (api *API) resolveParameters(w http.ResponseWriter, r *http.Request, versionID uuid.UUID, previous []database.WorkspaceBuildParameter, requested []codersdk.WorkspaceBuildParameter) ([]codersdk.WorkspaceBuildParameter, bool) {
	ctx := r.Context()
	params, err := api.db.GetTemplateVersionParameters(ctx, versionID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template parameters.", err)
		return nil, false
	}
	values, errs := ResolveParameters(params, previous, requested)
	if len(errs) > 0 {
		names := make([]string, 0, len(errs))
		for _, e := range errs {
			names = append(names, e.Field)
		}
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     fmt.Sprintf("Invalid rich parameter values: %s.", strings.Join(names, ", ")),
			Detail:      errs[0].Field + ": " + errs[0].Detail,
			Validations: errs,
		})
		return nil, false
	}
	return values, true
}

// ResolveParameters merges requested values over previous ones and defaults
// for every parameter of a template version, and validates each value (type,
// options, regex, min/max, mutability, required). Validation errors name the
// parameter in Field.
func ResolveParameters(params []database.TemplateVersionParameter, previous []database.WorkspaceBuildParameter, requested []codersdk.WorkspaceBuildParameter) ([]codersdk.WorkspaceBuildParameter, []codersdk.ValidationError) {
	var errs []codersdk.ValidationError
	req := map[string]string{}
	for _, p := range requested {
		req[p.Name] = p.Value
	}
	prev := map[string]string{}
	for _, p := range previous {
		prev[p.Name] = p.Value
	}
	known := map[string]bool{}
	var out []codersdk.WorkspaceBuildParameter
	for _, p := range params {
		known[p.Name] = true
		value, isReq := req[p.Name]
		prevValue, hasPrev := prev[p.Name]
		switch {
		case isReq:
			if hasPrev && !p.Mutable && value != prevValue && !p.Ephemeral {
				errs = append(errs, codersdk.ValidationError{Field: p.Name, Detail: fmt.Sprintf("parameter %q is immutable and cannot be changed", p.Name)})
				continue
			}
			if hasPrev && value != prevValue && !p.Ephemeral {
				if err := checkMonotonic(p, prevValue, value); err != nil {
					errs = append(errs, codersdk.ValidationError{Field: p.Name, Detail: err.Error()})
					continue
				}
			}
		case hasPrev && !p.Ephemeral:
			value = prevValue
		case p.Required:
			errs = append(errs, codersdk.ValidationError{Field: p.Name, Detail: fmt.Sprintf("parameter %q is required but was not provided", p.Name)})
			continue
		default:
			value = p.DefaultValue
		}
		if err := validateParameterValue(p, value); err != nil {
			errs = append(errs, codersdk.ValidationError{Field: p.Name, Detail: fmt.Sprintf("parameter %q: %v", p.Name, err)})
			continue
		}
		out = append(out, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: value})
	}
	for _, p := range requested {
		if !known[p.Name] {
			errs = append(errs, codersdk.ValidationError{Field: p.Name, Detail: fmt.Sprintf("parameter %q is not defined by the template", p.Name)})
		}
	}
	return out, errs
}

func validateParameterValue(p database.TemplateVersionParameter, value string) error {
	if p.ValidationError != "" {
		// A custom message (with {min}, {max} and {value} expanded)
		// replaces the generic ones, which follow in parentheses.
		if err := checkParameterValue(p, value); err != nil {
			return fmt.Errorf("%s (%w)", expandValidationError(p, value), err)
		}
		return nil
	}
	return checkParameterValue(p, value)
}

func checkParameterValue(p database.TemplateVersionParameter, value string) error {
	opts := convert.TemplateVersionParameter(p).Options
	if len(opts) > 0 && p.Type != "list(string)" {
		valid := slices.ContainsFunc(opts, func(o codersdk.TemplateVersionParameterOption) bool { return o.Value == value })
		if !valid {
			return fmt.Errorf("value %q is not one of the options", value)
		}
	}
	switch p.Type {
	case "number":
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("value %q is not a number", value)
		}
		if p.ValidationMin.Valid && n < float64(p.ValidationMin.Int32) {
			return fmt.Errorf("value %s is less than the minimum %d", value, p.ValidationMin.Int32)
		}
		if p.ValidationMax.Valid && n > float64(p.ValidationMax.Int32) {
			return fmt.Errorf("value %s is more than the maximum %d", value, p.ValidationMax.Int32)
		}
	case "bool":
		if value != "true" && value != "false" {
			return fmt.Errorf("value %q is not true or false", value)
		}
	}
	if p.ValidationRegex != "" && p.Type == "string" {
		re, err := regexp.Compile(p.ValidationRegex)
		if err != nil {
			return fmt.Errorf("invalid validation regex %q: %w", p.ValidationRegex, err)
		}
		if !re.MatchString(value) {
			return fmt.Errorf("value %q does not match %s", value, p.ValidationRegex)
		}
	}
	return nil
}

// insertBuild queues a build of ws: a provisioner job tagged like the
// version's import, the build (state handed over from the previous build)
// and its parameters. An orphan delete completes at once without terraform.
func (api *API) insertBuild(ctx context.Context, q *database.Queries, ws database.Workspace, version database.TemplateVersion, transition database.WorkspaceTransition, initiator uuid.UUID, values []codersdk.WorkspaceBuildParameter, prevBuild *database.WorkspaceBuild, orphan bool) (database.WorkspaceBuild, error) {
	return api.insertBuildWithReason(ctx, q, ws, version, transition, initiator, values, prevBuild, orphan, database.BuildReasonInitiator)
}

// insertBuildWithReason is insertBuild recording why the build runs (the
// lifecycle executor's autostart, autostop, dormancy and autodelete).
func (api *API) insertBuildWithReason(ctx context.Context, q *database.Queries, ws database.Workspace, version database.TemplateVersion, transition database.WorkspaceTransition, initiator uuid.UUID, values []codersdk.WorkspaceBuildParameter, prevBuild *database.WorkspaceBuild, orphan bool, reason database.BuildReason) (database.WorkspaceBuild, error) {
	now := api.now()
	importJob, err := q.GetProvisionerJobByID(ctx, version.JobID)
	if err != nil {
		return database.WorkspaceBuild{}, fmt.Errorf("get import job: %w", err)
	}
	buildID := uuid.New()
	input, _ := json.Marshal(jobInput{WorkspaceBuildID: buildID})
	job, err := q.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
		ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: initiator,
		Provisioner: database.ProvisionerTypeTerraform, StorageMethod: database.ProvisionerStorageMethodFile,
		Type: database.ProvisionerJobTypeWorkspaceBuild, Input: input, FileID: importJob.FileID, Tags: importJob.Tags,
	})
	if err != nil {
		return database.WorkspaceBuild{}, fmt.Errorf("insert job: %w", err)
	}
	number := int32(1)
	var state []byte
	if prevBuild != nil {
		number = prevBuild.BuildNumber + 1
		state = prevBuild.ProvisionerState
	}
	if orphan {
		state = nil
	}
	build, err := q.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{
		ID: buildID, CreatedAt: now, UpdatedAt: now, WorkspaceID: ws.ID, TemplateVersionID: version.ID,
		BuildNumber: number, Transition: transition, InitiatorID: initiator, ProvisionerState: state,
		JobID: job.ID, Reason: reason,
	})
	if err != nil {
		return database.WorkspaceBuild{}, fmt.Errorf("insert build: %w", err)
	}
	for _, v := range values {
		if err := q.InsertWorkspaceBuildParameter(ctx, database.InsertWorkspaceBuildParameterParams{
			WorkspaceBuildID: build.ID, Name: v.Name, Value: v.Value,
		}); err != nil {
			return database.WorkspaceBuild{}, fmt.Errorf("insert build parameter: %w", err)
		}
	}
	if orphan {
		// Nothing to run: the resources are abandoned and the workspace is gone.
		if _, err := q.InsertProvisionerJobLogs(ctx, database.InsertProvisionerJobLogsParams{
			JobID: job.ID, CreatedAt: []time.Time{now}, Source: []string{"provisioner_daemon"}, Level: []string{"warn"},
			Stage: []string{"Orphaning workspace"}, Output: []string{"Deleted without running terraform destroy; its resources (if any) were left behind."},
		}); err != nil {
			return database.WorkspaceBuild{}, fmt.Errorf("log orphan: %w", err)
		}
		if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: job.ID, CompletedAt: now}); err != nil {
			return database.WorkspaceBuild{}, fmt.Errorf("complete orphan job: %w", err)
		}
		if err := q.UpdateWorkspaceDeletedByID(ctx, database.UpdateWorkspaceDeletedByIDParams{ID: ws.ID, Deleted: true, UpdatedAt: now}); err != nil {
			return database.WorkspaceBuild{}, fmt.Errorf("mark workspace deleted: %w", err)
		}
	}
	return build, nil
}

// readableWorkspace returns the workspace of the route when the caller may
// read it; otherwise it answers 404 (the caller may not learn that it
// exists) and returns false.
func (api *API) readableWorkspace(w http.ResponseWriter, r *http.Request) (database.Workspace, bool) {
	ws := httpmw.WorkspaceParam(r)
	if !api.authorize(r, rbac.ActionRead, workspaceObject(ws)) {
		httpapi.ResourceNotFound(w, r)
		return database.Workspace{}, false
	}
	return ws, true
}

// workspace serves GET /api/v2/workspaces/{workspace}.
func (api *API) workspace(w http.ResponseWriter, r *http.Request) {
	api.writeWorkspace(w, r)
}

// workspaceByOwnerAndName serves GET /api/v2/users/{user}/workspace/{workspacename}.
func (api *API) workspaceByOwnerAndName(w http.ResponseWriter, r *http.Request) {
	api.writeWorkspace(w, r)
}

// writeWorkspace answers with the workspace of the route, when readable.
func (api *API) writeWorkspace(w http.ResponseWriter, r *http.Request) {
	ws, ok := api.readableWorkspace(w, r)
	if !ok {
		return
	}
	out, err := api.convertWorkspace(r.Context(), ws)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert workspace.", err)
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

// workspaces lists the workspaces the caller may read, optionally of one
// owner (?owner=me|username; also accepted as ?q=owner:NAME).
func (api *API) workspaces(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	filter, ferrs := parseWorkspaceFilter(r.URL.Query().Get("q"))
	if len(ferrs) > 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Invalid workspace search query.", Validations: ferrs})
		return
	}
	ownerParam := r.URL.Query().Get("owner")
	if ownerParam == "" {
		ownerParam = filter.owner
	}
	ownerID := uuid.Nil
	if ownerParam != "" {
		u, err := httpmw.LookupUser(ctx, api.db, auth.User, ownerParam)
		if err != nil {
			if database.IsNotFound(err) {
				_ = api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceWorkspace})
				httpapi.Write(ctx, w, http.StatusOK, codersdk.WorkspacesResponse{Workspaces: []codersdk.Workspace{}})
				return
			}
			httpapi.InternalServerError(w, r, "Look up owner.", err)
			return
		}
		ownerID = u.ID
	}
	all, err := api.db.GetWorkspaces(ctx, database.GetWorkspacesParams{OwnerID: ownerID})
	if err != nil {
		httpapi.InternalServerError(w, r, "Get workspaces.", err)
		return
	}
	// Always consult the authorizer, even for an empty list.
	_ = api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: auth.User.ID})
	readable := make([]database.Workspace, 0, len(all))
	for _, ws := range all {
		if api.authorize(r, rbac.ActionRead, workspaceObject(ws)) {
			readable = append(readable, ws)
		}
	}
	converted, err := api.convertWorkspaces(ctx, readable)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert workspace.", err)
		return
	}
	list := make([]codersdk.Workspace, 0, len(converted))
	for _, ws := range converted {
		if filter.match(ws) {
			list = append(list, ws)
		}
	}
	sortFavoritesFirst(list, auth.User.ID)
	httpapi.Write(ctx, w, http.StatusOK, codersdk.WorkspacesResponse{Workspaces: list, Count: len(list)})
}
