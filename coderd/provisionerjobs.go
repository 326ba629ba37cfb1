package coderd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// provisioningRoutes mounts files, templates, template versions, workspaces,
// builds and the provisioner daemon protocol under /api/v2.
func (api *API) provisioningRoutes(r chi.Router, apiKey func(http.Handler) http.Handler) {
	r.Route("/provisionerdaemons", func(r chi.Router) {
		r.With(apiKey).Get("/", api.provisionerDaemons)
		r.Group(api.provisionerDaemonRoutes)
	})
	r.Group(func(r chi.Router) {
		r.Use(apiKey)
		r.Route("/files", func(r chi.Router) {
			r.Post("/", api.postFile)
			r.Get("/{fileid}", api.fileByID)
		})
		r.Route("/templateversions", func(r chi.Router) {
			r.Post("/", api.postTemplateVersion)
			r.Route("/{templateversion}", func(r chi.Router) {
				r.Get("/", api.templateVersion)
				r.Get("/logs", api.templateVersionLogs)
				r.Get("/rich-parameters", api.templateVersionRichParameters)
				r.Get("/resources", api.templateVersionResources)
				r.Patch("/cancel", api.patchCancelTemplateVersion)
			})
		})
		r.Route("/templates", func(r chi.Router) {
			r.Post("/", api.postTemplate)
			r.Get("/", api.templates)
			r.Route("/{template}", func(r chi.Router) {
				r.Get("/", api.template)
				r.Get("/versions", api.templateVersionsByTemplate)
				r.Patch("/versions", api.patchActiveTemplateVersion)
			})
		})
		r.Route("/workspaces", func(r chi.Router) {
			r.Get("/", api.workspaces)
			r.Route("/{workspace}", func(r chi.Router) {
				r.Get("/", api.workspace)
				r.Get("/builds", api.workspaceBuilds)
				r.Post("/builds", api.postWorkspaceBuild)
			})
		})
		r.Route("/workspacebuilds/{workspacebuild}", func(r chi.Router) {
			r.Get("/", api.workspaceBuild)
			r.Get("/logs", api.workspaceBuildLogs)
			r.Get("/resources", api.workspaceBuildResources)
			r.Patch("/cancel", api.patchCancelWorkspaceBuild)
		})
	})
}

// userWorkspaceRoutes mounts the workspace routes about a {user}.
func (api *API) userWorkspaceRoutes(r chi.Router) {
	r.Post("/workspaces", api.postWorkspace)
	r.Get("/workspace/{workspacename}", api.workspaceByOwnerAndName)
}

// jobStatus derives a job's status from its timestamps and error.
func jobStatus(job database.ProvisionerJob) codersdk.ProvisionerJobStatus {
	switch {
	case job.CanceledAt.Valid && job.CompletedAt.Valid:
		return codersdk.ProvisionerJobCanceled
	case job.CanceledAt.Valid:
		return codersdk.ProvisionerJobCanceling
	case job.CompletedAt.Valid && job.Error.Valid && job.Error.String != "":
		return codersdk.ProvisionerJobFailed
	case job.CompletedAt.Valid:
		return codersdk.ProvisionerJobSucceeded
	case job.StartedAt.Valid:
		return codersdk.ProvisionerJobRunning
	default:
		return codersdk.ProvisionerJobPending
	}
}

func timePtr(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time
	return &v
}

// convertJob turns a job into its API shape. A pending job carries its queue
// position and, when no live daemon has its tags, the reason it waits.
func (api *API) convertJob(ctx context.Context, job database.ProvisionerJob) (codersdk.ProvisionerJob, error) {
	tags := map[string]string{}
	_ = json.Unmarshal(job.Tags, &tags)
	out := codersdk.ProvisionerJob{
		ID: job.ID, CreatedAt: job.CreatedAt, StartedAt: timePtr(job.StartedAt), CompletedAt: timePtr(job.CompletedAt),
		CanceledAt: timePtr(job.CanceledAt), Error: job.Error.String, ErrorCode: job.ErrorCode.String,
		Status: jobStatus(job), FileID: job.FileID, Tags: tags, Type: codersdk.ProvisionerJobType(job.Type),
	}
	if job.WorkerID.Valid {
		id := job.WorkerID.UUID
		out.WorkerID = &id
	}
	if out.Status != codersdk.ProvisionerJobPending {
		return out, nil
	}
	pos, err := api.db.GetProvisionerJobQueuePosition(ctx, job.ID)
	if err != nil {
		return out, fmt.Errorf("get queue position: %w", err)
	}
	out.QueuePosition, out.QueueSize = int(pos.QueuePosition), int(pos.QueueSize)
	live, err := api.db.CountLiveProvisionerDaemonsForTags(ctx, database.CountLiveProvisionerDaemonsForTagsParams{
		SeenAfter: pgtype.Timestamptz{Time: api.now().Add(-api.liveDaemonWindow()), Valid: true}, Tags: job.Tags,
	})
	if err != nil {
		return out, fmt.Errorf("count live daemons: %w", err)
	}
	if live == 0 {
		out.Detail = fmt.Sprintf("no provisioner daemon with tags %s is connected; the job waits for one", formatTags(tags))
	} else {
		out.Detail = fmt.Sprintf("waiting for one of %d provisioner daemon(s) with tags %s (queue position %d of %d)",
			live, formatTags(tags), out.QueuePosition, out.QueueSize)
	}
	return out, nil
}

