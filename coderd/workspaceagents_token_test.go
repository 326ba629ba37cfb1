package coderd_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/database"
)

// TestAgentTokenOfSupersededOrDeletedWorkspace walks one workspace through
// its builds (in the database, as the provisioner would leave them) and
// asks coderd for the agent's manifest with the agent's token after each
// step: the token works while its agent is in the latest build (and while a
// stop/delete build that follows it is still running, so the agent can
// report its shutdown), is refused for good (agentsdk.IsTokenRevoked) once
// a later build completed without it or the workspace is deleted, and is
// refused temporarily while an unrelated newer build runs.
func TestAgentTokenOfSupersededOrDeletedWorkspace(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	ownerID := uuid.MustParse(first.UserID)
	agentID, token := insertAgent(t, e.store, ownerID)
	ctx := context.Background()

	var wsID, versionID, fileID uuid.UUID
	if err := e.pool.QueryRow(ctx, `SELECT b.workspace_id, b.template_version_id, j.file_id FROM workspace_agents a
		JOIN workspace_resources r ON r.id = a.resource_id JOIN workspace_builds b ON b.job_id = r.job_id
		JOIN provisioner_jobs j ON j.id = b.job_id WHERE a.id = $1`, agentID).Scan(&wsID, &versionID, &fileID); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	// newBuild queues build n (its job running) and returns its job ID.
	newBuild := func(n int32, transition database.WorkspaceTransition) uuid.UUID {
		t.Helper()
		job, err := e.store.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: ownerID, Provisioner: database.ProvisionerTypeTerraform,
			StorageMethod: database.ProvisionerStorageMethodFile, Type: database.ProvisionerJobTypeWorkspaceBuild,
			Input: []byte("{}"), FileID: fileID, Tags: []byte("{}"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: wsID, TemplateVersionID: versionID, BuildNumber: n,
			Transition: transition, InitiatorID: ownerID, JobID: job.ID, Reason: database.BuildReasonInitiator,
		}); err != nil {
			t.Fatal(err)
		}
		return job.ID
	}
	complete := func(job uuid.UUID) {
		t.Helper()
		if _, err := e.store.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: job, CompletedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	// want asks for the manifest and checks the outcome: "" (accepted),
	// "revoked" (permanent 401) or "pending" (temporary 401).
	want := func(step, outcome string) {
		t.Helper()
		_, err := agentsdk.New(e.url, token).Manifest(ctx)
		apiErr, isAPI := codersdk.AsError(err)
		switch outcome {
		case "":
			if err != nil {
				t.Fatalf("%s: token refused: %v", step, err)
			}
		case "revoked":
			if !agentsdk.IsTokenRevoked(err) || apiErr.Detail == "" {
				t.Fatalf("%s: want a permanent refusal with a reason, got %v", step, err)
			}
		case "pending":
			if !isAPI || apiErr.StatusCode() != http.StatusUnauthorized || apiErr.Message != agentsdk.TokenBuildPendingMessage || agentsdk.IsTokenRevoked(err) {
				t.Fatalf("%s: want a temporary 401, got %v", step, err)
			}
		}
	}

	want("agent of the only build", "")
	stop := newBuild(2, database.WorkspaceTransitionStop)
	want("stop build running (the agent reports its shutdown)", "")
	complete(stop)
	want("stop build completed", "revoked")

	start := newBuild(3, database.WorkspaceTransitionStart)
	want("start build running, agent from two builds ago", "pending")
	// The start build keeps the agent resource (same token), as Terraform does.
	res, err := e.store.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{
		ID: uuid.New(), CreatedAt: now, JobID: start, Transition: database.WorkspaceTransitionStart, Type: "null_resource", Name: "dev",
	})
	if err != nil {
		t.Fatal(err)
	}
	resID := res.ID
	if _, err := e.store.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
		ID: uuid.New(), CreatedAt: now.Add(time.Second), UpdatedAt: now, Name: "main", ResourceID: resID, AuthTokenHash: coderd.HashAgentToken(token),
		Architecture: "amd64", OperatingSystem: "linux", EnvironmentVariables: []byte("{}"), ConnectionTimeoutSeconds: 120, DisplayApps: []byte("{}"),
	}); err != nil {
		t.Fatal(err)
	}
	complete(start)
	want("restarted workspace (the new build's agent has the token)", "")

	del := newBuild(4, database.WorkspaceTransitionDelete)
	want("delete build running", "")
	complete(del)
	if err := e.store.UpdateWorkspaceDeletedByID(ctx, database.UpdateWorkspaceDeletedByIDParams{ID: wsID, Deleted: true, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	want("deleted workspace", "revoked")
	_, err = agentsdk.New(e.url, token).Manifest(ctx)
	if apiErr, _ := codersdk.AsError(err); !strings.Contains(apiErr.Detail, "deleted") {
		t.Fatalf("deleted workspace: detail %q", apiErr.Detail)
	}

	// A token nobody knows (yet) is a temporary refusal: the build that
	// creates its agent may still be running.
	_, err = agentsdk.New(e.url, uuid.NewString()).Manifest(ctx)
	if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusUnauthorized || apiErr.Message != agentsdk.TokenInvalidMessage || agentsdk.IsTokenRevoked(err) {
		t.Fatalf("unknown token: %v", err)
	}
}
