package coderd

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// This file holds template management beyond creation: deleting templates,
// archiving versions, and the Terraform variables of a version.

// deleteTemplate serves DELETE /api/v2/templates/{template}. It is refused
// while any workspace that is not deleted uses the template: those
// workspaces' builds need its versions.
func (api *API) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, ok := api.readableTemplate(w, r)
	if !ok {
		return
	}
	if !api.authorize(r, rbac.ActionDelete, rbac.Object{Type: rbac.ResourceTemplate, ID: t.ID.String()}) {
		httpapi.Forbidden(w, r)
		return
	}
	var refused int64
	err := api.db.InTx(ctx, func(q *database.Queries) error {
		// Lock the template row: a workspace created concurrently
		// references it and waits, or sees it deleted.
		if _, err := q.GetTemplateByIDForUpdate(ctx, t.ID); err != nil {
			return fmt.Errorf("lock template: %w", err)
		}
		n, err := q.CountWorkspacesUsingTemplate(ctx, t.ID)
		if err != nil {
			return fmt.Errorf("count workspaces: %w", err)
		}
		if n > 0 {
			refused = n
			return nil
		}
		return q.UpdateTemplateDeletedByID(ctx, database.UpdateTemplateDeletedByIDParams{ID: t.ID, Deleted: true, UpdatedAt: api.now()})
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Delete template.", err)
		return
	}
	if refused > 0 {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
			Message: fmt.Sprintf("Template %q is used by %d workspace(s) and cannot be deleted.", t.Name, refused),
			Detail:  "Delete those workspaces first (coder list --all shows them).",
		})
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: fmt.Sprintf("Template %q deleted.", t.Name)})
}

// postArchiveTemplateVersion serves POST /api/v2/templateversions/{templateversion}/archive.
func (api *API) postArchiveTemplateVersion(w http.ResponseWriter, r *http.Request) {
	api.setTemplateVersionArchived(w, r, true)
}

// postUnarchiveTemplateVersion serves POST /api/v2/templateversions/{templateversion}/unarchive.
func (api *API) postUnarchiveTemplateVersion(w http.ResponseWriter, r *http.Request) {
	api.setTemplateVersionArchived(w, r, false)
}

// setTemplateVersionArchived archives or unarchives a version of a
// template. The active version cannot be archived, nor one whose import is
// still running.
func (api *API) setTemplateVersionArchived(w http.ResponseWriter, r *http.Request, archived bool) {
	ctx := r.Context()
	v, ok := api.readableTemplateVersion(w, r)
	if !ok {
		return
	}
	if !api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceTemplate, ID: v.ID.String()}) {
		httpapi.Forbidden(w, r)
		return
	}
	if !v.TemplateID.Valid {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "The template version belongs to no template."})
		return
	}
	if archived {
		t, err := api.db.GetTemplateByID(ctx, v.TemplateID.UUID)
		if err != nil {
			httpapi.InternalServerError(w, r, "Get template.", err)
			return
		}
		if t.ActiveVersionID == v.ID {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: fmt.Sprintf("Template version %q is the active version of template %q and cannot be archived.", v.Name, t.Name),
				Detail:  "Promote another version first: coder templates versions promote " + t.Name + " --template-version OTHER",
			})
			return
		}
		job, err := api.db.GetProvisionerJobByID(ctx, v.JobID)
		if err != nil {
			httpapi.InternalServerError(w, r, "Get import job.", err)
			return
		}
		if !job.CompletedAt.Valid {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "The template version is still being imported; cancel the import or wait for it."})
			return
		}
	}
	if v.Archived == archived {
		state := "archived"
		if !archived {
			state = "not archived"
		}
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: fmt.Sprintf("Template version %q is already %s.", v.Name, state)})
		return
	}
	if err := api.db.UpdateTemplateVersionArchivedByID(ctx, database.UpdateTemplateVersionArchivedByIDParams{
		ID: v.ID, Archived: archived, UpdatedAt: api.now(),
	}); err != nil {
		httpapi.InternalServerError(w, r, "Update template version.", err)
		return
	}
	verb := "archived"
	if !archived {
		verb = "unarchived"
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: fmt.Sprintf("Template version %q %s.", v.Name, verb)})
}

