package coderd_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// maxHandlerQueries bounds the queries a workspace read may run besides
// authentication's, whatever the number of workspaces.
const maxHandlerQueries = 7

// TestWorkspaceQueryCount counts the database queries of the workspace
// reads with one workspace and with fifty (each with a build, a resource
// with metadata, an agent with a script and two apps; every other build
// still pending): each read runs the same queries for both, at most
// maxHandlerQueries of them besides the authentication of the request.
func TestWorkspaceQueryCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := &coderdtest.QueryRecorder{}
	// A fixed clock keeps authentication from refreshing the key's last use
	// between requests, so it runs the same queries for every request.
	now := time.Now().UTC().Truncate(time.Microsecond)
	client, srv := coderdtest.New(t, &coderdtest.Options{
		QueryTracer: rec,
		API:         coderd.Options{Now: func() time.Time { return now }},
	})
	first := coderdtest.CreateFirstUser(t, client)
	ownerID := uuid.MustParse(first.UserID)

	measure := func(call func() error) []string {
		t.Helper()
		rec.Take()
		if err := call(); err != nil {
			t.Fatal(err)
		}
		return rec.Take()
	}
	// GET /users/me runs authentication's queries and nothing else.
	auth := measure(func() error { _, err := client.User(ctx, codersdk.Me); return err })
	if len(auth) == 0 {
		t.Fatal("no queries recorded for an authenticated request: is the recorder attached?")
	}
	handlerQueries := func(names []string) []string {
		t.Helper()
		if len(names) < len(auth) || !slices.Equal(names[:len(auth)], auth) {
			t.Fatalf("queries %v do not start with authentication's %v", names, auth)
		}
		return names[len(auth):]
	}

	type read struct {
		name string
		call func() error
	}
	var workspaces []database.Workspace
	var list codersdk.WorkspacesResponse
	reads := func() []read {
		ws := workspaces[0]
		return []read{
			{"GET /workspaces/{workspace}", func() error { _, err := client.Workspace(ctx, ws.ID); return err }},
			{"GET /users/{username}/workspace/{name}", func() error {
				_, err := client.WorkspaceByOwnerAndName(ctx, first.Username, ws.Name)
				return err
			}},
			{"GET /users/me/workspace/{name}", func() error {
				_, err := client.WorkspaceByOwnerAndName(ctx, codersdk.Me, ws.Name)
				return err
			}},
			{"GET /workspaces", func() error { var err error; list, err = client.Workspaces(ctx, ""); return err }},
			{"GET /templates", func() error { _, err := client.Templates(ctx); return err }},
		}
	}
	counts := map[string][][]string{}
	for _, n := range []int{1, 50} {
		for len(workspaces) < n {
			workspaces = append(workspaces, insertCountedWorkspace(t, srv.DB, ownerID, now, len(workspaces)))
		}
		for _, rd := range reads() {
			q := handlerQueries(measure(rd.call))
			t.Logf("%d workspaces: %s runs %d queries besides authentication's %v: %v", n, rd.name, len(q), auth, q)
			if len(q) > maxHandlerQueries {
				t.Errorf("%d workspaces: %s runs %d queries, want at most %d: %v", n, rd.name, len(q), maxHandlerQueries, q)
			}
			counts[rd.name] = append(counts[rd.name], q)
		}
		checkCountedList(t, list, workspaces)
	}
	for name, qs := range counts {
		if !slices.Equal(qs[0], qs[1]) {
			t.Errorf("%s: queries differ between 1 and 50 workspaces:\n  %v\n  %v", name, qs[0], qs[1])
		}
	}
}

