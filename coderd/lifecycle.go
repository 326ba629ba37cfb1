package coderd

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/autobuild"
	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/schedule"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// DefaultLifecycleInterval is how often the lifecycle executor ticks.
const DefaultLifecycleInterval = time.Minute

// LifecycleOptions configures the workspace lifecycle executor
// (coderd/autobuild): autostart, autostop, dormancy and cleanup.
type LifecycleOptions struct {
	// Disabled turns the executor off in this process.
	Disabled bool
	// Tick, when set, drives the executor: one tick per time received
	// (tests inject their clock here). Otherwise a ticker fires every
	// Interval.
	Tick <-chan time.Time
	// Interval is the ticker's period; 0 means DefaultLifecycleInterval.
	Interval time.Duration
	// Stats, when set, receives every tick's outcome.
	Stats chan<- autobuild.Stats
}

// lifecycleState is the running executor.
type lifecycleState struct {
	executor *autobuild.Executor
	cancel   context.CancelFunc
	done     chan struct{}
}

// startLifecycle starts the executor unless it is disabled.
func (api *API) startLifecycle() {
	o := api.opts.Lifecycle
	ex := autobuild.New(api.db, lifecycleBuilder{api}, api.logger.With("component", "autobuild"))
	api.lifecycle = &lifecycleState{executor: ex, done: make(chan struct{})}
	if o.Disabled {
		close(api.lifecycle.done)
		api.lifecycle.cancel = func() {}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	api.lifecycle.cancel = cancel
	tick := o.Tick
	var ticker *time.Ticker
	if tick == nil {
		interval := o.Interval
		if interval <= 0 {
			interval = DefaultLifecycleInterval
		}
		ticker = time.NewTicker(interval)
		tick = ticker.C
	}
	go func() {
		defer close(api.lifecycle.done)
		if ticker != nil {
			defer ticker.Stop()
		}
		ex.Run(ctx, tick, o.Stats)
	}()
}

func (api *API) closeLifecycle() {
	if api.lifecycle == nil {
		return
	}
	api.lifecycle.cancel()
	<-api.lifecycle.done
}

// LifecycleExecutor returns the API's lifecycle executor (to tick it
// directly, or to run a second instance against the same database).
func (api *API) LifecycleExecutor() *autobuild.Executor { return api.lifecycle.executor }

// LifecycleBuilder returns the Builder the executor queues builds with
// (the API's build path), for another executor instance.
func (api *API) LifecycleBuilder() autobuild.Builder { return lifecycleBuilder{api} }

// lifecycleBuilder queues the executor's builds through the API's build path.
type lifecycleBuilder struct{ api *API }

// errBuildActive is returned when the workspace already has an active build.
var errBuildActive = errors.New("a workspace build is already active")

// BuildWorkspace queues transition of the workspace at its latest build's
// template version with its previous parameter values, initiated by the
// workspace's owner, with reason recorded.
func (b lifecycleBuilder) BuildWorkspace(ctx context.Context, workspaceID uuid.UUID, transition database.WorkspaceTransition, reason database.BuildReason) error {
	api := b.api
	ws, err := api.db.GetWorkspaceByID(ctx, workspaceID)
	if err != nil {
		return fmt.Errorf("get workspace: %w", err)
	}
	if ws.Deleted {
		return nil
	}
	prev, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		return fmt.Errorf("get latest build: %w", err)
	}
	prevJob, err := api.db.GetProvisionerJobByID(ctx, prev.JobID)
	if err != nil {
		return fmt.Errorf("get latest build job: %w", err)
	}
	if convert.JobStatus(prevJob).Active() {
		return errBuildActive
	}
	versionID := prev.TemplateVersionID
	if transition == database.WorkspaceTransitionStart {
		// A template that requires its active version gets it at every
		// start, automatic ones included.
		tmpl, err := api.db.GetTemplateByID(ctx, ws.TemplateID)
		if err != nil {
			return fmt.Errorf("get template: %w", err)
		}
		if tmpl.RequireActiveVersion {
			versionID = tmpl.ActiveVersionID
		}
	}
	version, err := api.db.GetTemplateVersionByID(ctx, versionID)
	if err != nil {
		return fmt.Errorf("get template version: %w", err)
	}
	prevValues, err := api.db.GetWorkspaceBuildParameters(ctx, prev.ID)
	if err != nil {
		return fmt.Errorf("get build parameters: %w", err)
	}
	params, err := api.db.GetTemplateVersionParameters(ctx, version.ID)
	if err != nil {
		return fmt.Errorf("get template parameters: %w", err)
	}
	values, errs := ResolveParameters(params, prevValues, nil)
	if len(errs) > 0 {
		return fmt.Errorf("parameters: %s: %s", errs[0].Field, errs[0].Detail)
	}
	err = api.db.InTx(ctx, func(q *database.Queries) error {
		_, err := api.insertBuildWithReason(ctx, q, ws, version, transition, ws.OwnerID, values, &prev, false, reason)
		return err
	})
	if err != nil {
		return fmt.Errorf("queue %s build: %w", transition, err)
	}
	api.prov.notifyJobs()
	return nil
}

