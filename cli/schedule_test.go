package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// TestScheduleCommands drives coder schedule start|stop|show|extend and the
// dormancy note of coder list against a real coderd.
func TestScheduleCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	e.addWorkspace("sched")
	ws, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "sched")
	if err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, e.env, "schedule", "start", "sched", "9:30AM", "Mon-Fri", "Europe/Berlin")
	if !strings.Contains(out, "9:30AM Mon-Fri (Europe/Berlin)") {
		t.Fatalf("schedule start output:\n%s", out)
	}
	if w, _ := e.client.Workspace(ctx, ws.ID); w.AutostartSchedule == nil || *w.AutostartSchedule != "CRON_TZ=Europe/Berlin 30 9 * * 1-5" {
		t.Fatalf("stored schedule %v", w.AutostartSchedule)
	}
	if res := runCLI(t, e.env, nil, "schedule", "start", "sched", "25:00"); res.code == 0 || !strings.Contains(res.stderr, "invalid time") {
		t.Fatalf("bad time accepted: %+v", res)
	}
	mustRun(t, e.env, "schedule", "stop", "sched", "8h")
	if w, _ := e.client.Workspace(ctx, ws.ID); w.TTLMillis == nil || *w.TTLMillis != (8*time.Hour).Milliseconds() {
		t.Fatalf("stored ttl %v", w.TTLMillis)
	}
	var shown map[string]string
	if err := json.Unmarshal([]byte(mustRun(t, e.env, "schedule", "show", "sched", "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["stops_after"] != "8h0m0s" || !strings.Contains(shown["starts_next"], "AM") {
		t.Fatalf("schedule show: %v", shown)
	}

	// extend needs a deadline: give the running build one (as a start with a TTL would).
	b, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := e.srv.DB.UpdateWorkspaceBuildDeadlineByID(ctx, database.UpdateWorkspaceBuildDeadlineByIDParams{
		ID: b.ID, Deadline: now.Add(time.Hour), MaxDeadline: now.Add(4 * time.Hour), UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	out = mustRun(t, e.env, "schedule", "extend", "sched", "2h")
	w, err := e.client.Workspace(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := w.LatestBuild.Deadline; d == nil || d.Before(before.Add(2*time.Hour).Add(-time.Second)) || d.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("extended deadline %v, want 2h from now", d)
	}
	if !strings.Contains(out, "(in 1h 59m)") && !strings.Contains(out, "(in 2h 0m)") {
		t.Fatalf("extend output:\n%s", out)
	}
	if res := runCLI(t, e.env, nil, "schedule", "extend", "sched", "5h"); res.code == 0 || !strings.Contains(res.stderr, "maximum") {
		t.Fatalf("extend beyond the max: %+v", res)
	}

	// coder list notes dormancy and the deletion date.
	deleting := now.Add(72 * time.Hour)
	if err := e.srv.DB.UpdateWorkspaceDormantDeletingAt(ctx, database.UpdateWorkspaceDormantDeletingAtParams{
		ID: ws.ID, DormantAt: pgtype.Timestamptz{Time: now, Valid: true}, DeletingAt: pgtype.Timestamptz{Time: deleting, Valid: true}, UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, e.env, "list"); !strings.Contains(out, "(dormant, deleted "+deleting.Local().Format("2006-01-02")+")") {
		t.Fatalf("list:\n%s", out)
	}
}

// TestSSHAutostart: coder ssh --stdio (the config-ssh ProxyCommand) starts
// a stopped workspace without asking; --disable-autostart refuses instead
// and queues nothing.
func TestSSHAutostart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	e.addWorkspace("sleepy")
	ws, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "sleepy")
	if err != nil {
		t.Fatal(err)
	}
	// Stop it as a completed stop build would.
	prev, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	prevJob, err := e.srv.DB.GetProvisionerJobByID(ctx, prev.JobID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	err = e.srv.DB.InTx(ctx, func(q *database.Queries) error {
		// A start needs the version attached to the template and imported.
		tv, err := q.GetTemplateVersionByID(ctx, prev.TemplateVersionID)
		if err != nil {
			return err
		}
		if err := q.UpdateTemplateVersionTemplateID(ctx, database.UpdateTemplateVersionTemplateIDParams{
			ID: tv.ID, TemplateID: uuid.NullUUID{UUID: ws.TemplateID, Valid: true}, UpdatedAt: now,
		}); err != nil {
			return err
		}
		if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: tv.JobID, CompletedAt: now}); err != nil {
			return err
		}
		job, err := q.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: e.owner, Provisioner: database.ProvisionerTypeTerraform,
			StorageMethod: database.ProvisionerStorageMethodFile, Type: database.ProvisionerJobTypeWorkspaceBuild, Input: []byte("{}"),
			FileID: prevJob.FileID, Tags: []byte("{}"),
		})
		if err != nil {
			return err
		}
		if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: job.ID, CompletedAt: now}); err != nil {
			return err
		}
		_, err = q.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: ws.ID, TemplateVersionID: prev.TemplateVersionID,
			BuildNumber: prev.BuildNumber + 1, Transition: database.WorkspaceTransitionStop, InitiatorID: e.owner,
			JobID: job.ID, Reason: database.BuildReasonInitiator,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	builds := func() int {
		bs, err := e.srv.DB.GetWorkspaceBuildsByWorkspaceID(ctx, ws.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(bs)
	}

	res := runCLI(t, e.env, strings.NewReader(""), "ssh", "--stdio", "--disable-autostart", "sleepy")
	if res.code == 0 || !strings.Contains(res.stderr, "stopped") || builds() != 2 {
		t.Fatalf("--disable-autostart: exit %d, %d builds, stderr %q", res.code, builds(), res.stderr)
	}
	// Without the flag the ProxyCommand starts it (no provisioner runs here,
	// so the connection then times out waiting for the build).
	res = runCLI(t, e.env, strings.NewReader(""), "ssh", "--stdio", "--connect-timeout", "3s", "sleepy")
	if builds() != 3 {
		t.Fatalf("ssh --stdio did not start the stopped workspace: exit %d, stderr %q", res.code, res.stderr)
	}
	if b, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID); err != nil || b.Transition != database.WorkspaceTransitionStart {
		t.Fatalf("latest build %+v %v", b, err)
	}
}
