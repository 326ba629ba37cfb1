package coderd

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// Defaults of ProvisioningOptions.
const (
	DefaultProvisionerHeartbeatTimeout = 30 * time.Second
	DefaultProvisionerAcquireWait      = 10 * time.Second
)

// HungJobError is the error of a job whose daemon stopped heartbeating.
const HungJobError = "provisioner daemon stopped heartbeating"

// ProvisioningOptions configures templates, workspaces and the provisioner
// daemon protocol.
type ProvisioningOptions struct {
	// PSK is the pre-shared key provisioner daemons authenticate with
	// (--provisioner-daemon-psk). Empty refuses every daemon.
	PSK string
	// HeartbeatTimeout is how long a running job may go without a heartbeat
	// before it is failed; 0 means DefaultProvisionerHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// AcquireWait bounds an acquire long poll; 0 means DefaultProvisionerAcquireWait.
	AcquireWait time.Duration
	// AgentBinaryPath is the coder binary served at /bin/coder-<os>-<arch> for
	// the server's platform; empty means the running executable.
	AgentBinaryPath string
}

// provisioning is the API's provisioning state: the job signal that wakes
// acquire long polls and the hung-job detector.
type provisioning struct {
	opts   ProvisioningOptions
	mu     sync.Mutex
	signal chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func (api *API) startProvisioning() {
	o := api.opts.Provisioning
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = DefaultProvisionerHeartbeatTimeout
	}
	if o.AcquireWait <= 0 {
		o.AcquireWait = DefaultProvisionerAcquireWait
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &provisioning{opts: o, signal: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	api.prov = p
	go func() {
		defer close(p.done)
		api.hungJobLoop(ctx)
	}()
}

func (api *API) closeProvisioning() {
	if api.prov == nil {
		return
	}
	api.prov.cancel()
	<-api.prov.done
}

// notifyJobs wakes every acquire long poll of this replica.
func (p *provisioning) notifyJobs() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.signal)
	p.signal = make(chan struct{})
}

func (p *provisioning) wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signal
}

// hungJobLoop fails running jobs whose heartbeat lapsed.
func (api *API) hungJobLoop(ctx context.Context) {
	interval := api.prov.opts.HeartbeatTimeout / 4
	if interval < 100*time.Millisecond {
		interval = 100 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := api.FailHungJobs(ctx); err != nil && ctx.Err() == nil {
			api.logger.Warn("fail hung provisioner jobs", "error", err)
		}
	}
}

// FailHungJobs fails every running job whose heartbeat is older than the
// heartbeat timeout, with HungJobError. The hung-job loop calls it.
func (api *API) FailHungJobs(ctx context.Context) error {
	now := api.now()
	return api.db.InTx(ctx, func(q *database.Queries) error {
		jobs, err := q.GetHungProvisionerJobs(ctx, pgtype.Timestamptz{Time: now.Add(-api.prov.opts.HeartbeatTimeout), Valid: true})
		if err != nil {
			return fmt.Errorf("get hung jobs: %w", err)
		}
		for _, job := range jobs {
			api.logger.Warn("failing hung provisioner job", "job_id", job.ID, "last_heartbeat", job.HeartbeatAt.Time)
			if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{
				ID: job.ID, CompletedAt: now,
				Error:     pgtype.Text{String: HungJobError, Valid: true},
				ErrorCode: pgtype.Text{String: "HUNG", Valid: true},
			}); err != nil {
				return fmt.Errorf("fail hung job %s: %w", job.ID, err)
			}
			if _, err := q.InsertProvisionerJobLogs(ctx, database.InsertProvisionerJobLogsParams{
				JobID: job.ID, CreatedAt: []time.Time{now}, Source: []string{"provisioner_daemon"},
				Level: []string{"error"}, Stage: []string{"Cleaning up"},
				Output: []string{fmt.Sprintf("%s: no heartbeat since %s", HungJobError, job.HeartbeatAt.Time.Format(time.RFC3339))},
			}); err != nil {
				return fmt.Errorf("log hung job %s: %w", job.ID, err)
			}
		}
		return nil
	})
}

