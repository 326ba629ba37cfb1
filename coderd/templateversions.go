package coderd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// postTemplateVersion uploads a template version and queues its import job
// (POST /api/v2/templateversions; Coder nests this under an organization,
// this deployment has none).
func (api *API) postTemplateVersion(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	auth, _ := httpmw.AuthorizationFromContext(ctx)
	if !api.authorize(r, rbac.ActionCreate, rbac.Object{Type: rbac.ResourceTemplate}) {
		httpapi.Forbidden(w, r)
		return
	}
	var req codersdk.CreateTemplateVersionRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	var errs []codersdk.ValidationError
	if req.StorageMethod != "" && req.StorageMethod != string(database.ProvisionerStorageMethodFile) {
		errs = append(errs, codersdk.ValidationError{Field: "storage_method", Detail: `must be "file"`})
	}
	if req.Provisioner != "" && req.Provisioner != string(database.ProvisionerTypeTerraform) {
		errs = append(errs, codersdk.ValidationError{Field: "provisioner", Detail: `must be "terraform"`})
	}
	if req.FileID == uuid.Nil {
		errs = append(errs, codersdk.ValidationError{Field: "file_id", Detail: "is required"})
	}
	if len(req.Name) > 64 {
		errs = append(errs, codersdk.ValidationError{Field: "name", Detail: "must be at most 64 characters"})
	}
	errs = append(errs, checkVariableValues(req.UserVariableValues)...)
	if len(errs) > 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Validation failed.", Validations: errs})
		return
	}
	file, err := api.db.GetFileByID(ctx, req.FileID)
	if err != nil {
		if database.IsNotFound(err) {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "File not found.", Validations: []codersdk.ValidationError{{Field: "file_id", Detail: "no such file"}},
			})
			return
		}
		httpapi.InternalServerError(w, r, "Get file.", err)
		return
	}
	var templateID uuid.NullUUID
	var inherited []codersdk.VariableValue
	if req.TemplateID != uuid.Nil {
		t, err := api.db.GetTemplateByID(ctx, req.TemplateID)
		if err != nil || t.Deleted {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "Template not found.", Validations: []codersdk.ValidationError{{Field: "template_id", Detail: "no such template"}},
			})
			return
		}
		templateID = uuid.NullUUID{UUID: t.ID, Valid: true}
		// Variables the push gives no value for keep the active version's
		// (sensitive ones included: they never leave the server).
		if inherited, err = api.inheritedVariableValues(ctx, t.ActiveVersionID, req.UserVariableValues); err != nil {
			httpapi.InternalServerError(w, r, "Get the active version's variables.", err)
			return
		}
	}
	tags := map[string]string{}
	for k, v := range req.ProvisionerTags {
		tags[k] = v
	}
	if tags["scope"] == "" {
		tags["scope"] = "organization"
	}
	rawTags, err := json.Marshal(tags)
	if err != nil {
		httpapi.InternalServerError(w, r, "Encode tags.", err)
		return
	}
	name := req.Name
	if name == "" {
		name = namesgenerate()
	}
	now := api.now()
	versionID := uuid.New()
	input, _ := json.Marshal(jobInput{TemplateVersionID: versionID})
	var version database.TemplateVersion
	err = api.db.InTx(ctx, func(q *database.Queries) error {
		job, err := q.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: auth.User.ID,
			Provisioner: database.ProvisionerTypeTerraform, StorageMethod: database.ProvisionerStorageMethodFile,
			Type: database.ProvisionerJobTypeTemplateVersionImport, Input: input, FileID: file.ID, Tags: rawTags,
		})
		if err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		version, err = q.InsertTemplateVersion(ctx, database.InsertTemplateVersionParams{
			ID: versionID, TemplateID: templateID, CreatedAt: now, UpdatedAt: now, Name: name,
			Message: req.Message, JobID: job.ID, CreatedBy: auth.User.ID,
		})
		if err != nil {
			return fmt.Errorf("insert template version: %w", err)
		}
		for i, v := range append(req.UserVariableValues, inherited...) {
			if err := q.InsertTemplateVersionVariableValue(ctx, database.InsertTemplateVersionVariableValueParams{
				TemplateVersionID: version.ID, Name: v.Name, Value: v.Value, Inherited: i >= len(req.UserVariableValues),
			}); err != nil {
				return fmt.Errorf("store variable value %q: %w", v.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		if database.IsUniqueViolation(err) {
			httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{
				Message:     fmt.Sprintf("Template version %q already exists.", name),
				Validations: []codersdk.ValidationError{{Field: "name", Detail: "this value is already in use"}},
			})
			return
		}
		httpapi.InternalServerError(w, r, "Create template version.", err)
		return
	}
	api.prov.notifyJobs()
	out, err := api.convertTemplateVersion(ctx, version)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert template version.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusCreated, out)
}