// insertCountedWorkspace stores a workspace of its own template with one
// build (pending for even i, succeeded for odd i) whose resource has two
// metadata items (one sensitive) and an agent with a script and two apps.
func insertCountedWorkspace(t *testing.T, db *database.Store, ownerID uuid.UUID, now time.Time, i int) database.Workspace {
	t.Helper()
	ctx := context.Background()
	var ws database.Workspace
	err := db.InTx(ctx, func(q *database.Queries) error {
		file, err := q.InsertFile(ctx, database.InsertFileParams{ID: uuid.New(), Hash: uuid.NewString(), CreatedAt: now, CreatedBy: ownerID, Mimetype: "application/x-tar", Data: []byte{}})
		if err != nil {
			return err
		}
		newJob := func(typ database.ProvisionerJobType) (database.ProvisionerJob, error) {
			return q.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
				ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: ownerID, Provisioner: database.ProvisionerTypeTerraform,
				StorageMethod: database.ProvisionerStorageMethodFile, Type: typ, Input: []byte("{}"), FileID: file.ID, Tags: []byte(`{"scope":"organization"}`),
			})
		}
		importJob, err := newJob(database.ProvisionerJobTypeTemplateVersionImport)
		if err != nil {
			return err
		}
		if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: importJob.ID, CompletedAt: now}); err != nil {
			return err
		}
		buildJob, err := newJob(database.ProvisionerJobTypeWorkspaceBuild)
		if err != nil {
			return err
		}
		if i%2 == 1 {
			if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: buildJob.ID, CompletedAt: now}); err != nil {
				return err
			}
		}
		tv, err := q.InsertTemplateVersion(ctx, database.InsertTemplateVersionParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "v1", JobID: importJob.ID, CreatedBy: ownerID})
		if err != nil {
			return err
		}
		tpl, err := q.InsertTemplate(ctx, database.InsertTemplateParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: fmt.Sprintf("tpl-%d", i), Provisioner: database.ProvisionerTypeTerraform, ActiveVersionID: tv.ID, CreatedBy: ownerID})
		if err != nil {
			return err
		}
		ws, err = q.InsertWorkspace(ctx, database.InsertWorkspaceParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, OwnerID: ownerID, TemplateID: tpl.ID, Name: fmt.Sprintf("ws-%d", i), AutomaticUpdates: "never"})
		if err != nil {
			return err
		}
		if _, err := q.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: ws.ID, TemplateVersionID: tv.ID, BuildNumber: 1, Transition: database.WorkspaceTransitionStart, InitiatorID: ownerID, JobID: buildJob.ID, Reason: database.BuildReasonInitiator}); err != nil {
			return err
		}
		res, err := q.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{ID: uuid.New(), CreatedAt: now, JobID: buildJob.ID, Transition: database.WorkspaceTransitionStart, Type: "docker_container", Name: "dev"})
		if err != nil {
			return err
		}
		for _, md := range []database.InsertWorkspaceResourceMetadataParams{
			{WorkspaceResourceID: res.ID, Key: "image", Value: pgtype.Text{String: "ubuntu", Valid: true}},
			{WorkspaceResourceID: res.ID, Key: "password", Value: pgtype.Text{String: "hunter2", Valid: true}, Sensitive: true},
		} {
			if _, err := q.InsertWorkspaceResourceMetadata(ctx, md); err != nil {
				return err
			}
		}
		ag, err := q.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "main", ResourceID: res.ID, AuthTokenHash: coderd.HashAgentToken(uuid.NewString()),
			Architecture: "amd64", OperatingSystem: "linux", ConnectionTimeoutSeconds: 120, DisplayApps: []byte("{}"),
		})
		if err != nil {
			return err
		}
		for j, slug := range []string{"code", "web"} {
			if _, err := q.InsertWorkspaceApp(ctx, database.InsertWorkspaceAppParams{
				ID: uuid.New(), CreatedAt: now, AgentID: ag.ID, Slug: slug, DisplayName: slug,
				Url: pgtype.Text{String: fmt.Sprintf("http://localhost:%d", 8080+j), Valid: true}, SharingLevel: database.AppSharingLevelOwner,
				Health: database.WorkspaceAppHealthDisabled, DisplayOrder: int32(j), OpenIn: "slim-window",
			}); err != nil {
				return err
			}
		}
		src := uuid.New()
		if _, err := q.InsertWorkspaceAgentLogSources(ctx, database.InsertWorkspaceAgentLogSourcesParams{
			WorkspaceAgentID: ag.ID, CreatedAt: now, ID: []uuid.UUID{src}, DisplayName: []string{"Startup"}, Icon: []string{""},
		}); err != nil {
			return err
		}
		_, err = q.InsertWorkspaceAgentScripts(ctx, database.InsertWorkspaceAgentScriptsParams{
			WorkspaceAgentID: ag.ID, CreatedAt: now, ID: []uuid.UUID{uuid.New()}, LogSourceID: []uuid.UUID{src}, LogPath: []string{""},
			Script: []string{"echo hi"}, Cron: []string{""}, StartBlocksLogin: []bool{true}, RunOnStart: []bool{true},
			RunOnStop: []bool{false}, TimeoutSeconds: []int32{0}, DisplayName: []string{"Startup"},
		})
		return err
	})
	if err != nil {
		t.Fatalf("insert workspace %d: %v", i, err)
	}
	return ws
}

// checkCountedList checks that the list of workspaces inserted by
// insertCountedWorkspace assembled every workspace from its own rows.
func checkCountedList(t *testing.T, list codersdk.WorkspacesResponse, want []database.Workspace) {
	t.Helper()
	if list.Count != len(want) || len(list.Workspaces) != len(want) {
		t.Fatalf("listed %d (count %d) workspaces, want %d", len(list.Workspaces), list.Count, len(want))
	}
	for _, ws := range list.Workspaces {
		var i int
		if _, err := fmt.Sscanf(ws.Name, "ws-%d", &i); err != nil {
			t.Fatalf("unexpected workspace %q", ws.Name)
		}
		b := ws.LatestBuild
		if ws.TemplateName != fmt.Sprintf("tpl-%d", i) || b.WorkspaceID != ws.ID || b.TemplateVersionName != "v1" ||
			b.InitiatorUsername != "owner" || b.WorkspaceOwnerName != "owner" || ws.OwnerName != "owner" || ws.Outdated {
			t.Errorf("%s: workspace %+v", ws.Name, ws)
		}
		wantStatus := codersdk.WorkspaceStatusPending
		if i%2 == 1 {
			wantStatus = codersdk.WorkspaceStatusRunning
		}
		if b.Status != wantStatus || (wantStatus == codersdk.WorkspaceStatusPending) != (b.Job.QueuePosition > 0) {
			t.Errorf("%s: status %s queue position %d, want %s", ws.Name, b.Status, b.Job.QueuePosition, wantStatus)
		}
		if len(b.Resources) != 1 || len(b.Resources[0].Agents) != 1 || len(b.Resources[0].Metadata) != 2 {
			t.Fatalf("%s: resources %+v", ws.Name, b.Resources)
		}
		res, agent := b.Resources[0], b.Resources[0].Agents[0]
		if res.JobID != b.Job.ID || res.Metadata[1].Value != "" || agent.ResourceID != res.ID || agent.WorkspaceID != ws.ID {
			t.Errorf("%s: resource %+v agent workspace %s", ws.Name, res, agent.WorkspaceID)
		}
		var slugs []string
		for _, app := range agent.Apps {
			slugs = append(slugs, app.Slug)
		}
		if strings.Join(slugs, ",") != "code,web" || len(agent.Scripts) != 1 || agent.StartupScriptBehavior != "blocking" {
			t.Errorf("%s: apps %v scripts %+v", ws.Name, slugs, agent.Scripts)
		}
	}
}
