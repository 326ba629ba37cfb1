package coderd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

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
	if req.TemplateID != uuid.Nil {
		t, err := api.db.GetTemplateByID(ctx, req.TemplateID)
		if err != nil || t.Deleted {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "Template not found.", Validations: []codersdk.ValidationError{{Field: "template_id", Detail: "no such template"}},
			})
			return
		}
		templateID = uuid.NullUUID{UUID: t.ID, Valid: true}
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

func (api *API) convertTemplateVersion(ctx context.Context, v database.TemplateVersion) (codersdk.TemplateVersion, error) {
	job, err := api.db.GetProvisionerJobByID(ctx, v.JobID)
	if err != nil {
		return codersdk.TemplateVersion{}, fmt.Errorf("get job: %w", err)
	}
	sdkJob, err := api.convertJob(ctx, job)
	if err != nil {
		return codersdk.TemplateVersion{}, err
	}
	out := codersdk.TemplateVersion{
		ID: v.ID, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, Name: v.Name, Message: v.Message,
		Job: sdkJob, Readme: v.Readme, CreatedBy: codersdk.MinimalUser{ID: v.CreatedBy},
	}
	if v.TemplateID.Valid {
		id := v.TemplateID.UUID
		out.TemplateID = &id
	}
	if u, err := api.db.GetUserByID(ctx, v.CreatedBy); err == nil {
		out.CreatedBy.Username = u.Username
	}
	return out, nil
}

// templateVersionFromRequest loads {templateversion} and checks read access.
func (api *API) templateVersionFromRequest(w http.ResponseWriter, r *http.Request) (database.TemplateVersion, bool) {
	id, ok := paramUUID(w, r, "templateversion")
	if !ok {
		return database.TemplateVersion{}, false
	}
	v, err := api.db.GetTemplateVersionByID(r.Context(), id)
	if err != nil {
		notFoundOr500(w, r, "template version", err)
		return database.TemplateVersion{}, false
	}
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceTemplate, ID: v.ID.String()}) {
		httpapi.ResourceNotFound(w, r)
		return database.TemplateVersion{}, false
	}
	return v, true
}

func (api *API) templateVersion(w http.ResponseWriter, r *http.Request) {
	v, ok := api.templateVersionFromRequest(w, r)
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
	v, ok := api.templateVersionFromRequest(w, r)
	if !ok {
		return
	}
	api.serveJobLogs(w, r, v.JobID)
}

func (api *API) patchCancelTemplateVersion(w http.ResponseWriter, r *http.Request) {
	v, ok := api.templateVersionFromRequest(w, r)
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
	if st := jobStatus(job); st != codersdk.ProvisionerJobSucceeded {
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
	v, ok := api.templateVersionFromRequest(w, r)
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
		out = append(out, convertParameter(p))
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

func convertParameter(p database.TemplateVersionParameter) codersdk.TemplateVersionParameter {
	out := codersdk.TemplateVersionParameter{
		Name: p.Name, DisplayName: p.DisplayName, Description: p.Description, Type: p.Type, FormType: p.FormType,
		Mutable: p.Mutable, DefaultValue: p.DefaultValue, Icon: p.Icon, ValidationError: p.ValidationError,
		ValidationRegex: p.ValidationRegex, ValidationMonotonic: p.ValidationMonotonic, Required: p.Required,
		Ephemeral: p.Ephemeral, Options: []codersdk.TemplateVersionParameterOption{},
	}
	_ = json.Unmarshal(p.Options, &out.Options)
	if p.ValidationMin.Valid {
		v := p.ValidationMin.Int32
		out.ValidationMin = &v
	}
	if p.ValidationMax.Valid {
		v := p.ValidationMax.Int32
		out.ValidationMax = &v
	}
	return out
}

func (api *API) templateVersionResources(w http.ResponseWriter, r *http.Request) {
	v, ok := api.templateVersionFromRequest(w, r)
	if !ok {
		return
	}
	out, err := api.jobResources(r, v.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get resources.", err)
		return
	}
	httpapi.Write(r.Context(), w, http.StatusOK, out)
}

// jobResources returns the resources a job stored, with metadata and agents.
func (api *API) jobResources(r *http.Request, jobID uuid.UUID) ([]codersdk.WorkspaceResource, error) {
	ctx := r.Context()
	resources, err := api.db.GetWorkspaceResourcesByJobID(ctx, jobID)
	if err != nil {
		return nil, fmt.Errorf("get resources: %w", err)
	}
	ids := make([]uuid.UUID, 0, len(resources))
	for _, res := range resources {
		ids = append(ids, res.ID)
	}
	mds, err := api.db.GetWorkspaceResourceMetadataByResourceIDs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get resource metadata: %w", err)
	}
	agents, err := api.db.GetWorkspaceAgentsByResourceIDs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get agents: %w", err)
	}
	out := make([]codersdk.WorkspaceResource, 0, len(resources))
	for _, res := range resources {
		sr := codersdk.WorkspaceResource{
			ID: res.ID, CreatedAt: res.CreatedAt, JobID: res.JobID, Transition: codersdk.WorkspaceTransition(res.Transition),
			Type: res.Type, Name: res.Name, Hide: res.Hide, Icon: res.Icon, DailyCost: res.DailyCost,
		}
		for _, md := range mds {
			if md.WorkspaceResourceID == res.ID {
				value := md.Value.String
				if md.Sensitive {
					value = ""
				}
				sr.Metadata = append(sr.Metadata, codersdk.WorkspaceResourceMetadata{Key: md.Key, Value: value, Sensitive: md.Sensitive})
			}
		}
		for _, a := range agents {
			if a.ResourceID != res.ID {
				continue
			}
			sa, err := api.convertWorkspaceAgent(r, a)
			if err != nil {
				return nil, fmt.Errorf("convert agent: %w", err)
			}
			sr.Agents = append(sr.Agents, sa)
		}
		out = append(out, sr)
	}
	return out, nil
}
