package provisionerdserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/database"
)

// runningJob loads the {job} of the {daemon}; it must be running on that daemon.
func (s *Server) runningJob(w http.ResponseWriter, r *http.Request) (database.ProvisionerJob, bool) {
	return s.runningJobOr(w, r, nil)
}

// runningJobOr is runningJob; when the job is already completed it calls
// onCompleted (if set) before answering 409, with a note it may return.
func (s *Server) runningJobOr(w http.ResponseWriter, r *http.Request, onCompleted func(database.ProvisionerJob) string) (database.ProvisionerJob, bool) {
	d, ok := s.daemonFromRequest(w, r)
	if !ok {
		return database.ProvisionerJob{}, false
	}
	id, err := uuid.Parse(chi.URLParam(r, "job"))
	if err != nil {
		httpapi.ResourceNotFound(w, r)
		return database.ProvisionerJob{}, false
	}
	job, err := s.db.GetProvisionerJobByID(r.Context(), id)
	if err != nil {
		if database.IsNotFound(err) {
			httpapi.ResourceNotFound(w, r)
		} else {
			httpapi.InternalServerError(w, r, "Get provisioner job.", err)
		}
		return database.ProvisionerJob{}, false
	}
	if !job.WorkerID.Valid || job.WorkerID.UUID != d.ID {
		httpapi.Write(r.Context(), w, http.StatusForbidden, codersdk.Response{Message: "The job is not running on this provisioner daemon."})
		return database.ProvisionerJob{}, false
	}
	if job.CompletedAt.Valid {
		msg := "The job is already completed."
		if job.Error.Valid {
			msg += " " + job.Error.String
		}
		if onCompleted != nil {
			if note := onCompleted(job); note != "" {
				msg += " " + note
			}
		}
		httpapi.Write(r.Context(), w, http.StatusConflict, codersdk.Response{Message: msg})
		return database.ProvisionerJob{}, false
	}
	return job, true
}

// Log line limits of the provisioner_job_logs columns.
const (
	maxLogOutput = 1024
	maxLogStage  = 128
)

func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	for len(string(r)) > n {
		r = r[:len(r)-1]
	}
	return string(r)
}

func (s *Server) postLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	job, ok := s.runningJob(w, r)
	if !ok {
		return
	}
	var req provisionersdk.LogsRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if err := s.insertJobLogs(ctx, s.db.Queries, job.ID, "provisioner", req.Logs); err != nil {
		httpapi.InternalServerError(w, r, "Insert job logs.", err)
		return
	}
	// A daemon that reports is alive, whatever its heartbeat ticker does.
	s.touchJob(ctx, job)
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Logs stored."})
}

// touchJob records that the job's daemon was heard from (it counts as a
// heartbeat for the hung-job detector).
func (s *Server) touchJob(ctx context.Context, job database.ProvisionerJob) {
	now := s.now()
	if _, err := s.db.UpdateProvisionerJobHeartbeat(ctx, database.UpdateProvisionerJobHeartbeatParams{
		ID: job.ID, WorkerID: job.WorkerID, HeartbeatAt: pgtype.Timestamptz{Time: now, Valid: true},
	}); err != nil {
		s.logger.Warn("record provisioner job activity", "job_id", job.ID, "error", err)
	}
}

// postState stores the partial Terraform state of a running workspace
// build: the daemon sends it while terraform applies, so that what a build
// created is destroyed by the next delete even if the build never reports.
func (s *Server) postState(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	job, ok := s.runningJob(w, r)
	if !ok {
		return
	}
	var req provisionersdk.StateRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if job.Type != database.ProvisionerJobTypeWorkspaceBuild {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     "Only workspace builds have a state.",
			Validations: []codersdk.ValidationError{{Field: "state", Detail: "this job is a " + string(job.Type)}},
		})
		return
	}
	if len(req.State) == 0 || !json.Valid(req.State) {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
			Message:     "Invalid state.",
			Validations: []codersdk.ValidationError{{Field: "state", Detail: "must be a Terraform state (JSON)"}},
		})
		return
	}
	if err := s.storeBuildState(ctx, s.db.Queries, job.ID, req.State); err != nil {
		httpapi.InternalServerError(w, r, "Store partial state.", err)
		return
	}
	s.touchJob(ctx, job)
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "State stored."})
}