func convertJobLog(l database.ProvisionerJobLog) codersdk.ProvisionerJobLog {
	return codersdk.ProvisionerJobLog{
		ID: l.ID, CreatedAt: l.CreatedAt, Source: string(l.Source), Level: codersdk.LogLevel(l.Level),
		Stage: l.Stage, Output: l.Output,
	}
}

// logFollowInterval is how often a followed log stream checks for new lines.
const logFollowInterval = 200 * time.Millisecond

// serveJobLogs answers a logs request for a job: a JSON array, or with
// ?follow a server-sent event stream ("event: log" per line, "event: end"
// once the job is over and every line was sent).
func (api *API) serveJobLogs(w http.ResponseWriter, r *http.Request, jobID uuid.UUID) {
	ctx := r.Context()
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{
				Message: "Invalid query parameter.", Validations: []codersdk.ValidationError{{Field: "after", Detail: "must be an integer"}},
			})
			return
		}
		after = n
	}
	_, follow := r.URL.Query()["follow"]
	if !follow {
		logs, err := api.db.GetProvisionerLogsAfterID(ctx, database.GetProvisionerLogsAfterIDParams{JobID: jobID, CreatedAfter: after})
		if err != nil {
			httpapi.InternalServerError(w, r, "Get job logs.", err)
			return
		}
		out := make([]codersdk.ProvisionerJobLog, 0, len(logs))
		for _, l := range logs {
			out = append(out, convertJobLog(l))
		}
		httpapi.Write(ctx, w, http.StatusOK, out)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	t := time.NewTicker(logFollowInterval)
	defer t.Stop()
	for {
		// Read the job first: logs written before completion are then all
		// visible to the log query that follows.
		job, err := api.db.GetProvisionerJobByID(ctx, jobID)
		if err != nil {
			return
		}
		logs, err := api.db.GetProvisionerLogsAfterID(ctx, database.GetProvisionerLogsAfterIDParams{JobID: jobID, CreatedAfter: after})
		if err != nil {
			return
		}
		for _, l := range logs {
			data, err := json.Marshal(convertJobLog(l))
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "event: log\ndata: %s\n\n", data); err != nil {
				return
			}
			after = l.ID
		}
		if job.CompletedAt.Valid {
			_, _ = fmt.Fprint(w, "event: end\ndata: {}\n\n")
			_ = rc.Flush()
			return
		}
		_ = rc.Flush()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cancelJob cancels a job: a pending one is over at once; a running one is
// canceling until its daemon stops terraform and reports back.
func (api *API) cancelJob(w http.ResponseWriter, r *http.Request, job database.ProvisionerJob) {
	ctx := r.Context()
	if job.CompletedAt.Valid {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Job has already completed."})
		return
	}
	if job.CanceledAt.Valid {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Job has already been marked as canceled."})
		return
	}
	now := api.now()
	p := database.UpdateProvisionerJobWithCancelByIDParams{ID: job.ID, CanceledAt: pgtype.Timestamptz{Time: now, Valid: true}}
	if !job.StartedAt.Valid {
		p.CompletedAt = pgtype.Timestamptz{Time: now, Valid: true}
	}
	if err := api.db.UpdateProvisionerJobWithCancelByID(ctx, p); err != nil {
		httpapi.InternalServerError(w, r, "Cancel job.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Job has been marked as canceled."})
}

// notFoundOr500 answers a failed lookup.
func notFoundOr500(w http.ResponseWriter, r *http.Request, what string, err error) {
	if database.IsNotFound(err) {
		httpapi.ResourceNotFound(w, r)
		return
	}
	httpapi.InternalServerError(w, r, "Get "+what+".", err)
}

// paramUUID parses a UUID path parameter, answering 404 when malformed.
func paramUUID(w http.ResponseWriter, r *http.Request, name string) (uuid.UUID, bool) {
	id, err := uuid.Parse(chi.URLParam(r, name))
	if err != nil {
		httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{
			Message: fmt.Sprintf("Invalid %s: must be a UUID.", name),
		})
		return uuid.Nil, false
	}
	return id, true
}