// templateSchedule returns a template's schedule settings.
func (api *API) templateSchedule(ctx context.Context, templateID uuid.UUID) (schedule.TemplateSchedule, error) {
	row, err := api.db.GetTemplateSchedule(ctx, templateID)
	if err != nil {
		return schedule.TemplateSchedule{}, fmt.Errorf("get template schedule: %w", err)
	}
	return schedule.FromRow(row), nil
}

// templateSchedules returns the API shape of the schedule settings of the
// given templates (defaults for a template without settings), in one query.
func (api *API) templateSchedules(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]codersdk.TemplateSchedule, error) {
	rows, err := api.db.GetTemplateSchedulesByTemplateIDs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get template schedules: %w", err)
	}
	out := make(map[uuid.UUID]codersdk.TemplateSchedule, len(ids))
	for _, id := range ids {
		out[id] = codersdk.TemplateSchedule{AllowUserAutostart: true, AllowUserAutostop: true}
	}
	for _, r := range rows {
		out[r.TemplateID] = codersdk.TemplateSchedule{
			MaxTTLMillis: r.MaxTtl / 1e6, AllowUserAutostart: r.AllowUserAutostart, AllowUserAutostop: r.AllowUserAutostop,
			FailureTTLMillis: r.FailureTtl / 1e6, TimeTilDormantMillis: r.TimeTilDormant / 1e6,
			TimeTilDormantAutoDeleteMillis: r.TimeTilDormantAutodelete / 1e6,
		}
	}
	return out, nil
}

// workspaceScheduleRoutes mounts the schedule routes of a {workspace}.
func (api *API) workspaceScheduleRoutes(r chi.Router) {
	r.Put("/autostart", api.putWorkspaceAutostart)
	r.Put("/ttl", api.putWorkspaceTTL)
	r.Put("/extend", api.putExtendWorkspace)
	r.Put("/dormant", api.putWorkspaceDormant)
}

// scheduleWorkspace returns the route's workspace and its template's
// schedule when the caller may update the workspace; otherwise it answers
// (404 unreadable, 403 read-only, 410 deleted) and returns false.
func (api *API) scheduleWorkspace(w http.ResponseWriter, r *http.Request) (database.Workspace, schedule.TemplateSchedule, bool) {
	ws, ok := api.readableWorkspace(w, r)
	if !ok {
		return ws, schedule.TemplateSchedule{}, false
	}
	if !api.authorize(r, rbac.ActionUpdate, workspaceObject(ws)) {
		httpapi.Forbidden(w, r)
		return ws, schedule.TemplateSchedule{}, false
	}
	if ws.Deleted {
		httpapi.Write(r.Context(), w, http.StatusGone, codersdk.Response{Message: "The workspace is deleted."})
		return ws, schedule.TemplateSchedule{}, false
	}
	ts, err := api.templateSchedule(r.Context(), ws.TemplateID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template schedule.", err)
		return ws, ts, false
	}
	return ws, ts, true
}

// templateAdmin reports whether the caller may update the template (and so
// may change schedules its settings forbid users to change).
func (api *API) templateAdmin(r *http.Request, templateID uuid.UUID) bool {
	return api.authorize(r, rbac.ActionUpdate, rbac.Object{Type: rbac.ResourceTemplate, ID: templateID.String()})
}

func validationFailed(w http.ResponseWriter, r *http.Request, field, detail string) {
	httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{
		Message: fmt.Sprintf("Invalid %s: %s.", field, detail), Validations: []codersdk.ValidationError{{Field: field, Detail: detail}},
	})
}

