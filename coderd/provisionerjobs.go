package coderd

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// provisioningRoutes mounts files, templates, template versions, workspaces,
// builds and the provisioner daemon protocol under /api/v2.
func (api *API) provisioningRoutes(r chi.Router, apiKey func(http.Handler) http.Handler) {
	params := httpmw.ParamConfig{DB: api.db}
	r.Route("/provisionerdaemons", func(r chi.Router) {
		r.With(apiKey).Get("/", api.provisionerDaemons)
		r.Group(api.provisionerDaemonRoutes)
	})
	r.Group(func(r chi.Router) {
		r.Use(apiKey)
		r.Route("/files", func(r chi.Router) {
			r.Post("/", api.postFile)
			r.With(httpmw.ExtractFileParam(params)).Get("/{fileid}", api.fileByID)
		})
		r.Route("/templateversions", func(r chi.Router) {
			r.Post("/", api.postTemplateVersion)
			r.Route("/{templateversion}", func(r chi.Router) {
				r.Use(httpmw.ExtractTemplateVersionParam(params))
				r.Get("/", api.templateVersion)
				r.Get("/logs", api.templateVersionLogs)
				r.Get("/rich-parameters", api.templateVersionRichParameters)
				r.Get("/resources", api.templateVersionResources)
				r.Patch("/cancel", api.patchCancelTemplateVersion)
				r.Get("/variables", api.templateVersionVariables)
				r.Post("/archive", api.postArchiveTemplateVersion)
				r.Post("/unarchive", api.postUnarchiveTemplateVersion)
			})
		})
		r.Route("/templates", func(r chi.Router) {
			r.Post("/", api.postTemplate)
			r.Get("/", api.templates)
			r.Route("/{template}", func(r chi.Router) {
				r.Use(httpmw.ExtractTemplateParam(params))
				r.Get("/", api.template)
				r.Patch("/", api.patchTemplateMeta)
				r.Delete("/", api.deleteTemplate)
				r.Get("/versions", api.templateVersionsByTemplate)
				r.Patch("/versions", api.patchActiveTemplateVersion)
			})
		})
		r.Route("/workspaces", func(r chi.Router) {
			r.Get("/", api.workspaces)
			r.Route("/{workspace}", func(r chi.Router) {
				r.Use(httpmw.ExtractWorkspaceParam(params))
				r.Get("/", api.workspace)
				r.Get("/builds", api.workspaceBuilds)
				r.Post("/builds", api.postWorkspaceBuild)
				api.workspaceScheduleRoutes(r)
				api.workspaceParityRoutes(r)
			})
		})
		r.Route("/workspacebuilds/{workspacebuild}", func(r chi.Router) {
			r.Use(httpmw.ExtractWorkspaceBuildParam(params))
			r.Get("/", api.workspaceBuild)
			r.Get("/logs", api.workspaceBuildLogs)
			r.Get("/resources", api.workspaceBuildResources)
			r.Get("/parameters", api.workspaceBuildParameters)
			r.Patch("/cancel", api.patchCancelWorkspaceBuild)
		})
	})
}

// userWorkspaceRoutes mounts the workspace routes about a {user}.
func (api *API) userWorkspaceRoutes(r chi.Router) {
	r.Post("/workspaces", api.postWorkspace)
	byName := httpmw.ExtractWorkspaceByNameParam(httpmw.ParamConfig{
		DB: api.db,
		NotFound: func(w http.ResponseWriter, r *http.Request) {
			// Consult the authorizer anyway: the caller may not learn more
			// than "not found" about another user's workspaces.
			_ = api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceWorkspace, OwnerID: httpmw.UserParam(r).ID})
			httpapi.ResourceNotFound(w, r)
		},
	})
	r.With(byName).Get("/workspace/{workspacename}", api.workspaceByOwnerAndName)
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
			out = append(out, convert.JobLog(l))
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
			data, err := json.Marshal(convert.JobLog(l))
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