// templateVersionVariables serves GET
// /api/v2/templateversions/{templateversion}/variables: the Terraform
// variable blocks its import found, with the values given at push. A
// sensitive variable's value and default are never returned.
func (api *API) templateVersionVariables(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v, ok := api.readableTemplateVersion(w, r)
	if !ok {
		return
	}
	rows, err := api.db.GetTemplateVersionVariables(ctx, v.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template variables.", err)
		return
	}
	out := make([]codersdk.TemplateVersionVariable, 0, len(rows))
	for _, row := range rows {
		if !row.Declared {
			// A value given at push whose import has not finished (or
			// failed): nothing is known about it yet.
			continue
		}
		tv := codersdk.TemplateVersionVariable{
			Name: row.Name, Description: row.Description, Type: row.Type, Required: row.Required, Sensitive: row.Sensitive,
		}
		if !row.Sensitive {
			tv.Value, tv.DefaultValue = row.Value, row.DefaultValue
			if !row.HasValue {
				tv.Value = row.DefaultValue
			}
		}
		out = append(out, tv)
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// checkVariableValues validates the variable values of a template version
// request: names present and distinct.
func checkVariableValues(vals []codersdk.VariableValue) []codersdk.ValidationError {
	var errs []codersdk.ValidationError
	seen := map[string]bool{}
	for _, v := range vals {
		switch {
		case v.Name == "":
			errs = append(errs, codersdk.ValidationError{Field: "user_variable_values", Detail: "a variable value has no name"})
		case seen[v.Name]:
			errs = append(errs, codersdk.ValidationError{Field: "user_variable_values", Detail: fmt.Sprintf("variable %q is given twice", v.Name)})
		case len(v.Value) > 1<<20:
			errs = append(errs, codersdk.ValidationError{Field: "user_variable_values", Detail: fmt.Sprintf("variable %q: value is longer than 1 MiB", v.Name)})
		}
		seen[v.Name] = true
	}
	return errs
}

// errTemplateDeleted aborts creating a workspace whose template was deleted
// concurrently.
var errTemplateDeleted = errors.New("template deleted")

// versionAllowed answers 400 and returns false when a request names an
// archived version for a new workspace or build.
func (api *API) versionAllowed(w http.ResponseWriter, r *http.Request, tmpl database.Template, v database.TemplateVersion) bool {
	if !v.Archived {
		return true
	}
	httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{
		Message:     fmt.Sprintf("Template version %q is archived.", v.Name),
		Detail:      "Use another version, or unarchive it: coder templates versions unarchive " + tmpl.Name + " " + v.Name,
		Validations: []codersdk.ValidationError{{Field: "template_version_id", Detail: "the version is archived"}},
	})
	return false
}

// buildVersionID returns the template version a build of a workspace uses:
// the requested one, else the previous build's; a start of a workspace
// whose template requires the active version uses the active version, and
// only template admins may name another one.
func (api *API) buildVersionID(w http.ResponseWriter, r *http.Request, tmpl database.Template, transition database.WorkspaceTransition, prev, requested uuid.UUID) (uuid.UUID, bool) {
	if transition == database.WorkspaceTransitionStart && tmpl.RequireActiveVersion {
		if requested != uuid.Nil && requested != tmpl.ActiveVersionID && !api.templateAdmin(r, tmpl.ID) {
			httpapi.Write(r.Context(), w, http.StatusForbidden, codersdk.Response{
				Message: fmt.Sprintf("Template %q requires its active version: workspaces start only with it.", tmpl.Name),
				Detail:  "Start without naming a version (or update the workspace: coder update) to use the active version.",
			})
			return uuid.Nil, false
		}
		if requested == uuid.Nil {
			return tmpl.ActiveVersionID, true
		}
	}
	if requested != uuid.Nil {
		return requested, true
	}
	return prev, true
}

// inheritedVariableValues returns the values of the given version's
// declared variables that were set at its push and that given does not
// name: a new version of a template starts from the active version's values.
func (api *API) inheritedVariableValues(ctx context.Context, versionID uuid.UUID, given []codersdk.VariableValue) ([]codersdk.VariableValue, error) {
	rows, err := api.db.GetTemplateVersionVariables(ctx, versionID)
	if err != nil {
		return nil, fmt.Errorf("get template variables: %w", err)
	}
	named := map[string]bool{}
	for _, v := range given {
		named[v.Name] = true
	}
	var out []codersdk.VariableValue
	for _, row := range rows {
		if row.Declared && row.HasValue && !named[row.Name] {
			out = append(out, codersdk.VariableValue{Name: row.Name, Value: row.Value})
		}
	}
	return out, nil
}
