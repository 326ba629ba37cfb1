package provisionerdserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/database"
)

// daemonTags returns the effective tags of a daemon: scope=organization unless set.
func daemonTags(tags map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range tags {
		out[k] = v
	}
	if out["scope"] == "" {
		out["scope"] = "organization"
	}
	return out
}

func (s *Server) postRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req provisionersdk.RegisterRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Name) == "" || len(req.Name) > 64 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message: "Validation failed.", Validations: []codersdk.ValidationError{{Field: "name", Detail: "is required (at most 64 characters)"}},
		})
		return
	}
	tags := daemonTags(req.Tags)
	rawTags, err := json.Marshal(tags)
	if err != nil {
		httpapi.InternalServerError(w, r, "Encode tags.", err)
		return
	}
	now := s.now()
	version := req.TerraformVersion
	if req.TerraformFlavor != "" {
		version = req.TerraformFlavor + " " + req.TerraformVersion
	}
	provisioners := req.Provisioners
	if len(provisioners) == 0 {
		provisioners = []string{string(database.ProvisionerTypeTerraform)}
	}
	d, err := s.db.UpsertProvisionerDaemon(ctx, database.UpsertProvisionerDaemonParams{
		ID: uuid.New(), CreatedAt: now, Name: req.Name, Provisioners: provisioners, Tags: rawTags,
		Version: req.Version, TerraformVersion: version, LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Register provisioner daemon.", err)
		return
	}
	s.logger.Info("provisioner daemon registered", "daemon_id", d.ID, "name", d.Name, "tags", tags, "terraform", version)
	interval := s.opts.HeartbeatTimeout / 6
	if interval <= 0 {
		interval = time.Second
	}
	httpapi.Write(ctx, w, http.StatusOK, provisionersdk.RegisterResponse{
		ID: d.ID, Tags: tags, HeartbeatIntervalMillis: interval.Milliseconds(),
	})
}

// daemonFromRequest loads the {daemon} path parameter.
func (s *Server) daemonFromRequest(w http.ResponseWriter, r *http.Request) (database.ProvisionerDaemon, bool) {
	id, err := uuid.Parse(chi.URLParam(r, "daemon"))
	if err != nil {
		httpapi.ResourceNotFound(w, r)
		return database.ProvisionerDaemon{}, false
	}
	d, err := s.db.GetProvisionerDaemonByID(r.Context(), id)
	if err != nil {
		if database.IsNotFound(err) {
			httpapi.ResourceNotFound(w, r)
		} else {
			httpapi.InternalServerError(w, r, "Get provisioner daemon.", err)
		}
		return database.ProvisionerDaemon{}, false
	}
	return d, true
}

func (s *Server) postAcquire(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d, ok := s.daemonFromRequest(w, r)
	if !ok {
		return
	}
	deadline := time.NewTimer(s.opts.AcquireWait)
	defer deadline.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		signal := s.wait()
		now := s.now()
		if err := s.db.UpdateProvisionerDaemonLastSeenAt(ctx, database.UpdateProvisionerDaemonLastSeenAtParams{
			ID: d.ID, LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
		}); err != nil && ctx.Err() == nil {
			httpapi.InternalServerError(w, r, "Update provisioner daemon.", err)
			return
		}
		job, err := s.db.AcquireProvisionerJob(ctx, database.AcquireProvisionerJobParams{
			StartedAt: pgtype.Timestamptz{Time: now, Valid: true},
			WorkerID:  uuid.NullUUID{UUID: d.ID, Valid: true},
			Types:     d.Provisioners,
			Tags:      d.Tags,
		})
		if err == nil {
			acquired, err := s.acquiredJob(ctx, job)
			if err != nil {
				s.logger.Error("prepare acquired job", "job_id", job.ID, "error", err)
				// The job cannot run; fail it rather than leave it running.
				_, _ = s.db.UpdateProvisionerJobWithCompleteByID(context.WithoutCancel(ctx), database.UpdateProvisionerJobWithCompleteByIDParams{
					ID: job.ID, CompletedAt: s.now(),
					Error: pgtype.Text{String: "prepare job: " + err.Error(), Valid: true},
				})
				httpapi.InternalServerError(w, r, "Prepare acquired job.", err)
				return
			}
			s.logger.Info("provisioner job acquired", "job_id", job.ID, "daemon", d.Name, "type", job.Type)
			httpapi.Write(ctx, w, http.StatusOK, acquired)
			return
		}
		if !database.IsNotFound(err) {
			if ctx.Err() != nil {
				return
			}
			httpapi.InternalServerError(w, r, "Acquire provisioner job.", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-signal:
		case <-poll.C:
		}
	}
}