// checkSchedule validates a requested autostart schedule and TTL of a
// workspace of a template (a nil value is not checked) and answers 400 or
// 403 when they are refused.
func (api *API) checkSchedule(w http.ResponseWriter, r *http.Request, templateID uuid.UUID, ts schedule.TemplateSchedule, autostart *string, ttlMillis *int64) bool {
	if autostart != nil && *autostart != "" {
		if _, err := schedule.ParseAutostart(*autostart); err != nil {
			validationFailed(w, r, "schedule", err.Error())
			return false
		}
		if !ts.AllowUserAutostart && !api.templateAdmin(r, templateID) {
			httpapi.Write(r.Context(), w, http.StatusForbidden, codersdk.Response{Message: "Autostart is not allowed for workspaces using this template."})
			return false
		}
	}
	if ttlMillis != nil {
		if err := schedule.ValidateTTL(time.Duration(*ttlMillis)*time.Millisecond, ts); err != nil {
			validationFailed(w, r, "ttl_ms", err.Error())
			return false
		}
		if !ts.AllowUserAutostop && !api.templateAdmin(r, templateID) {
			httpapi.Write(r.Context(), w, http.StatusForbidden, codersdk.Response{Message: "Custom autostop TTL is not allowed for workspaces using this template."})
			return false
		}
	}
	return true
}

// checkCreateSchedule validates the schedule of a workspace being created
// (postWorkspace).
func (api *API) checkCreateSchedule(w http.ResponseWriter, r *http.Request, templateID uuid.UUID, req codersdk.CreateWorkspaceRequest) bool {
	if req.AutostartSchedule == nil && req.TTLMillis == nil {
		return true
	}
	ts, err := api.templateSchedule(r.Context(), templateID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get template schedule.", err)
		return false
	}
	return api.checkSchedule(w, r, templateID, ts, req.AutostartSchedule, req.TTLMillis)
}

