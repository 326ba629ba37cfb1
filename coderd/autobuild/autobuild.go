// Package autobuild is the workspace lifecycle executor: on every tick it
// reads each workspace's schedule, activity and latest build, and starts
// workspaces whose autostart time came (autostart), stops running ones past
// their deadline (autostop), marks idle ones dormant and stops them
// (dormancy), and deletes dormant ones past their deletion date and failed
// ones past the template's failure TTL (autodelete). Builds are queued
// through a Builder (coderd's normal build path, so provisioners run them)
// with the reason recorded. A tick runs only while its executor holds a
// PostgreSQL advisory lock, so of several replicas one acts at a time.
package autobuild

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/schedule"
	"github.com/wgmesh/coder/database"
)

// LockClass and LockKey name the PostgreSQL advisory lock a tick holds.
const (
	LockClass int32 = 0x636f6472 // "codr"
	LockKey   int32 = 16         // the lifecycle executor
)

// Builder queues a build of a workspace the way the API does.
type Builder interface {
	// BuildWorkspace queues transition of the workspace with reason,
	// initiated by the workspace's owner.
	BuildWorkspace(ctx context.Context, workspaceID uuid.UUID, transition database.WorkspaceTransition, reason database.BuildReason) error
}

// Action is what a tick does to one workspace.
type Action struct {
	// Transition is the build to queue; empty for none.
	Transition database.WorkspaceTransition
	// Reason is the build's reason.
	Reason database.BuildReason
	// MarkDormant marks the workspace dormant (before its stop build).
	MarkDormant bool
}

// None reports whether the action does nothing.
func (a Action) None() bool { return a.Transition == "" && !a.MarkDormant }

// Decide returns what the executor does at now to the workspace described
// by w (a row of GetWorkspacesForLifecycle: its latest build has ended).
func Decide(w database.GetWorkspacesForLifecycleRow, now time.Time) Action {
	completed := w.JobCompletedAt.Time
	// A failed workspace is deleted once the template's failure TTL passed.
	if w.JobFailed {
		if w.FailureTtl > 0 && w.Transition != database.WorkspaceTransitionDelete && !now.Before(completed.Add(time.Duration(w.FailureTtl))) {
			return Action{Transition: database.WorkspaceTransitionDelete, Reason: database.BuildReasonAutodelete}
		}
		return Action{}
	}
	running := w.Transition == database.WorkspaceTransitionStart
	stopped := w.Transition == database.WorkspaceTransitionStop
	if w.DormantAt.Valid {
		if w.DeletingAt.Valid && !now.Before(w.DeletingAt.Time) {
			return Action{Transition: database.WorkspaceTransitionDelete, Reason: database.BuildReasonAutodelete}
		}
		if running {
			return Action{Transition: database.WorkspaceTransitionStop, Reason: database.BuildReasonDormancy}
		}
		return Action{}
	}
	if w.TimeTilDormant > 0 {
		lastUsed := w.LastUsedAt
		if w.CreatedAt.After(lastUsed) {
			lastUsed = w.CreatedAt
		}
		if !now.Before(lastUsed.Add(time.Duration(w.TimeTilDormant))) {
			a := Action{MarkDormant: true}
			if running {
				a.Transition, a.Reason = database.WorkspaceTransitionStop, database.BuildReasonDormancy
			}
			return a
		}
	}
	if running && !w.Deadline.IsZero() && !now.Before(w.Deadline) {
		return Action{Transition: database.WorkspaceTransitionStop, Reason: database.BuildReasonAutostop}
	}
	if stopped && w.AutostartSchedule.Valid && w.AllowUserAutostart {
		sched, err := schedule.ParseAutostart(w.AutostartSchedule.String)
		if err != nil {
			return Action{}
		}
		next := sched.Next(completed)
		if !next.IsZero() && !now.Before(next) {
			return Action{Transition: database.WorkspaceTransitionStart, Reason: database.BuildReasonAutostart}
		}
	}
	return Action{}
}