// provisionerDaemonPublicRoutes are the routes authenticated by the daemon
// PSK (not an API key) and the agent binary download.
func provisionerDaemonPublicRoutes() []string {
	return []string{
		"POST /api/v2/provisionerdaemons/register",
		"POST /api/v2/provisionerdaemons/{daemon}/acquire",
		"POST /api/v2/provisionerdaemons/{daemon}/jobs/{job}/logs",
		"POST /api/v2/provisionerdaemons/{daemon}/jobs/{job}/heartbeat",
		"POST /api/v2/provisionerdaemons/{daemon}/jobs/{job}/complete",
		"POST /api/v2/provisionerdaemons/{daemon}/jobs/{job}/fail",
		"GET /bin/{name}",
	}
}

// requirePSK authenticates provisioner daemons by pre-shared key.
func (api *API) requirePSK(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get(codersdk.ProvisionerDaemonPSKHeader)
		want := api.prov.opts.PSK
		gh, wh := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
		if want == "" || got == "" || subtle.ConstantTimeCompare(gh[:], wh[:]) != 1 {
			httpapi.Write(r.Context(), w, http.StatusUnauthorized, codersdk.Response{
				Message: "Invalid or missing provisioner daemon pre-shared key.",
				Detail:  "Set --psk (CODER_PROVISIONER_DAEMON_PSK) to the server's --provisioner-daemon-psk.",
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (api *API) provisionerDaemonRoutes(r chi.Router) {
	r.Use(api.requirePSK)
	r.Post("/register", api.postProvisionerDaemonRegister)
	r.Route("/{daemon}", func(r chi.Router) {
		r.Post("/acquire", api.postProvisionerDaemonAcquire)
		r.Route("/jobs/{job}", func(r chi.Router) {
			r.Post("/logs", api.postProvisionerJobLogs)
			r.Post("/heartbeat", api.postProvisionerJobHeartbeat)
			r.Post("/complete", api.postProvisionerJobComplete)
			r.Post("/fail", api.postProvisionerJobFail)
		})
	})
}

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

func (api *API) postProvisionerDaemonRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req codersdk.ProvisionerDaemonRegisterRequest
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
	now := api.now()
	version := req.TerraformVersion
	if req.TerraformFlavor != "" {
		version = req.TerraformFlavor + " " + req.TerraformVersion
	}
	provisioners := req.Provisioners
	if len(provisioners) == 0 {
		provisioners = []string{string(database.ProvisionerTypeTerraform)}
	}
	d, err := api.db.UpsertProvisionerDaemon(ctx, database.UpsertProvisionerDaemonParams{
		ID: uuid.New(), CreatedAt: now, Name: req.Name, Provisioners: provisioners, Tags: rawTags,
		Version: req.Version, TerraformVersion: version, LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Register provisioner daemon.", err)
		return
	}
	api.logger.Info("provisioner daemon registered", "daemon_id", d.ID, "name", d.Name, "tags", tags, "terraform", version)
	interval := api.prov.opts.HeartbeatTimeout / 6
	if interval <= 0 {
		interval = time.Second
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.ProvisionerDaemonRegisterResponse{
		ID: d.ID, Tags: tags, HeartbeatIntervalMillis: interval.Milliseconds(),
	})
}

// daemonFromRequest loads the {daemon} path parameter.
func (api *API) daemonFromRequest(w http.ResponseWriter, r *http.Request) (database.ProvisionerDaemon, bool) {
	id, err := uuid.Parse(chi.URLParam(r, "daemon"))
	if err != nil {
		httpapi.ResourceNotFound(w, r)
		return database.ProvisionerDaemon{}, false
	}
	d, err := api.db.GetProvisionerDaemonByID(r.Context(), id)
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

func (api *API) postProvisionerDaemonAcquire(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d, ok := api.daemonFromRequest(w, r)
	if !ok {
		return
	}
	deadline := time.NewTimer(api.prov.opts.AcquireWait)
	defer deadline.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		signal := api.prov.wait()
		now := api.now()
		if err := api.db.UpdateProvisionerDaemonLastSeenAt(ctx, database.UpdateProvisionerDaemonLastSeenAtParams{
			ID: d.ID, LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
		}); err != nil && ctx.Err() == nil {
			httpapi.InternalServerError(w, r, "Update provisioner daemon.", err)
			return
		}
		job, err := api.db.AcquireProvisionerJob(ctx, database.AcquireProvisionerJobParams{
			StartedAt: pgtype.Timestamptz{Time: now, Valid: true},
			WorkerID:  uuid.NullUUID{UUID: d.ID, Valid: true},
			Types:     d.Provisioners,
			Tags:      d.Tags,
		})
		if err == nil {
			acquired, err := api.acquiredJob(ctx, job)
			if err != nil {
				api.logger.Error("prepare acquired job", "job_id", job.ID, "error", err)
				// The job cannot run; fail it rather than leave it running.
				_, _ = api.db.UpdateProvisionerJobWithCompleteByID(context.WithoutCancel(ctx), database.UpdateProvisionerJobWithCompleteByIDParams{
					ID: job.ID, CompletedAt: api.now(),
					Error: pgtype.Text{String: "prepare job: " + err.Error(), Valid: true},
				})
				httpapi.InternalServerError(w, r, "Prepare acquired job.", err)
				return
			}
			api.logger.Info("provisioner job acquired", "job_id", job.ID, "daemon", d.Name, "type", job.Type)
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

// jobInput is the input column of a provisioner job.
type jobInput struct {
	TemplateVersionID uuid.UUID `json:"template_version_id,omitempty"`
	WorkspaceBuildID  uuid.UUID `json:"workspace_build_id,omitempty"`
}

// acquiredJob builds what a daemon needs to run job.
func (api *API) acquiredJob(ctx context.Context, job database.ProvisionerJob) (*codersdk.AcquiredJob, error) {
	var input jobInput
	if err := json.Unmarshal(job.Input, &input); err != nil {
		return nil, fmt.Errorf("decode job input: %w", err)
	}
	file, err := api.db.GetFileByID(ctx, job.FileID)
	if err != nil {
		return nil, fmt.Errorf("get template file: %w", err)
	}
	tags := map[string]string{}
	_ = json.Unmarshal(job.Tags, &tags)
	out := &codersdk.AcquiredJob{
		JobID: job.ID, Type: codersdk.ProvisionerJobType(job.Type), TemplateSourceArchive: file.Data, Tags: tags,
	}
	accessURL := api.opts.AccessURL.String()
	switch job.Type {
	case database.ProvisionerJobTypeTemplateVersionImport:
		initiator, err := api.db.GetUserByID(ctx, job.InitiatorID)
		if err != nil {
			return nil, fmt.Errorf("get initiator: %w", err)
		}
		out.TemplateImport = &codersdk.AcquiredJobTemplateImport{
			TemplateVersionID: input.TemplateVersionID,
			Metadata: codersdk.ProvisionerMetadata{
				CoderURL: accessURL, WorkspaceTransition: codersdk.WorkspaceTransitionStart,
				WorkspaceOwner: initiator.Username, WorkspaceOwnerEmail: initiator.Email,
				WorkspaceOwnerName: initiator.Name, WorkspaceOwnerID: initiator.ID.String(),
			},
		}
	case database.ProvisionerJobTypeWorkspaceBuild:
		build, err := api.db.GetWorkspaceBuildByID(ctx, input.WorkspaceBuildID)
		if err != nil {
			return nil, fmt.Errorf("get workspace build: %w", err)
		}
		ws, err := api.db.GetWorkspaceByID(ctx, build.WorkspaceID)
		if err != nil {
			return nil, fmt.Errorf("get workspace: %w", err)
		}
		owner, err := api.db.GetUserByID(ctx, ws.OwnerID)
		if err != nil {
			return nil, fmt.Errorf("get owner: %w", err)
		}
		tmpl, err := api.db.GetTemplateByID(ctx, ws.TemplateID)
		if err != nil {
			return nil, fmt.Errorf("get template: %w", err)
		}
		version, err := api.db.GetTemplateVersionByID(ctx, build.TemplateVersionID)
		if err != nil {
			return nil, fmt.Errorf("get template version: %w", err)
		}
		params, err := api.db.GetWorkspaceBuildParameters(ctx, build.ID)
		if err != nil {
			return nil, fmt.Errorf("get build parameters: %w", err)
		}
		for _, p := range params {
			out.ParameterValues = append(out.ParameterValues, codersdk.ParameterValue{Name: p.Name, Value: p.Value})
		}
		out.WorkspaceBuild = &codersdk.AcquiredJobWorkspaceBuild{
			WorkspaceBuildID: build.ID,
			Transition:       codersdk.WorkspaceTransition(build.Transition),
			State:            build.ProvisionerState,
			Metadata: codersdk.ProvisionerMetadata{
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

// runningJob loads the {job} of the {daemon}; it must be running on that daemon.
func (api *API) runningJob(w http.ResponseWriter, r *http.Request) (database.ProvisionerJob, bool) {
	d, ok := api.daemonFromRequest(w, r)
	if !ok {
		return database.ProvisionerJob{}, false
	}
	id, err := uuid.Parse(chi.URLParam(r, "job"))
	if err != nil {
		httpapi.ResourceNotFound(w, r)
		return database.ProvisionerJob{}, false
	}
	job, err := api.db.GetProvisionerJobByID(r.Context(), id)
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

func (api *API) postProvisionerJobLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	job, ok := api.runningJob(w, r)
	if !ok {
		return
	}
	var req codersdk.ProvisionerLogsRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if err := api.insertJobLogs(ctx, api.db.Queries, job.ID, "provisioner", req.Logs); err != nil {
		httpapi.InternalServerError(w, r, "Insert job logs.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Logs stored."})
}

func (api *API) insertJobLogs(ctx context.Context, q *database.Queries, jobID uuid.UUID, source string, logs []codersdk.ProvisionerLog) error {
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
			at = api.now()
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

func (api *API) postProvisionerJobHeartbeat(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	job, ok := api.runningJob(w, r)
	if !ok {
		return
	}
	now := api.now()
	n, err := api.db.UpdateProvisionerJobHeartbeat(ctx, database.UpdateProvisionerJobHeartbeatParams{
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
	_ = api.db.UpdateProvisionerDaemonLastSeenAt(ctx, database.UpdateProvisionerDaemonLastSeenAtParams{
		ID: job.WorkerID.UUID, LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
	})
	httpapi.Write(ctx, w, http.StatusOK, codersdk.ProvisionerJobHeartbeatResponse{Canceled: job.CanceledAt.Valid})
}

func (api *API) postProvisionerJobFail(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	job, ok := api.runningJob(w, r)
	if !ok {
		return
	}
	var req codersdk.FailedJob
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	msg := req.Error
	if msg == "" {
		msg = "the provisioner reported a failure without a message"
	}
	err := api.db.InTx(ctx, func(q *database.Queries) error {
		if job.Type == database.ProvisionerJobTypeWorkspaceBuild && len(req.State) > 0 {
			build, err := q.GetWorkspaceBuildByJobID(ctx, job.ID)
			if err != nil {
				return fmt.Errorf("get build: %w", err)
			}
			if err := q.UpdateWorkspaceBuildProvisionerStateByID(ctx, database.UpdateWorkspaceBuildProvisionerStateByIDParams{
				ID: build.ID, ProvisionerState: req.State, UpdatedAt: api.now(),
			}); err != nil {
				return fmt.Errorf("store state: %w", err)
			}
		}
		_, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{
			ID: job.ID, CompletedAt: api.now(),
			Error:     pgtype.Text{String: msg, Valid: true},
			ErrorCode: pgtype.Text{String: req.ErrorCode, Valid: req.ErrorCode != ""},
		})
		return err
	})
	if err != nil {
		httpapi.InternalServerError(w, r, "Fail job.", err)
		return
	}
	api.logger.Info("provisioner job failed", "job_id", job.ID, "error", msg)
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Job failed."})
}

func (api *API) postProvisionerJobComplete(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	job, ok := api.runningJob(w, r)
	if !ok {
		return
	}
	var req codersdk.CompletedJob
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	now := api.now()
	err := api.db.InTx(ctx, func(q *database.Queries) error {
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
			if err := api.insertResources(ctx, q, job.ID, database.WorkspaceTransitionStart, req.Resources); err != nil {
				return err
			}
			if err := api.insertResources(ctx, q, job.ID, database.WorkspaceTransitionStop, req.StopResources); err != nil {
				return err
			}
		case database.ProvisionerJobTypeWorkspaceBuild:
			build, err := q.GetWorkspaceBuildByJobID(ctx, job.ID)
			if err != nil {
				return fmt.Errorf("get build: %w", err)
			}
			if err := q.UpdateWorkspaceBuildProvisionerStateByID(ctx, database.UpdateWorkspaceBuildProvisionerStateByIDParams{
				ID: build.ID, ProvisionerState: req.State, UpdatedAt: now,
			}); err != nil {
				return fmt.Errorf("store state: %w", err)
			}
			if err := api.insertResources(ctx, q, job.ID, build.Transition, req.Resources); err != nil {
				return err
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
	api.logger.Info("provisioner job completed", "job_id", job.ID, "type", job.Type, "resources", len(req.Resources))
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Job completed."})
}

var errJobAlreadyCompleted = errors.New("job already completed")

func insertParameter(ctx context.Context, q *database.Queries, versionID uuid.UUID, p codersdk.RichParameter, i int) error {
	opts := make([]codersdk.TemplateVersionParameterOption, 0, len(p.Options))
	for _, o := range p.Options {
		opts = append(opts, codersdk.TemplateVersionParameterOption{Name: o.Name, Description: o.Description, Value: o.Value, Icon: o.Icon})
	}
	rawOpts, err := json.Marshal(opts)
	if err != nil {
		return fmt.Errorf("encode options: %w", err)
	}
	order := p.Order
	if order == 0 {
		order = int32(i)
	}
	in := database.InsertTemplateVersionParameterParams{
		TemplateVersionID: versionID, Name: p.Name, Description: p.Description, Type: p.Type,
		Mutable: p.Mutable, DefaultValue: p.DefaultValue, Icon: p.Icon, Options: rawOpts,
		ValidationRegex: p.ValidationRegex, ValidationError: p.ValidationError,
		ValidationMonotonic: p.ValidationMonotonic, Required: p.Required, DisplayName: p.DisplayName,
		DisplayOrder: order, Ephemeral: p.Ephemeral, FormType: p.FormType,
	}
	if p.ValidationMin != nil {
		in.ValidationMin = pgtype.Int4{Int32: *p.ValidationMin, Valid: true}
	}
	if p.ValidationMax != nil {
		in.ValidationMax = pgtype.Int4{Int32: *p.ValidationMax, Valid: true}
	}
	if _, err := q.InsertTemplateVersionParameter(ctx, in); err != nil {
		return fmt.Errorf("insert parameter %q: %w", p.Name, err)
	}
	return nil
}

// insertResources stores resources with their metadata, agents (hashed
// tokens), scripts, apps and metadata definitions.
func (api *API) insertResources(ctx context.Context, q *database.Queries, jobID uuid.UUID, transition database.WorkspaceTransition, resources []codersdk.Resource) error {
	now := api.now()
	for _, res := range resources {
		dbRes, err := q.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{
			ID: uuid.New(), CreatedAt: now, JobID: jobID, Transition: transition,
			Type: res.Type, Name: res.Name, Hide: res.Hide, Icon: res.Icon, DailyCost: res.DailyCost,
		})
		if err != nil {
			return fmt.Errorf("insert resource %s.%s: %w", res.Type, res.Name, err)
		}
		for _, md := range res.Metadata {
			if _, err := q.InsertWorkspaceResourceMetadata(ctx, database.InsertWorkspaceResourceMetadataParams{
				WorkspaceResourceID: dbRes.ID, Key: md.Key,
				Value: pgtype.Text{String: md.Value, Valid: !md.IsNull}, Sensitive: md.Sensitive,
			}); err != nil {
				return fmt.Errorf("insert resource metadata %q: %w", md.Key, err)
			}
		}
		for _, agent := range res.Agents {
			if err := api.insertAgent(ctx, q, dbRes.ID, agent); err != nil {
				return err
			}
		}
	}
	return nil
}

// HashAgentToken is how agent tokens are stored: SHA-256 of the token string.
func HashAgentToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func (api *API) insertAgent(ctx context.Context, q *database.Queries, resourceID uuid.UUID, agent codersdk.Agent) error {
	now := api.now()
	token := agent.Token
	if token == "" {
		// Import and dry-run plans have no token yet; store an unusable hash.
		token = "unknown-" + uuid.NewString()
	}
	env, err := json.Marshal(agent.Env)
	if err != nil {
		return fmt.Errorf("encode agent env: %w", err)
	}
	displayApps := []byte(`{}`)
	if agent.DisplayApps != nil {
		if displayApps, err = json.Marshal(agent.DisplayApps); err != nil {
			return fmt.Errorf("encode display apps: %w", err)
		}
	}
	dbAgent, err := q.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
		ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: agent.Name, ResourceID: resourceID,
		AuthTokenHash: HashAgentToken(token), Architecture: agent.Architecture, OperatingSystem: agent.OperatingSystem,
		Directory: agent.Directory, EnvironmentVariables: env,
		ConnectionTimeoutSeconds: agent.ConnectionTimeoutSeconds, TroubleshootingUrl: agent.TroubleshootingURL,
		MotdFile: agent.MOTDFile, DisplayApps: displayApps, DisplayOrder: int32(agent.Order),
	})
	if err != nil {
		return fmt.Errorf("insert agent %q: %w", agent.Name, err)
	}
	if len(agent.Scripts) > 0 {
		srcs := database.InsertWorkspaceAgentLogSourcesParams{WorkspaceAgentID: dbAgent.ID, CreatedAt: now}
		scripts := database.InsertWorkspaceAgentScriptsParams{WorkspaceAgentID: dbAgent.ID, CreatedAt: now}
		for _, s := range agent.Scripts {
			src := uuid.New()
			srcs.ID = append(srcs.ID, src)
			srcs.DisplayName = append(srcs.DisplayName, truncateRunes(s.DisplayName, 127))
			srcs.Icon = append(srcs.Icon, s.Icon)
			scripts.ID = append(scripts.ID, uuid.New())
			scripts.LogSourceID = append(scripts.LogSourceID, src)
			scripts.LogPath = append(scripts.LogPath, s.LogPath)
			scripts.Script = append(scripts.Script, s.Script)
			scripts.Cron = append(scripts.Cron, s.Cron)
			scripts.StartBlocksLogin = append(scripts.StartBlocksLogin, s.StartBlocksLogin)
			scripts.RunOnStart = append(scripts.RunOnStart, s.RunOnStart)
			scripts.RunOnStop = append(scripts.RunOnStop, s.RunOnStop)
			scripts.TimeoutSeconds = append(scripts.TimeoutSeconds, s.TimeoutSeconds)
			scripts.DisplayName = append(scripts.DisplayName, s.DisplayName)
		}
		if _, err := q.InsertWorkspaceAgentLogSources(ctx, srcs); err != nil {
			return fmt.Errorf("insert agent log sources: %w", err)
		}
		if _, err := q.InsertWorkspaceAgentScripts(ctx, scripts); err != nil {
			return fmt.Errorf("insert agent scripts: %w", err)
		}
	}
	for i, md := range agent.Metadata {
		order := md.Order
		if order == 0 {
			order = int64(i)
		}
		if err := q.InsertWorkspaceAgentMetadata(ctx, database.InsertWorkspaceAgentMetadataParams{
			WorkspaceAgentID: dbAgent.ID, DisplayName: md.DisplayName, Key: md.Key, Script: md.Script,
			Timeout: md.Timeout, Interval: md.Interval, DisplayOrder: int32(order),
		}); err != nil {
			return fmt.Errorf("insert agent metadata %q: %w", md.Key, err)
		}
	}
	for i, app := range agent.Apps {
		health := database.WorkspaceAppHealthDisabled
		in := database.InsertWorkspaceAppParams{
			ID: uuid.New(), CreatedAt: now, AgentID: dbAgent.ID, Slug: app.Slug, DisplayName: app.DisplayName,
			Icon: app.Icon, Command: pgtype.Text{String: app.Command, Valid: app.Command != ""},
			Url: pgtype.Text{String: app.URL, Valid: app.URL != ""}, Subdomain: app.Subdomain,
			SharingLevel: database.AppSharingLevelOwner, External: app.External, Hidden: app.Hidden,
			DisplayOrder: int32(app.Order), OpenIn: app.OpenIn,
		}
		if in.DisplayOrder == 0 {
			in.DisplayOrder = int32(i)
		}
		if in.OpenIn == "" {
			in.OpenIn = "slim-window"
		}
		if lvl := database.AppSharingLevel(app.SharingLevel); lvl.Valid() {
			in.SharingLevel = lvl
		}
		if app.Healthcheck != nil && app.Healthcheck.URL != "" {
			health = database.WorkspaceAppHealthInitializing
			in.HealthcheckUrl = app.Healthcheck.URL
			in.HealthcheckInterval = app.Healthcheck.Interval
			in.HealthcheckThreshold = app.Healthcheck.Threshold
		}
		in.Health = health
		if _, err := q.InsertWorkspaceApp(ctx, in); err != nil {
			return fmt.Errorf("insert app %q: %w", app.Slug, err)
		}
	}
	return nil
}

// provisionerDaemons lists registered daemons (GET /api/v2/provisionerdaemons).
func (api *API) provisionerDaemons(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !api.authorize(r, rbac.ActionRead, rbac.Object{Type: rbac.ResourceProvisioner}) {
		httpapi.Forbidden(w, r)
		return
	}
	daemons, err := api.db.GetProvisionerDaemons(ctx)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get provisioner daemons.", err)
		return
	}
	live := api.now().Add(-api.liveDaemonWindow())
	out := make([]codersdk.ProvisionerDaemon, 0, len(daemons))
	for _, d := range daemons {
		tags := map[string]string{}
		_ = json.Unmarshal(d.Tags, &tags)
		sd := codersdk.ProvisionerDaemon{
			ID: d.ID, CreatedAt: d.CreatedAt, Name: d.Name, Version: d.Version,
			TerraformVersion: d.TerraformVersion, Provisioners: d.Provisioners, Tags: tags, Status: "offline",
		}
		if d.LastSeenAt.Valid {
			t := d.LastSeenAt.Time
			sd.LastSeenAt = &t
			if !t.Before(live) {
				sd.Status = "idle"
			}
		}
		out = append(out, sd)
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// liveDaemonWindow is how recently a daemon must have been seen to count as live.
func (api *API) liveDaemonWindow() time.Duration {
	w := 2 * api.prov.opts.AcquireWait
	if api.prov.opts.HeartbeatTimeout > w {
		w = api.prov.opts.HeartbeatTimeout
	}
	return w
}

func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+tags[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