func (s *Server) storeBuildState(ctx context.Context, q *database.Queries, jobID uuid.UUID, state []byte) error {
	build, err := q.GetWorkspaceBuildByJobID(ctx, jobID)
	if err != nil {
		return fmt.Errorf("get build: %w", err)
	}
	// Partial states hold the agent tokens like final ones: sealed the same way.
	sealed, err := s.sealState(state, build.WorkspaceID)
	if err != nil {
		return fmt.Errorf("encrypt state: %w", err)
	}
	if err := q.UpdateWorkspaceBuildProvisionerStateByID(ctx, database.UpdateWorkspaceBuildProvisionerStateByIDParams{
		ID: build.ID, ProvisionerState: sealed, UpdatedAt: s.now(),
	}); err != nil {
		return fmt.Errorf("store state: %w", err)
	}
	return nil
}

// lateState keeps the state of a workspace build that coderd failed as
// hung while its daemon was still working (coderd unreachable for longer
// than the heartbeat timeout): the job stays failed, but what the build
// created is known, so the next delete destroys it. It reports whether the
// state was stored.
func (s *Server) lateState(ctx context.Context, job database.ProvisionerJob, state []byte) bool {
	if job.Type != database.ProvisionerJobTypeWorkspaceBuild || !job.ErrorCode.Valid || job.ErrorCode.String != "HUNG" ||
		len(state) == 0 || !json.Valid(state) {
		return false
	}
	if err := s.storeBuildState(ctx, s.db.Queries, job.ID, state); err != nil {
		s.logger.Warn("store the state of a job failed as hung", "job_id", job.ID, "error", err)
		return false
	}
	s.logger.Info("stored the state a daemon reported after its job was failed as hung", "job_id", job.ID)
	return true
}

func (s *Server) insertJobLogs(ctx context.Context, q *database.Queries, jobID uuid.UUID, source string, logs []provisionersdk.Log) error {
	if len(logs) == 0 {
		return nil
	}
	p := database.InsertProvisionerJobLogsParams{JobID: jobID}
	for _, l := range logs {
		level := l.Level
		if !database.LogLevel(level).Valid() {
			level = codersdk.LogLevelInfo
		}
		at := l.CreatedAt
		if at.IsZero() {
			at = s.now()
		}
		p.CreatedAt = append(p.CreatedAt, at)
		p.Source = append(p.Source, source)
		p.Level = append(p.Level, string(level))
		p.Stage = append(p.Stage, truncateRunes(l.Stage, maxLogStage))
		p.Output = append(p.Output, truncateRunes(l.Output, maxLogOutput))
	}
	if _, err := q.InsertProvisionerJobLogs(ctx, p); err != nil {
		return fmt.Errorf("insert logs: %w", err)
	}
	return nil
}

func (s *Server) postHeartbeat(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	job, ok := s.runningJob(w, r)
	if !ok {
		return
	}
	now := s.now()
	n, err := s.db.UpdateProvisionerJobHeartbeat(ctx, database.UpdateProvisionerJobHeartbeatParams{
		ID: job.ID, WorkerID: job.WorkerID, HeartbeatAt: pgtype.Timestamptz{Time: now, Valid: true},
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Update heartbeat.", err)
		return
	}
	if n == 0 {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{Message: "The job is already completed."})
		return
	}
	_ = s.db.UpdateProvisionerDaemonLastSeenAt(ctx, database.UpdateProvisionerDaemonLastSeenAtParams{
		ID: job.WorkerID.UUID, LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
	})
	httpapi.Write(ctx, w, http.StatusOK, provisionersdk.HeartbeatResponse{Canceled: job.CanceledAt.Valid})
}

func (s *Server) postFail(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req provisionersdk.FailedJob
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	job, ok := s.runningJobOr(w, r, func(job database.ProvisionerJob) string {
		if s.lateState(ctx, job, req.State) {
			return "The reported state was stored."
		}
		return ""
	})
	if !ok {
		return
	}
	msg := req.Error
	if msg == "" {
		msg = "the provisioner reported a failure without a message"
	}
	err := s.db.InTx(ctx, func(q *database.Queries) error {
		if job.Type == database.ProvisionerJobTypeWorkspaceBuild && len(req.State) > 0 {
			build, err := q.GetWorkspaceBuildByJobID(ctx, job.ID)
			if err != nil {
				return fmt.Errorf("get build: %w", err)
			}
			sealed, err := s.sealState(req.State, build.WorkspaceID)
			if err != nil {
				return fmt.Errorf("encrypt state: %w", err)
			}
			if err := q.UpdateWorkspaceBuildProvisionerStateByID(ctx, database.UpdateWorkspaceBuildProvisionerStateByIDParams{
				ID: build.ID, ProvisionerState: sealed, UpdatedAt: s.now(),
			}); err != nil {
				return fmt.Errorf("store state: %w", err)
			}
		}
		_, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{
			ID: job.ID, CompletedAt: s.now(),
			Error:     pgtype.Text{String: msg, Valid: true},
			ErrorCode: pgtype.Text{String: req.ErrorCode, Valid: req.ErrorCode != ""},
		})
		return err
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Fail job.", err)
		return
	}
	s.logger.Info("provisioner job failed", "job_id", job.ID, "error", msg)
	s.buildDone(ctx, job)
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Job failed."})
}