// Stats is the outcome of one tick.
type Stats struct {
	// Now is the tick's time.
	Now time.Time
	// Skipped is true when another executor held the lock.
	Skipped bool
	// Transitions are the builds queued, by workspace.
	Transitions map[uuid.UUID]database.WorkspaceTransition
	// Reasons are the queued builds' reasons, by workspace.
	Reasons map[uuid.UUID]database.BuildReason
	// Dormant are the workspaces marked dormant.
	Dormant []uuid.UUID
	// Errors are the workspaces whose action failed.
	Errors map[uuid.UUID]error
}

// Executor runs the lifecycle on each tick.
type Executor struct {
	db      *database.Store
	builder Builder
	logger  *slog.Logger
}

// New returns an executor acting on db through builder; logger may be nil.
func New(db *database.Store, builder Builder, logger *slog.Logger) *Executor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Executor{db: db, builder: builder, logger: logger}
}

// Run runs a tick for every time received from tick until ctx ends or tick
// closes, sending each tick's stats to stats when it is not nil.
func (e *Executor) Run(ctx context.Context, tick <-chan time.Time, stats chan<- Stats) {
	for {
		select {
		case <-ctx.Done():
			return
		case now, ok := <-tick:
			if !ok {
				return
			}
			s, err := e.Tick(ctx, now)
			if err != nil && ctx.Err() == nil {
				e.logger.Warn("lifecycle executor tick failed", "error", err)
			}
			if stats != nil {
				select {
				case stats <- s:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// Tick runs the lifecycle once at now under the advisory lock; when another
// executor holds the lock it does nothing and reports Skipped.
func (e *Executor) Tick(ctx context.Context, now time.Time) (Stats, error) {
	stats := Stats{
		Now: now, Transitions: map[uuid.UUID]database.WorkspaceTransition{},
		Reasons: map[uuid.UUID]database.BuildReason{}, Errors: map[uuid.UUID]error{},
	}
	conn, err := e.db.Pool().Acquire(ctx)
	if err != nil {
		return stats, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", LockClass, LockKey).Scan(&locked); err != nil {
		return stats, fmt.Errorf("take the lifecycle lock: %w", err)
	}
	if !locked {
		stats.Skipped = true
		return stats, nil
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1, $2)", LockClass, LockKey); err != nil {
			// A lock that could not be released dies with its connection.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	rows, err := e.db.GetWorkspacesForLifecycle(ctx)
	if err != nil {
		return stats, fmt.Errorf("get workspaces: %w", err)
	}
	var errs []error
	for _, w := range rows {
		a := Decide(w, now)
		if a.None() {
			continue
		}
		if err := e.apply(ctx, w, a, now); err != nil {
			stats.Errors[w.WorkspaceID] = err
			errs = append(errs, fmt.Errorf("workspace %s: %w", w.WorkspaceID, err))
			e.logger.Warn("lifecycle action failed", "workspace_id", w.WorkspaceID, "transition", a.Transition, "reason", a.Reason, "error", err)
			continue
		}
		if a.MarkDormant {
			stats.Dormant = append(stats.Dormant, w.WorkspaceID)
		}
		if a.Transition != "" {
			stats.Transitions[w.WorkspaceID] = a.Transition
			stats.Reasons[w.WorkspaceID] = a.Reason
		}
		e.logger.Info("lifecycle action", "workspace_id", w.WorkspaceID, "transition", a.Transition, "reason", a.Reason, "dormant", a.MarkDormant)
	}
	return stats, errors.Join(errs...)
}

func (e *Executor) apply(ctx context.Context, w database.GetWorkspacesForLifecycleRow, a Action, now time.Time) error {
	if a.MarkDormant {
		deleting := pgtype.Timestamptz{}
		if w.TimeTilDormantAutodelete > 0 {
			deleting = pgtype.Timestamptz{Time: now.Add(time.Duration(w.TimeTilDormantAutodelete)), Valid: true}
		}
		if err := e.db.UpdateWorkspaceDormantDeletingAt(ctx, database.UpdateWorkspaceDormantDeletingAtParams{
			ID: w.WorkspaceID, DormantAt: pgtype.Timestamptz{Time: now, Valid: true}, DeletingAt: deleting, UpdatedAt: now,
		}); err != nil {
			return fmt.Errorf("mark dormant: %w", err)
		}
	}
	if a.Transition == "" {
		return nil
	}
	return e.builder.BuildWorkspace(ctx, w.WorkspaceID, a.Transition, a.Reason)
}