// acquiredJob builds what a daemon needs to run job.
func (s *Server) acquiredJob(ctx context.Context, job database.ProvisionerJob) (*provisionersdk.AcquiredJob, error) {
	var input JobInput
	if err := json.Unmarshal(job.Input, &input); err != nil {
		return nil, fmt.Errorf("decode job input: %w", err)
	}
	file, err := s.db.GetFileByID(ctx, job.FileID)
	if err != nil {
		return nil, fmt.Errorf("get template file: %w", err)
	}
	tags := map[string]string{}
	_ = json.Unmarshal(job.Tags, &tags)
	out := &provisionersdk.AcquiredJob{
		JobID: job.ID, Type: codersdk.ProvisionerJobType(job.Type), TemplateSourceArchive: file.Data, Tags: tags,
	}
	accessURL := s.opts.AccessURL.String()
	switch job.Type {
	case database.ProvisionerJobTypeTemplateVersionImport:
		initiator, err := s.db.GetUserByID(ctx, job.InitiatorID)
		if err != nil {
			return nil, fmt.Errorf("get initiator: %w", err)
		}
		if out.VariableValues, out.InheritedVariableValues, err = s.variableValues(ctx, input.TemplateVersionID, false); err != nil {
			return nil, err
		}
		out.TemplateImport = &provisionersdk.AcquiredJobTemplateImport{
			TemplateVersionID: input.TemplateVersionID,
			Metadata: provisionersdk.Metadata{
				CoderURL: accessURL, WorkspaceTransition: codersdk.WorkspaceTransitionStart,
				WorkspaceOwner: initiator.Username, WorkspaceOwnerEmail: initiator.Email,
				WorkspaceOwnerName: initiator.Name, WorkspaceOwnerID: initiator.ID.String(),
			},
		}
	case database.ProvisionerJobTypeWorkspaceBuild:
		build, err := s.db.GetWorkspaceBuildByID(ctx, input.WorkspaceBuildID)
		if err != nil {
			return nil, fmt.Errorf("get workspace build: %w", err)
		}
		ws, err := s.db.GetWorkspaceByID(ctx, build.WorkspaceID)
		if err != nil {
			return nil, fmt.Errorf("get workspace: %w", err)
		}
		owner, err := s.db.GetUserByID(ctx, ws.OwnerID)
		if err != nil {
			return nil, fmt.Errorf("get owner: %w", err)
		}
		tmpl, err := s.db.GetTemplateByID(ctx, ws.TemplateID)
		if err != nil {
			return nil, fmt.Errorf("get template: %w", err)
		}
		version, err := s.db.GetTemplateVersionByID(ctx, build.TemplateVersionID)
		if err != nil {
			return nil, fmt.Errorf("get template version: %w", err)
		}
		params, err := s.db.GetWorkspaceBuildParameters(ctx, build.ID)
		if err != nil {
			return nil, fmt.Errorf("get build parameters: %w", err)
		}
		state, err := s.openState(build.ProvisionerState, ws.ID)
		if err != nil {
			return nil, fmt.Errorf("workspace %s build %d: %w", ws.Name, build.BuildNumber, err)
		}
		if out.VariableValues, _, err = s.variableValues(ctx, version.ID, true); err != nil {
			return nil, err
		}
		for _, p := range params {
			out.ParameterValues = append(out.ParameterValues, codersdk.WorkspaceBuildParameter{Name: p.Name, Value: p.Value})
		}
		out.WorkspaceBuild = &provisionersdk.AcquiredJobWorkspaceBuild{
			WorkspaceBuildID: build.ID,
			Transition:       codersdk.WorkspaceTransition(build.Transition),
			State:            state,
			Metadata: provisionersdk.Metadata{
				CoderURL: accessURL, WorkspaceTransition: codersdk.WorkspaceTransition(build.Transition),
				WorkspaceName: ws.Name, WorkspaceOwner: owner.Username, WorkspaceOwnerEmail: owner.Email,
				WorkspaceOwnerName: owner.Name, WorkspaceOwnerID: owner.ID.String(),
				WorkspaceOwnerLoginType: string(owner.LoginType),
				WorkspaceID:             ws.ID.String(), WorkspaceBuildID: build.ID.String(),
				TemplateID: tmpl.ID.String(), TemplateName: tmpl.Name, TemplateVersion: version.Name,
			},
		}
	default:
		return nil, fmt.Errorf("unsupported job type %q", job.Type)
	}
	return out, nil
}

// variableValues returns the Terraform variable values of a template
// version: those given at its push and those it kept from the active
// version then (inherited). After the import (declaredOnly) only the
// variables the template declares count, all as given.
func (s *Server) variableValues(ctx context.Context, versionID uuid.UUID, declaredOnly bool) (given, inherited []codersdk.VariableValue, err error) {
	rows, err := s.db.GetTemplateVersionVariables(ctx, versionID)
	if err != nil {
		return nil, nil, fmt.Errorf("get template variables: %w", err)
	}
	for _, v := range rows {
		switch {
		case !v.HasValue, declaredOnly && !v.Declared:
		case v.Inherited && !declaredOnly:
			inherited = append(inherited, codersdk.VariableValue{Name: v.Name, Value: v.Value})
		default:
			given = append(given, codersdk.VariableValue{Name: v.Name, Value: v.Value})
		}
	}
	return given, inherited, nil
}
