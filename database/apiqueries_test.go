package database_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// apiFixture is a template with a version and two workspaces of one owner:
// ws1 with builds 1-3 (3 pending, the others succeeded), ws2 with one
// build initiated by another user.
type apiFixture struct {
	owner, other database.User
	tmpl         database.Template
	version      database.TemplateVersion
	ws1, ws2     database.Workspace
	ws1Builds    []database.WorkspaceBuild // build numbers 1, 2, 3
	ws2Build     database.WorkspaceBuild
}

func newAPIFixture(t *testing.T, ctx context.Context, store *database.Store, now time.Time) apiFixture {
	t.Helper()
	var f apiFixture
	f.owner = insertUser(t, ctx, store, "owner", "owner@example.com")
	f.other = insertUser(t, ctx, store, "other", "other@example.com")
	file, err := store.InsertFile(ctx, database.InsertFileParams{ID: uuid.New(), Hash: "h", CreatedAt: now, CreatedBy: f.owner.ID, Mimetype: "application/x-tar", Data: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	job := func(typ database.ProvisionerJobType, done bool) database.ProvisionerJob {
		t.Helper()
		j, err := store.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: f.owner.ID, Provisioner: database.ProvisionerTypeTerraform,
			StorageMethod: database.ProvisionerStorageMethodFile, Type: typ, Input: []byte("{}"), FileID: file.ID,
			Tags: []byte(`{"scope":"organization"}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		if done {
			// As a daemon would: started, then completed.
			if _, err := store.Pool().Exec(ctx, "UPDATE provisioner_jobs SET started_at = $1 WHERE id = $2", now, j.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := store.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: j.ID, CompletedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
		return j
	}
	f.version, err = store.InsertTemplateVersion(ctx, database.InsertTemplateVersionParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "v1", JobID: job(database.ProvisionerJobTypeTemplateVersionImport, true).ID, CreatedBy: f.owner.ID})
	if err != nil {
		t.Fatal(err)
	}
	f.tmpl, err = store.InsertTemplate(ctx, database.InsertTemplateParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "tpl", Provisioner: database.ProvisionerTypeTerraform, ActiveVersionID: f.version.ID, CreatedBy: f.owner.ID})
	if err != nil {
		t.Fatal(err)
	}
	ws := func(name string) database.Workspace {
		t.Helper()
		w, err := store.InsertWorkspace(ctx, database.InsertWorkspaceParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, OwnerID: f.owner.ID, TemplateID: f.tmpl.ID, Name: name, AutomaticUpdates: "never"})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	build := func(w database.Workspace, number int32, initiator uuid.UUID, done bool) database.WorkspaceBuild {
		t.Helper()
		b, err := store.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: w.ID, TemplateVersionID: f.version.ID, BuildNumber: number,
			Transition: database.WorkspaceTransitionStart, InitiatorID: initiator, JobID: job(database.ProvisionerJobTypeWorkspaceBuild, done).ID,
			Reason: database.BuildReasonInitiator,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f.ws1, f.ws2 = ws("one"), ws("two")
	for n := int32(1); n <= 3; n++ {
		f.ws1Builds = append(f.ws1Builds, build(f.ws1, n, f.owner.ID, n < 3))
	}
	f.ws2Build = build(f.ws2, 1, f.other.ID, true)
	return f
}

func TestGetWorkspaceBuildsWithDetails(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := dbtestutil.NewStore(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	f := newAPIFixture(t, ctx, store, now)
	ids := func(rows []database.GetWorkspaceBuildsWithDetailsRow) map[uuid.UUID]bool {
		m := map[uuid.UUID]bool{}
		for _, r := range rows {
			m[r.WorkspaceBuild.ID] = true
		}
		return m
	}
	get := func(buildIDs, latestOf []uuid.UUID, liveSince time.Time) []database.GetWorkspaceBuildsWithDetailsRow {
		t.Helper()
		rows, err := store.GetWorkspaceBuildsWithDetails(ctx, database.GetWorkspaceBuildsWithDetailsParams{
			LiveSince: liveSince, BuildIds: buildIDs, LatestOf: latestOf,
		})
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}

	latest := get(nil, []uuid.UUID{f.ws1.ID, f.ws2.ID}, now)
	if got := ids(latest); len(latest) != 2 || !got[f.ws1Builds[2].ID] || !got[f.ws2Build.ID] {
		t.Fatalf("latest builds = %v, want build 3 of one and the build of two", got)
	}
	for _, r := range latest {
		if r.TemplateVersionName != "v1" || r.OwnerUsername != "owner" || r.Template.ID != f.tmpl.ID || r.ProvisionerJob.ID != r.WorkspaceBuild.JobID {
			t.Errorf("details of %s = %+v", r.WorkspaceBuild.ID, r)
		}
		want := "owner"
		if r.WorkspaceBuild.WorkspaceID == f.ws2.ID {
			want = "other"
		}
		if r.InitiatorUsername != want {
			t.Errorf("initiator of %s = %q, want %q", r.WorkspaceBuild.ID, r.InitiatorUsername, want)
		}
	}

	// Named builds and a latest build together, newest first.
	rows := get([]uuid.UUID{f.ws1Builds[0].ID}, []uuid.UUID{f.ws1.ID}, now)
	if len(rows) != 2 || rows[0].WorkspaceBuild.BuildNumber != 3 || rows[1].WorkspaceBuild.BuildNumber != 1 {
		t.Fatalf("builds 1 + latest = %+v", rows)
	}
	// The pending build's job has queue figures; the succeeded one none.
	if rows[0].QueuePosition != 1 || rows[0].QueueSize != 1 || rows[0].LiveDaemons != 0 || rows[1].QueuePosition != 0 || rows[1].QueueSize != 0 {
		t.Fatalf("queue figures = %+v / %+v", rows[0], rows[1])
	}
	// A daemon with the job's tags counts while it is live.
	if _, err := store.UpsertProvisionerDaemon(ctx, database.UpsertProvisionerDaemonParams{
		ID: uuid.New(), CreatedAt: now, Name: "d", Provisioners: []string{"terraform"},
		Tags: []byte(`{"scope":"organization","extra":"x"}`), LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
	}); err != nil {
		t.Fatal(err)
	}
	if rows := get(nil, []uuid.UUID{f.ws1.ID}, now.Add(-time.Minute)); rows[0].LiveDaemons != 1 {
		t.Fatalf("live daemons = %d, want 1", rows[0].LiveDaemons)
	}
	if rows := get(nil, []uuid.UUID{f.ws1.ID}, now.Add(time.Second)); rows[0].LiveDaemons != 0 {
		t.Fatalf("live daemons after the window = %d, want 0", rows[0].LiveDaemons)
	}
	if rows := get(nil, nil, now); len(rows) != 0 {
		t.Fatalf("no IDs: %d rows", len(rows))
	}
}

func TestGetResourceTree(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := dbtestutil.NewStore(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	f := newAPIFixture(t, ctx, store, now)
	job := f.ws2Build.JobID
	resource := func(name string) database.WorkspaceResource {
		t.Helper()
		r, err := store.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{ID: uuid.New(), CreatedAt: now, JobID: job, Transition: database.WorkspaceTransitionStart, Type: "t", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	withMD, bare := resource("a"), resource("b")
	for _, key := range []string{"k1", "k2"} {
		if _, err := store.InsertWorkspaceResourceMetadata(ctx, database.InsertWorkspaceResourceMetadataParams{WorkspaceResourceID: withMD.ID, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := store.GetWorkspaceResourcesWithMetadataByJobIDs(ctx, []uuid.UUID{job, f.ws1Builds[0].JobID})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].WorkspaceResource.ID != withMD.ID || res[0].MetadataKey.String != "k1" || res[1].MetadataKey.String != "k2" ||
		res[2].WorkspaceResource.ID != bare.ID || res[2].MetadataID.Valid {
		t.Fatalf("resources with metadata = %+v", res)
	}

	agent := func(name string, r database.WorkspaceResource) database.WorkspaceAgent {
		t.Helper()
		a, err := store.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: name, ResourceID: r.ID, AuthTokenHash: []byte(name),
			Architecture: "amd64", OperatingSystem: "linux", DisplayApps: []byte("{}"),
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	scripted, plain := agent("a", withMD), agent("b", bare)
	src := uuid.New()
	if _, err := store.InsertWorkspaceAgentLogSources(ctx, database.InsertWorkspaceAgentLogSourcesParams{WorkspaceAgentID: scripted.ID, CreatedAt: now, ID: []uuid.UUID{src}, DisplayName: []string{"s"}, Icon: []string{""}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.InsertWorkspaceAgentScripts(ctx, database.InsertWorkspaceAgentScriptsParams{
		WorkspaceAgentID: scripted.ID, CreatedAt: now, ID: []uuid.UUID{uuid.New(), uuid.New()}, LogSourceID: []uuid.UUID{src, src},
		LogPath: []string{"", ""}, Script: []string{"one", "two"}, Cron: []string{"", ""}, StartBlocksLogin: []bool{true, false},
		RunOnStart: []bool{true, false}, RunOnStop: []bool{false, true}, TimeoutSeconds: []int32{5, 0}, DisplayName: []string{"1", "2"},
	}); err != nil {
		t.Fatal(err)
	}
	agents, err := store.GetWorkspaceAgentsWithScriptsByResourceIDs(ctx, []uuid.UUID{withMD.ID, bare.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 3 || agents[0].WorkspaceAgent.ID != scripted.ID || agents[1].WorkspaceAgent.ID != scripted.ID ||
		!agents[0].ScriptID.Valid || !agents[1].ScriptID.Valid || agents[0].ScriptID == agents[1].ScriptID ||
		agents[2].WorkspaceAgent.ID != plain.ID || agents[2].ScriptID.Valid {
		t.Fatalf("agents with scripts = %+v", agents)
	}
}

func TestGetByIDsForTemplates(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := dbtestutil.NewStore(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	f := newAPIFixture(t, ctx, store, now)
	users, err := store.GetUsersByIDs(ctx, []uuid.UUID{f.owner.ID, f.other.ID, uuid.New()})
	if err != nil || len(users) != 2 {
		t.Fatalf("users by IDs = %+v, %v", users, err)
	}
	if err := store.UpdateWorkspaceDeletedByID(ctx, database.UpdateWorkspaceDeletedByIDParams{ID: f.ws2.ID, Deleted: true, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	counts, err := store.GetWorkspaceCountsByTemplateIDs(ctx, []uuid.UUID{f.tmpl.ID, uuid.New()})
	if err != nil || len(counts) != 1 || counts[0].TemplateID != f.tmpl.ID || counts[0].WorkspaceCount != 1 {
		t.Fatalf("workspace counts = %+v, %v (the deleted workspace does not count; a template without any is absent)", counts, err)
	}
	jobs, err := store.GetProvisionerJobsWithQueueByIDs(ctx, database.GetProvisionerJobsWithQueueByIDsParams{
		LiveSince: now, Ids: []uuid.UUID{f.version.JobID, f.ws1Builds[2].JobID},
	})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("jobs = %+v, %v", jobs, err)
	}
	for _, j := range jobs {
		pending := j.ProvisionerJob.ID == f.ws1Builds[2].JobID
		if pending != (j.QueuePosition == 1 && j.QueueSize == 1) {
			t.Errorf("job %s queue = %d of %d", j.ProvisionerJob.ID, j.QueuePosition, j.QueueSize)
		}
	}
}
