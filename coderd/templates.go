package coderd

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// validName returns a validation error when name is not a valid resource
// name (codersdk.NameValid, the rule the CLI checks arguments with).
func validName(field, name string) []codersdk.ValidationError {
	if d := codersdk.NameValid(name); d != "" {
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
	errs := validName("name", req.Name)
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
			ActiveVersionID: version.ID, CreatedBy: auth.User.ID, AllowUserCancelWorkspaceJobs: true,
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
	httpapi.Write(ctx, w, http.StatusCreated, api.convertTemplate(ctx, tmpl))
}

func (api *API) convertTemplate(ctx context.Context, t database.Template) codersdk.Template {
	out := codersdk.Template{
		ID: t.ID, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Name: t.Name, DisplayName: t.DisplayName,
		Description: t.Description, Icon: t.Icon, Provisioner: string(t.Provisioner), ActiveVersionID: t.ActiveVersionID,
		CreatedByID: t.CreatedBy, DefaultTTLMillis: t.DefaultTtl / 1e6, AllowUserCancelWorkspaceJobs: t.AllowUserCancelWorkspaceJobs,
	}
	if u, err := api.db.GetUserByID(ctx, t.CreatedBy); err == nil {
		out.CreatedByName = u.Username
	}
	if n, err := api.db.GetWorkspaceCountByTemplateID(ctx, t.ID); err == nil {
		out.ActiveUserCount = int(n)
	}
	return out
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
	out := make([]codersdk.Template, 0, len(ts))
	for _, t := range ts {
		out = append(out, api.convertTemplate(ctx, t))
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// templateFromRequest loads {template} by ID or name and checks read access.
func (api *API) templateFromRequest(w http.ResponseWriter, r *http.Request) (database.Template, bool) {
	ctx := r.Context()
	param := chi.URLParam(r, "template")
	var t database.Template
	var err error
	if id, perr := uuid.Parse(param); perr == nil {
		t, err = api.db.GetTemplateByID(ctx, id)
		if err == nil && t.Deleted {
			err = pgx.ErrNoRows
		}
	} else {
		t, err = api.db.GetTemplateByName(ctx, param)
	}
	if err != nil {
		notFoundOr500(w, r, "template", err)
		return database.Template{}, false
	}
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceTemplate, ID: t.ID.String()}) {
		httpapi.ResourceNotFound(w, r)
		return database.Template{}, false
	}
	return t, true
}

func (api *API) template(w http.ResponseWriter, r *http.Request) {
	t, ok := api.templateFromRequest(w, r)
	if !ok {
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, api.convertTemplate(r.Context(), t))
}

func (api *API) templateVersionsByTemplate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, ok := api.templateFromRequest(w, r)
	if !ok {
		return
	}
	versions, err := api.db.GetTemplateVersionsByTemplateID(ctx, uuid.NullUUID{UUID: t.ID, Valid: true})
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template versions.", err)
		return
	}
	out := make([]codersdk.TemplateVersion, 0, len(versions))
	for _, v := range versions {
		sv, err := api.convertTemplateVersion(ctx, v)
		if err != nil {
			httpapi.InternalServerError(w, r, "Convert template version.", err)
			return
		}
		out = append(out, sv)
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

func (api *API) patchActiveTemplateVersion(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, ok := api.templateFromRequest(w, r)
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
