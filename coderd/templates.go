package coderd

import (
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// nameErrors returns the validation error of a template or workspace name
// in field, if any.
func nameErrors(field, name string) []codersdk.ValidationError {
	if d := httpapi.NameValid(name); d != "" {
		return []codersdk.ValidationError{{Field: field, Detail: d}}
	}
	return nil
}

func (api *API) postTemplate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	if !api.authorize(r, rbac.ActionCreate, rbac.Object{Type: rbac.ResourceTemplate}) {
		httpapi.Forbidden(w, r)
		return
	}
	var req codersdk.CreateTemplateRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	errs := nameErrors("name", req.Name)
	if req.VersionID == uuid.Nil {
		errs = append(errs, codersdk.ValidationError{Field: "template_version_id", Detail: "is required"})
	}
	if len(errs) > 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Validation failed.", Validations: errs})
		return
	}
	version, err := api.db.GetTemplateVersionByID(ctx, req.VersionID)
	if err != nil {
		if database.IsNotFound(err) {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "Template version not found.", Validations: []codersdk.ValidationError{{Field: "template_version_id", Detail: "no such template version"}},
			})
			return
		}
		httpapi.InternalServerError(w, r, "Get template version.", err)
		return
	}
	if version.TemplateID.Valid {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     "The template version already belongs to a template.",
			Validations: []codersdk.ValidationError{{Field: "template_version_id", Detail: "already belongs to a template"}},
		})
		return
	}
	if !api.importSucceeded(ctx, w, r, version, "template_version_id") {
		return
	}
	now := api.now()
	var tmpl database.Template
	err = api.db.InTx(ctx, func(q *database.Queries) error {
		var err error
		tmpl, err = q.InsertTemplate(ctx, database.InsertTemplateParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: req.Name, DisplayName: req.DisplayName,
			Description: req.Description, Icon: req.Icon, Provisioner: database.ProvisionerTypeTerraform,
			ActiveVersionID: version.ID, CreatedBy: auth.User.ID,
			AllowUserCancelWorkspaceJobs: req.AllowUserCancelWorkspaceJobs == nil || *req.AllowUserCancelWorkspaceJobs,
		})
		if err != nil {
			return err
		}
		return q.UpdateTemplateVersionTemplateID(ctx, database.UpdateTemplateVersionTemplateIDParams{
			ID: version.ID, TemplateID: uuid.NullUUID{UUID: tmpl.ID, Valid: true}, UpdatedAt: now,
		})
	})
	if err != nil {
		if database.IsUniqueViolation(err) {
			httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
				Message:     fmt.Sprintf("Template with name %q already exists.", req.Name),
				Validations: []codersdk.ValidationError{{Field: "name", Detail: "this value is already in use"}},
			})
			return
		}
		httpapi.InternalServerError(w, r, "Create template.", err)
		return
	}
	out, err := api.convertTemplate(ctx, tmpl)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert template.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, out)
}

func (api *API) templates(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceTemplate}) {
		httpapi.Forbidden(w, r)
		return
	}
	ts, err := api.db.GetTemplates(ctx)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get templates.", err)
		return
	}
	out, err := api.convertTemplates(ctx, ts)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert templates.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// readableTemplate returns the {template} of the route when the caller may
// read it; otherwise it answers 404 and returns false.
func (api *API) readableTemplate(w http.ResponseWriter, r *http.Request) (database.Template, bool) {
	t := httpmw.TemplateParam(r)
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceTemplate, ID: t.ID.String()}) {
		httpapi.ResourceNotFound(w, r)
		return database.Template{}, false
	}
	return t, true
}

func (api *API) template(w http.ResponseWriter, r *http.Request) {
	t, ok := api.readableTemplate(w, r)
	if !ok {
		return
	}
	out, err := api.convertTemplate(r.Context(), t)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert template.", err)
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) templateVersionsByTemplate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, ok := api.readableTemplate(w, r)
	if !ok {
		return
	}
	all, err := api.db.GetTemplateVersionsByTemplateID(ctx, uuid.NullUUID{UUID: t.ID, Valid: true})
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template versions.", err)
		return
	}
	// Archived versions are listed only on request (?include_archived=true).
	includeArchived := r.URL.Query().Get("include_archived") == "true"
	versions := make([]database.TemplateVersion, 0, len(all))
	for _, v := range all {
		if includeArchived || !v.Archived {
			versions = append(versions, v)
		}
	}
	out, err := api.convertTemplateVersions(ctx, versions)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert template version.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// patchTemplateMeta serves PATCH /api/v2/templates/{template}: template
