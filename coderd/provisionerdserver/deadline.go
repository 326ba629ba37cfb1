package provisionerdserver

import (
	"context"
	"fmt"
	"time"

	"github.com/wgmesh/coder/coderd/schedule"
	"github.com/wgmesh/coder/database"
)

// setDeadline sets a completed start's deadline and max deadline from the
// workspace's TTL and its template's schedule (coderd/schedule).
func setDeadline(ctx context.Context, q *database.Queries, build database.WorkspaceBuild, now time.Time) error {
	ws, err := q.GetWorkspaceByID(ctx, build.WorkspaceID)
	if err != nil {
		return fmt.Errorf("get workspace: %w", err)
	}
	row, err := q.GetTemplateSchedule(ctx, ws.TemplateID)
	if err != nil {
		return fmt.Errorf("get template schedule: %w", err)
	}
	ts := schedule.FromRow(row)
	wsTTL, has := schedule.WorkspaceTTL(ws)
	deadline, maxDeadline := schedule.Deadlines(now, schedule.EffectiveTTL(wsTTL, has, ts), ts)
	if err := q.UpdateWorkspaceBuildDeadlineByID(ctx, database.UpdateWorkspaceBuildDeadlineByIDParams{
		ID: build.ID, Deadline: deadline, MaxDeadline: maxDeadline, UpdatedAt: now,
	}); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	return nil
}
