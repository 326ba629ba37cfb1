package autobuild_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/autobuild"
	"github.com/wgmesh/coder/database"
)

func ts(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: true} }

// TestDecide covers each rule of the executor at the instants around it,
// including an autostart across the spring-forward DST change in the
// schedule's time zone.
func TestDecide(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// Stopped on Friday 27 March 2026 at 18:00 Berlin (CET, UTC+1); the clocks
	// go forward on Sunday 29 March, so Monday 08:30 Berlin is 06:30 UTC.
	stoppedAt := time.Date(2026, 3, 27, 18, 0, 0, 0, berlin)
	stopped := database.GetWorkspacesForLifecycleRow{
		Transition: database.WorkspaceTransitionStop, JobCompletedAt: ts(stoppedAt),
		AutostartSchedule:  pgtype.Text{String: "CRON_TZ=Europe/Berlin 30 8 * * 1-5", Valid: true},
		AllowUserAutostart: true, AllowUserAutostop: true, CreatedAt: stoppedAt.Add(-time.Hour),
	}
	mondayStart := time.Date(2026, 3, 30, 6, 30, 0, 0, time.UTC)
	started := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	running := database.GetWorkspacesForLifecycleRow{
		Transition: database.WorkspaceTransitionStart, JobCompletedAt: ts(started),
		Deadline: started.Add(8 * time.Hour), AllowUserAutostart: true, AllowUserAutostop: true,
		CreatedAt: started, LastUsedAt: started,
	}
	with := func(r database.GetWorkspacesForLifecycleRow, f func(*database.GetWorkspacesForLifecycleRow)) database.GetWorkspacesForLifecycleRow {
		f(&r)
		return r
	}
	start := autobuild.Action{Transition: database.WorkspaceTransitionStart, Reason: database.BuildReasonAutostart}
	stop := autobuild.Action{Transition: database.WorkspaceTransitionStop, Reason: database.BuildReasonAutostop}
	del := autobuild.Action{Transition: database.WorkspaceTransitionDelete, Reason: database.BuildReasonAutodelete}
	dormantStop := autobuild.Action{Transition: database.WorkspaceTransitionStop, Reason: database.BuildReasonDormancy, MarkDormant: true}
	tests := []struct {
		name string
		row  database.GetWorkspacesForLifecycleRow
		now  time.Time
		want autobuild.Action
	}{
		{"autostart: Monday 08:29 Berlin (CEST)", stopped, mondayStart.Add(-time.Minute), autobuild.Action{}},
		{"autostart: Monday 08:30 Berlin after DST is 06:30 UTC", stopped, mondayStart, start},
		{"autostart: not on the weekend", stopped, time.Date(2026, 3, 28, 7, 30, 0, 0, time.UTC), autobuild.Action{}},
		{"autostart: template forbids", with(stopped, func(r *database.GetWorkspacesForLifecycleRow) { r.AllowUserAutostart = false }), mondayStart, autobuild.Action{}},
		{"autostart: no schedule", with(stopped, func(r *database.GetWorkspacesForLifecycleRow) { r.AutostartSchedule = pgtype.Text{} }), mondayStart, autobuild.Action{}},
		{"autostart: a running workspace is not started", with(running, func(r *database.GetWorkspacesForLifecycleRow) { r.AutostartSchedule = stopped.AutostartSchedule }), started.Add(time.Hour), autobuild.Action{}},
		{"autostop: before the deadline", running, running.Deadline.Add(-time.Second), autobuild.Action{}},
		{"autostop: at the deadline", running, running.Deadline, stop},
		{"autostop: no deadline", with(running, func(r *database.GetWorkspacesForLifecycleRow) { r.Deadline = time.Time{} }), started.Add(100 * time.Hour), autobuild.Action{}},
		{"dormancy: idle running workspace", with(running, func(r *database.GetWorkspacesForLifecycleRow) { r.TimeTilDormant = int64(24 * time.Hour) }), started.Add(24 * time.Hour), dormantStop},
		{"dormancy: recently used", with(running, func(r *database.GetWorkspacesForLifecycleRow) {
			r.TimeTilDormant = int64(24 * time.Hour)
			r.LastUsedAt = started.Add(2 * time.Hour)
		}), started.Add(25 * time.Hour), stop}, // past its deadline, but not idle for a day
		{"dormancy: idle stopped workspace is marked only", with(stopped, func(r *database.GetWorkspacesForLifecycleRow) {
			r.TimeTilDormant = int64(time.Hour)
			r.AutostartSchedule = pgtype.Text{}
		}), stoppedAt.Add(time.Hour), autobuild.Action{MarkDormant: true}},
		{"dormant: not deleted before deleting_at", with(stopped, func(r *database.GetWorkspacesForLifecycleRow) {
			r.DormantAt, r.DeletingAt = ts(stoppedAt), ts(stoppedAt.Add(48*time.Hour))
		}), stoppedAt.Add(47 * time.Hour), autobuild.Action{}},
		{"dormant: deleted at deleting_at", with(stopped, func(r *database.GetWorkspacesForLifecycleRow) {
			r.DormantAt, r.DeletingAt = ts(stoppedAt), ts(stoppedAt.Add(48*time.Hour))
		}), stoppedAt.Add(48 * time.Hour), del},
		{"dormant: never autostarted", with(stopped, func(r *database.GetWorkspacesForLifecycleRow) { r.DormantAt = ts(stoppedAt) }), mondayStart, autobuild.Action{}},
		{"failed: kept within failure TTL", with(running, func(r *database.GetWorkspacesForLifecycleRow) {
			r.JobFailed, r.FailureTtl = true, int64(time.Hour)
		}), started.Add(59 * time.Minute), autobuild.Action{}},
		{"failed: deleted after failure TTL", with(running, func(r *database.GetWorkspacesForLifecycleRow) {
			r.JobFailed, r.FailureTtl = true, int64(time.Hour)
		}), started.Add(time.Hour), del},
		{"failed: no failure TTL, not past the deadline rule", with(running, func(r *database.GetWorkspacesForLifecycleRow) { r.JobFailed = true }), started.Add(100 * time.Hour), autobuild.Action{}},
	}
	for _, tt := range tests {
		if got := autobuild.Decide(tt.row, tt.now); got != tt.want {
			t.Errorf("%s: Decide = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