// admins change its display settings, allow_user_cancel_workspace_jobs,
// require_active_version and its schedule settings
// (codersdk.TemplateScheduleFields, lifecycle.go). Every field is validated
// before any is stored, and all are stored in one transaction.
func (api *API) patchTemplateMeta(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, ok := api.readableTemplate(w, r)
	if !ok {
		return
	}
	if !api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceTemplate, ID: t.ID.String()}) {
		httpapi.Forbidden(w, r)
		return
	}
	var req codersdk.UpdateTemplateMeta
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	p := database.UpdateTemplateMetaByIDParams{
		ID: t.ID, DisplayName: t.DisplayName, Description: t.Description, Icon: t.Icon,
		DefaultTtl: t.DefaultTtl, AllowUserCancelWorkspaceJobs: t.AllowUserCancelWorkspaceJobs, UpdatedAt: api.now(),
	}
	if req.DisplayName != nil {
		p.DisplayName = *req.DisplayName
	}
	if req.Description != nil {
		p.Description = *req.Description
	}
	if req.Icon != nil {
		p.Icon = *req.Icon
	}
	if req.AllowUserCancelWorkspaceJobs != nil {
		p.AllowUserCancelWorkspaceJobs = *req.AllowUserCancelWorkspaceJobs
	}
	requireActive := t.RequireActiveVersion
	if req.RequireActiveVersion != nil {
		requireActive = *req.RequireActiveVersion
	}
	// Validate every field before writing any: a bad schedule field must
	// not leave the display settings changed.
	var vs []codersdk.ValidationError
	if n := utf8.RuneCountInString(p.DisplayName); n > 64 {
		vs = append(vs, codersdk.ValidationError{Field: "display_name", Detail: "must be at most 64 characters"})
	}
	if n := utf8.RuneCountInString(p.Description); n > 128 {
		vs = append(vs, codersdk.ValidationError{Field: "description", Detail: "must be at most 128 characters"})
	}
	if n := utf8.RuneCountInString(p.Icon); n > 256 {
		vs = append(vs, codersdk.ValidationError{Field: "icon", Detail: "must be at most 256 characters"})
	}
	sched, schedErrs, err := api.validateTemplateSchedule(ctx, t.ID, req.TemplateScheduleFields)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template schedule.", err)
		return
	}
	if vs = append(vs, schedErrs...); len(vs) > 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Invalid template settings.", Validations: vs})
		return
	}
	err = api.db.InTx(ctx, func(q *database.Queries) error {
		if _, err := q.UpdateTemplateMetaByID(ctx, p); err != nil {
			return fmt.Errorf("update template: %w", err)
		}
		if err := q.UpdateTemplateRequireActiveVersionByID(ctx, database.UpdateTemplateRequireActiveVersionByIDParams{
			ID: t.ID, RequireActiveVersion: requireActive, UpdatedAt: p.UpdatedAt,
		}); err != nil {
			return fmt.Errorf("update require_active_version: %w", err)
		}
		// After the meta row: the schedule includes the default TTL,
		// which the meta update writes back unchanged.
		return storeTemplateSchedule(ctx, q, t.ID, sched, p.UpdatedAt)
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Update template.", err)
		return
	}
	updated, err := api.db.GetTemplateByID(ctx, t.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template.", err)
		return
	}
	out, err := api.convertTemplate(ctx, updated)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert template.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

func (api *API) patchActiveTemplateVersion(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, ok := api.readableTemplate(w, r)
	if !ok {
		return
	}
	if !api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceTemplate, ID: t.ID.String()}) {
		httpapi.Forbidden(w, r)
		return
	}
	var req codersdk.UpdateActiveTemplateVersion
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	v, err := api.db.GetTemplateVersionByID(ctx, req.ID)
	if err != nil || !v.TemplateID.Valid || v.TemplateID.UUID != t.ID {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Template version not found for this template.", Validations: []codersdk.ValidationError{{Field: "id", Detail: "not a version of this template"}},
		})
		return
	}
	if v.Archived {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     fmt.Sprintf("Template version %q is archived.", v.Name),
			Detail:      "Unarchive it first: coder templates versions unarchive " + t.Name + " " + v.Name,
			Validations: []codersdk.ValidationError{{Field: "id", Detail: "the version is archived"}},
		})
		return
	}
	if !api.importSucceeded(ctx, w, r, v, "id") {
		return
	}
	if err := api.db.UpdateTemplateActiveVersionByID(ctx, database.UpdateTemplateActiveVersionByIDParams{
		ID: t.ID, ActiveVersionID: v.ID, UpdatedAt: api.now(),
	}); err != nil {
		httpapi.InternalServerError(w, r, "Update active version.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Updated the active template version."})
}
