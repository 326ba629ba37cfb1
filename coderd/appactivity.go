package coderd

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/workspaceapps"
	"github.com/wgmesh/coder/database"
)

// appActivityInterval bounds how often app traffic to one workspace counts
// as activity (a database write and a deadline bump).
const appActivityInterval = time.Minute

// appActivity wraps the apps proxy's authorizer: every request granted to
// a user counts as use of the workspace (last_used_at) and bumps its
// deadline like agent-reported sessions do, at most once per
// appActivityInterval per workspace. Granted decisions are cached by the
// proxy for a few seconds, which is far below that interval.
type appActivity struct {
	inner workspaceapps.Authorizer
	api   *API

	mu   sync.Mutex
	last map[uuid.UUID]time.Time
}

func newAppActivity(inner workspaceapps.Authorizer, api *API) *appActivity {
	return &appActivity{inner: inner, api: api, last: map[uuid.UUID]time.Time{}}
}

// Authorize implements workspaceapps.Authorizer.
func (a *appActivity) Authorize(ctx context.Context, req workspaceapps.AccessRequest) (workspaceapps.Decision, error) {
	d, err := a.inner.Authorize(ctx, req)
	if err == nil && d.Grant != nil && d.Grant.UserID != uuid.Nil && a.due(d.Grant.WorkspaceID) {
		a.record(context.WithoutCancel(ctx), d.Grant.WorkspaceID)
	}
	return d, err
}

// due reports whether activity of the workspace should be recorded now.
func (a *appActivity) due(id uuid.UUID) bool {
	now := a.api.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.last[id]; ok && now.Sub(last) < appActivityInterval && !now.Before(last) {
		return false
	}
	if len(a.last) > 10000 {
		for k, t := range a.last {
			if now.Sub(t) >= appActivityInterval {
				delete(a.last, k)
			}
		}
	}
	a.last[id] = now
	return true
}

func (a *appActivity) record(ctx context.Context, id uuid.UUID) {
	ws, err := a.api.db.GetWorkspaceByID(ctx, id)
	if err != nil {
		a.api.logger.WarnContext(ctx, "app activity: get workspace", "workspace_id", id, "error", err)
		return
	}
	if err := a.api.db.UpdateWorkspaceLastUsedAt(ctx, database.UpdateWorkspaceLastUsedAtParams{ID: id, LastUsedAt: a.api.now()}); err != nil {
		a.api.logger.WarnContext(ctx, "app activity: record last use", "workspace_id", id, "error", err)
	}
	if err := a.api.bumpDeadline(ctx, ws); err != nil {
		a.api.logger.WarnContext(ctx, "app activity: bump deadline", "workspace_id", id, "error", err)
	}
}
