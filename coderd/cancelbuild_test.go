package coderd_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// runningBuild gives ownerID a workspace (from its own template) whose
// latest build's job is running, and returns the workspace.
func runningBuild(t *testing.T, db *database.Store, ownerID uuid.UUID) (database.Workspace, database.WorkspaceBuild) {
	t.Helper()
	ctx := context.Background()
	agentID, _ := insertAgent(t, db, ownerID)
	ws, err := db.GetWorkspaceByAgentID(ctx, agentID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx, `UPDATE provisioner_jobs SET started_at = now() WHERE id = $1`, b.JobID); err != nil {
		t.Fatal(err)
	}
	return ws, b
}

// TestAllowUserCancelWorkspaceJobs: with the template's
// allow_user_cancel_workspace_jobs off, a member cannot cancel their own
// running build (403 saying why), while the site owner and a template
// admin still can; with it on (templates created through the API default
// to on, as in Coder) the member can.
func TestAllowUserCancelWorkspaceJobs(t *testing.T) {
	t.Parallel()
	owner, srv := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, owner)
	member, memberUser := coderdtest.CreateAnotherUser(t, owner)
	tmplAdmin, tmplAdminUser := coderdtest.CreateAnotherUser(t, owner, "template-admin")
	ctx := context.Background()

	setAllow := func(t *testing.T, ws database.Workspace, allow bool) {
		t.Helper()
		tmpl, err := owner.UpdateTemplateMeta(ctx, ws.TemplateID.String(), codersdk.UpdateTemplateMeta{AllowUserCancelWorkspaceJobs: &allow})
		if err != nil {
			t.Fatal(err)
		}
		if tmpl.AllowUserCancelWorkspaceJobs != allow {
			t.Fatalf("template allow_user_cancel_workspace_jobs = %v, want %v", tmpl.AllowUserCancelWorkspaceJobs, allow)
		}
	}
	forbid := func(t *testing.T, ws database.Workspace) { t.Helper(); setAllow(t, ws, false) }

	t.Run("member refused", func(t *testing.T) {
		ws, b := runningBuild(t, srv.DB, memberUser.ID)
		forbid(t, ws)
		err := member.CancelWorkspaceBuild(ctx, b.ID)
		ce, ok := codersdk.AsError(err)
		if !ok || ce.StatusCode() != http.StatusForbidden || !strings.Contains(ce.Message, "does not allow users to cancel") {
			t.Fatalf("member cancel: %v", err)
		}
		job, err := srv.DB.GetProvisionerJobByID(ctx, b.JobID)
		if err != nil {
			t.Fatal(err)
		}
		if job.CanceledAt.Valid {
			t.Fatal("the refused cancel canceled the job")
		}
		// The site owner still can.
		if err := owner.CancelWorkspaceBuild(ctx, b.ID); err != nil {
			t.Fatalf("owner cancel: %v", err)
		}
	})
	t.Run("template admin allowed", func(t *testing.T) {
		ws, b := runningBuild(t, srv.DB, tmplAdminUser.ID)
		forbid(t, ws)
		if err := tmplAdmin.CancelWorkspaceBuild(ctx, b.ID); err != nil {
			t.Fatalf("template admin cancel: %v", err)
		}
	})
	t.Run("member allowed when the template allows it", func(t *testing.T) {
		ws, b := runningBuild(t, srv.DB, memberUser.ID)
		setAllow(t, ws, true)
		if err := member.CancelWorkspaceBuild(ctx, b.ID); err != nil {
			t.Fatalf("member cancel: %v", err)
		}
	})
}