// putWorkspaceAutostart serves PUT /api/v2/workspaces/{workspace}/autostart.
func (api *API) putWorkspaceAutostart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ts, ok := api.scheduleWorkspace(w, r)
	if !ok {
		return
	}
	var req codersdk.UpdateWorkspaceAutostartRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	value := pgtype.Text{}
	if req.Schedule != nil && *req.Schedule != "" {
		if !api.checkSchedule(w, r, ws.TemplateID, ts, req.Schedule, nil) {
			return
		}
		value = pgtype.Text{String: *req.Schedule, Valid: true}
	} else if !ts.AllowUserAutostart && !api.templateAdmin(r, ws.TemplateID) {
		httpapi.Write(ctx, w, http.StatusForbidden, codersdk.Response{Message: "Autostart is not allowed for workspaces using this template."})
		return
	}
	if err := api.db.UpdateWorkspaceAutostart(ctx, database.UpdateWorkspaceAutostartParams{
		ID: ws.ID, AutostartSchedule: value, UpdatedAt: api.now(),
	}); err != nil {
		httpapi.InternalServerError(w, r, "Update autostart schedule.", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// putWorkspaceTTL serves PUT /api/v2/workspaces/{workspace}/ttl. The TTL
// applies from the workspace's next start.
func (api *API) putWorkspaceTTL(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ts, ok := api.scheduleWorkspace(w, r)
	if !ok {
		return
	}
	var req codersdk.UpdateWorkspaceTTLRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	value := pgtype.Int8{}
	if req.TTLMillis != nil {
		if !api.checkSchedule(w, r, ws.TemplateID, ts, nil, req.TTLMillis) {
			return
		}
		value = pgtype.Int8{Int64: *req.TTLMillis * int64(time.Millisecond), Valid: true}
	} else if !ts.AllowUserAutostop && !api.templateAdmin(r, ws.TemplateID) {
		httpapi.Write(ctx, w, http.StatusForbidden, codersdk.Response{Message: "Custom autostop TTL is not allowed for workspaces using this template."})
		return
	}
	if err := api.db.UpdateWorkspaceTTL(ctx, database.UpdateWorkspaceTTLParams{ID: ws.ID, Ttl: value, UpdatedAt: api.now()}); err != nil {
		httpapi.InternalServerError(w, r, "Update TTL.", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// runningBuild returns the workspace's latest build when it is a start that
// succeeded; otherwise it answers 400 and returns false.
func (api *API) runningBuild(w http.ResponseWriter, r *http.Request, ws database.Workspace) (database.WorkspaceBuild, bool) {
	b, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(r.Context(), ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get latest build.", err)
		return b, false
	}
	job, err := api.db.GetProvisionerJobByID(r.Context(), b.JobID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get latest build job.", err)
		return b, false
	}
	if b.Transition != database.WorkspaceTransitionStart || convert.JobStatus(job) != codersdk.ProvisionerJobSucceeded {
		httpapi.Write(r.Context(), w, http.StatusBadRequest, codersdk.Response{Message: "The workspace must be running to extend its deadline."})
		return b, false
	}
	return b, true
}

// putExtendWorkspace serves PUT /api/v2/workspaces/{workspace}/extend.
func (api *API) putExtendWorkspace(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ts, ok := api.scheduleWorkspace(w, r)
	if !ok {
		return
	}
	var req codersdk.PutExtendWorkspaceRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	if !ts.AllowUserAutostop && !api.templateAdmin(r, ws.TemplateID) {
		httpapi.Write(ctx, w, http.StatusForbidden, codersdk.Response{Message: "Extending the deadline is not allowed for workspaces using this template."})
		return
	}
	b, ok := api.runningBuild(w, r, ws)
	if !ok {
		return
	}
	now := api.now()
	deadline := req.Deadline.UTC().Truncate(time.Microsecond)
	if err := schedule.ValidateExtension(now, deadline, b.Deadline, b.MaxDeadline); err != nil {
		validationFailed(w, r, "deadline", err.Error())
		return
	}
	if err := api.db.UpdateWorkspaceBuildDeadlineByID(ctx, database.UpdateWorkspaceBuildDeadlineByIDParams{
		ID: b.ID, Deadline: deadline, MaxDeadline: b.MaxDeadline, UpdatedAt: now,
	}); err != nil {
		httpapi.InternalServerError(w, r, "Update deadline.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, codersdk.Response{Message: "Deadline updated to " + deadline.Format(time.RFC3339) + "."})
}

// putWorkspaceDormant serves PUT /api/v2/workspaces/{workspace}/dormant.
// A workspace marked dormant is stopped (if running) and may not start
// until it is marked active again; marking it active counts as use.
func (api *API) putWorkspaceDormant(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ws, ts, ok := api.scheduleWorkspace(w, r)
	if !ok {
		return
	}
	var req codersdk.UpdateWorkspaceDormancy
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	now := api.now()
	params := database.UpdateWorkspaceDormantDeletingAtParams{ID: ws.ID, UpdatedAt: now}
	if req.Dormant {
		if ws.DormantAt.Valid {
			params.DormantAt, params.DeletingAt = ws.DormantAt, ws.DeletingAt
		} else {
			params.DormantAt = pgtype.Timestamptz{Time: now, Valid: true}
			if ts.TimeTilDormantAutodelete > 0 {
				params.DeletingAt = pgtype.Timestamptz{Time: now.Add(ts.TimeTilDormantAutodelete), Valid: true}
			}
		}
	}
	if err := api.db.UpdateWorkspaceDormantDeletingAt(ctx, params); err != nil {
		httpapi.InternalServerError(w, r, "Update dormancy.", err)
		return
	}
	if !req.Dormant {
		if err := api.db.UpdateWorkspaceLastUsedAt(ctx, database.UpdateWorkspaceLastUsedAtParams{ID: ws.ID, LastUsedAt: now}); err != nil {
			httpapi.InternalServerError(w, r, "Update last use.", err)
			return
		}
	}
	if req.Dormant {
		if b, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID); err == nil && b.Transition == database.WorkspaceTransitionStart {
			err := lifecycleBuilder{api}.BuildWorkspace(ctx, ws.ID, database.WorkspaceTransitionStop, database.BuildReasonDormancy)
			if err != nil && !errors.Is(err, errBuildActive) {
				httpapi.InternalServerError(w, r, "Stop the dormant workspace.", err)
				return
			}
		}
	}
	ws, err := api.db.GetWorkspaceByID(ctx, ws.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Get workspace.", err)
		return
	}
	out, err := api.convertWorkspace(ctx, ws)
	if err != nil {
		httpapi.InternalServerError(w, r, "Convert workspace.", err)
		return
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}

// refuseDormantStart answers 403 and returns false when ws is dormant.
func refuseDormantStart(w http.ResponseWriter, r *http.Request, ws database.Workspace) bool {
	if !ws.DormantAt.Valid {
		return true
	}
	httpapi.Write(r.Context(), w, http.StatusForbidden, codersdk.Response{
		Message: "The workspace is dormant and cannot be started.",
		Detail:  "Activate it first: Activate in the dashboard, or PUT /api/v2/workspaces/{workspace}/dormant with {\"dormant\": false}.",
	})
	return false
}

// bumpDeadline moves a running workspace's deadline to now+TTL after
// activity (agent stats with sessions), never beyond its max deadline.
func (api *API) bumpDeadline(ctx context.Context, ws database.Workspace) error {
	b, err := api.db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		return fmt.Errorf("get latest build: %w", err)
	}
	if b.Transition != database.WorkspaceTransitionStart || b.Deadline.IsZero() {
		return nil
	}
	ts, err := api.templateSchedule(ctx, ws.TemplateID)
	if err != nil {
		return err
	}
	wsTTL, has := schedule.WorkspaceTTL(ws)
	ttl := schedule.EffectiveTTL(wsTTL, has, ts)
	next, ok := schedule.Bump(api.now(), b.Deadline, b.MaxDeadline, ttl)
	if !ok {
		return nil
	}
	return api.db.UpdateWorkspaceBuildDeadlineByID(ctx, database.UpdateWorkspaceBuildDeadlineByIDParams{
		ID: b.ID, Deadline: next, MaxDeadline: b.MaxDeadline, UpdatedAt: api.now(),
	})
}

// validateTemplateSchedule computes a template's schedule settings with
// the given fields applied (nil fields unchanged) and validates them,
// without storing anything: a PATCH checks every field before it writes
// any (storeTemplateSchedule).
func (api *API) validateTemplateSchedule(ctx context.Context, templateID uuid.UUID, req codersdk.TemplateScheduleFields) (database.GetTemplateScheduleRow, []codersdk.ValidationError, error) {
	row, err := api.db.GetTemplateSchedule(ctx, templateID)
	if err != nil {
		return row, nil, fmt.Errorf("get template schedule: %w", err)
	}
	var vs []codersdk.ValidationError
	dur := func(field string, v *int64, dst *int64) {
		if v == nil {
			return
		}
		if *v < 0 {
			vs = append(vs, codersdk.ValidationError{Field: field, Detail: "must not be negative"})
			return
		}
		*dst = *v * int64(time.Millisecond)
	}
	dur("default_ttl_ms", req.DefaultTTLMillis, &row.DefaultTtl)
	dur("max_ttl_ms", req.MaxTTLMillis, &row.MaxTtl)
	dur("failure_ttl_ms", req.FailureTTLMillis, &row.FailureTtl)
	dur("time_til_dormant_ms", req.TimeTilDormantMillis, &row.TimeTilDormant)
	dur("time_til_dormant_autodelete_ms", req.TimeTilDormantAutoDeleteMillis, &row.TimeTilDormantAutodelete)
	if req.AllowUserAutostart != nil {
		row.AllowUserAutostart = *req.AllowUserAutostart
	}
	if req.AllowUserAutostop != nil {
		row.AllowUserAutostop = *req.AllowUserAutostop
	}
	if row.MaxTtl > 0 && row.DefaultTtl > row.MaxTtl {
		vs = append(vs, codersdk.ValidationError{Field: "default_ttl_ms", Detail: "must not exceed max_ttl_ms"})
	}
	if row.DefaultTtl > int64(schedule.MaxTTL) {
		vs = append(vs, codersdk.ValidationError{Field: "default_ttl_ms", Detail: fmt.Sprintf("must be at most %s", schedule.MaxTTL)})
	}
	return row, vs, nil
}

// storeTemplateSchedule writes schedule settings validateTemplateSchedule
// accepted, in the caller's transaction.
func storeTemplateSchedule(ctx context.Context, q *database.Queries, templateID uuid.UUID, row database.GetTemplateScheduleRow, now time.Time) error {
	if err := q.UpdateTemplateDefaultTTLByID(ctx, database.UpdateTemplateDefaultTTLByIDParams{ID: templateID, DefaultTtl: row.DefaultTtl, UpdatedAt: now}); err != nil {
		return fmt.Errorf("update default TTL: %w", err)
	}
	if err := q.UpsertTemplateSchedule(ctx, database.UpsertTemplateScheduleParams{
		TemplateID: templateID, UpdatedAt: now, MaxTtl: row.MaxTtl, AllowUserAutostart: row.AllowUserAutostart,
		AllowUserAutostop: row.AllowUserAutostop, FailureTtl: row.FailureTtl, TimeTilDormant: row.TimeTilDormant,
		TimeTilDormantAutodelete: row.TimeTilDormantAutodelete,
	}); err != nil {
		return fmt.Errorf("store template schedule: %w", err)
	}
	return nil
}