func (s *Server) postComplete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req provisionersdk.CompletedJob
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	job, ok := s.runningJobOr(w, r, func(job database.ProvisionerJob) string {
		if s.lateState(ctx, job, req.State) {
			return "The reported state was stored."
		}
		return ""
	})
	if !ok {
		return
	}
	now := s.now()
	err := s.db.InTx(ctx, func(q *database.Queries) error {
		switch job.Type {
		case database.ProvisionerJobTypeTemplateVersionImport:
			version, err := q.GetTemplateVersionByJobID(ctx, job.ID)
			if err != nil {
				return fmt.Errorf("get template version: %w", err)
			}
			for i, p := range req.Parameters {
				if err := insertParameter(ctx, q, version.ID, p, i); err != nil {
					return err
				}
			}
			for _, v := range req.Variables {
				if err := q.UpsertTemplateVersionVariable(ctx, database.UpsertTemplateVersionVariableParams{
					TemplateVersionID: version.ID, Name: v.Name, Description: v.Description, Type: v.Type,
					DefaultValue: v.DefaultValue, Required: v.Required, Sensitive: v.Sensitive,
				}); err != nil {
					return fmt.Errorf("store template variable %q: %w", v.Name, err)
				}
			}
			if err := s.insertResources(ctx, q, job.ID, database.WorkspaceTransitionStart, req.Resources); err != nil {
				return err
			}
			if err := s.insertResources(ctx, q, job.ID, database.WorkspaceTransitionStop, req.StopResources); err != nil {
				return err
			}
		case database.ProvisionerJobTypeWorkspaceBuild:
			build, err := q.GetWorkspaceBuildByJobID(ctx, job.ID)
			if err != nil {
				return fmt.Errorf("get build: %w", err)
			}
			sealed, err := s.sealState(req.State, build.WorkspaceID)
			if err != nil {
				return fmt.Errorf("encrypt state: %w", err)
			}
			if err := q.UpdateWorkspaceBuildProvisionerStateByID(ctx, database.UpdateWorkspaceBuildProvisionerStateByIDParams{
				ID: build.ID, ProvisionerState: sealed, UpdatedAt: now,
			}); err != nil {
				return fmt.Errorf("store state: %w", err)
			}
			if err := s.insertResources(ctx, q, job.ID, build.Transition, req.Resources); err != nil {
				return err
			}
			if build.Transition == database.WorkspaceTransitionStart {
				if err := setDeadline(ctx, q, build, now); err != nil {
					return err
				}
			}
			if build.Transition == database.WorkspaceTransitionDelete {
				if err := q.UpdateWorkspaceDeletedByID(ctx, database.UpdateWorkspaceDeletedByIDParams{
					ID: build.WorkspaceID, Deleted: true, UpdatedAt: now,
				}); err != nil {
					return fmt.Errorf("mark workspace deleted: %w", err)
				}
			}
		}
		n, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{
			ID: job.ID, CompletedAt: now,
		})
		if err != nil {
			return fmt.Errorf("complete job: %w", err)
		}
		if n == 0 {
			return errJobAlreadyCompleted
		}
		return nil
	})
	if errors.Is(err, errJobAlreadyCompleted) {
		httpapi.Write(ctx, w, http.StatusConflict, codersdk.Response{Message: "The job is already completed."})
		return
	}
	if err != nil {
		httpapi.InternalServerError(w, r, "Complete job.", err)
		return
	}
	s.logger.Info("provisioner job completed", "job_id", job.ID, "type", job.Type, "resources", len(req.Resources))
	s.buildDone(ctx, job)
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Job completed."})
}

var errJobAlreadyCompleted = errors.New("job already completed")