// namesgenerate returns a random version name.
func namesgenerate() string {
	return strings.Split(uuid.NewString(), "-")[0]
}

// readableTemplateVersion returns the {templateversion} of the route when
// the caller may read it; otherwise it answers 404 and returns false.
func (api *API) readableTemplateVersion(w http.ResponseWriter, r *http.Request) (database.TemplateVersion, bool) {
	v := httpmw.TemplateVersionParam(r)
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceTemplate, ID: v.ID.String()}) {
		httpapi.ResourceNotFound(w, r)
		return database.TemplateVersion{}, false
	}
	return v, true
}

func (api *API) templateVersion(w http.ResponseWriter, r *http.Request) {
	v, ok := api.readableTemplateVersion(w, r)
	if !ok {
		return
	}
	out, err := api.convertTemplateVersion(r.Context(), v)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert template version.", err)
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) templateVersionLogs(w http.ResponseWriter, r *http.Request) {
	v, ok := api.readableTemplateVersion(w, r)
	if !ok {
		return
	}
	api.serveJobLogs(w, r, v.JobID)
}

func (api *API) patchCancelTemplateVersion(w http.ResponseWriter, r *http.Request) {
	v, ok := api.readableTemplateVersion(w, r)
	if !ok {
		return
	}
	if !api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceTemplate, ID: v.ID.String()}) {
		httpapi.Forbidden(w, r)
		return
	}
	job, err := api.db.GetProvisionerJobByID(r.Context(), v.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get job.", err)
		return
	}
	api.cancelJob(w, r, job)
}

// importSucceeded answers 400 unless the version's import job succeeded.
func (api *API) importSucceeded(ctx context.Context, w http.ResponseWriter, r *http.Request, v database.TemplateVersion, field string) bool {
	job, err := api.db.GetProvisionerJobByID(ctx, v.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get import job.", err)
		return false
	}
	if st := convert.JobStatus(job); st != codersdk.ProvisionerJobSucceeded {
		detail := fmt.Sprintf("the template version's import job is %s", st)
		if job.Error.Valid {
			detail += ": " + job.Error.String
		}
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "The template version is not imported successfully.", Detail: detail,
			Validations: []codersdk.ValidationError{{Field: field, Detail: detail}},
		})
		return false
	}
	return true
}

func (api *API) templateVersionRichParameters(w http.ResponseWriter, r *http.Request) {
	v, ok := api.readableTemplateVersion(w, r)
	if !ok {
		return
	}
	if !api.importSucceeded(r.Context(), w, r, v, "template_version_id") {
		return
	}
	params, err := api.db.GetTemplateVersionParameters(r.Context(), v.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get parameters.", err)
		return
	}
	out := make([]codersdk.TemplateVersionParameter, 0, len(params))
	for _, p := range params {
		out = append(out, convert.TemplateVersionParameter(p))
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func (api *API) templateVersionResources(w http.ResponseWriter, r *http.Request) {
	v, ok := api.readableTemplateVersion(w, r)
	if !ok {
		return
	}
	resources, err := api.fetchResources(r.Context(), []uuid.UUID{v.JobID}, nil)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get resources.", err)
		return
	}
	out := resources[v.JobID]
	if out == nil {
		out = []codersdk.WorkspaceResource{}
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}
