package database_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// TestProvisioningQueries exercises the provisioning schema: job acquisition by
// tag subset, job logs, and an agent stored with a hashed token.
func TestProvisioningQueries(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	store := dbtestutil.NewStore(t)
	user := insertUser(t, ctx, store, "prov", "prov@example.com")
	now := time.Now().UTC().Truncate(time.Microsecond)

	file, err := store.InsertFile(ctx, database.InsertFileParams{
		ID: uuid.New(), Hash: "abc", CreatedAt: now, CreatedBy: user.ID, Mimetype: "application/x-tar", Data: []byte("tar"),
	})
	if err != nil {
		t.Fatalf("insert file: %v", err)
	}
	insertJob := func(tags string, at time.Time) database.ProvisionerJob {
		t.Helper()
		job, err := store.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: at, UpdatedAt: at, InitiatorID: user.ID,
			Provisioner: database.ProvisionerTypeTerraform, StorageMethod: database.ProvisionerStorageMethodFile,
			Type: database.ProvisionerJobTypeTemplateVersionImport, Input: []byte(`{}`), FileID: file.ID, Tags: []byte(tags),
		})
		if err != nil {
			t.Fatalf("insert job: %v", err)
		}
		return job
	}
	tofuJob := insertJob(`{"scope":"organization","flavour":"tofu"}`, now)
	plainJob := insertJob(`{"scope":"organization"}`, now.Add(time.Second))

	daemon, err := store.UpsertProvisionerDaemon(ctx, database.UpsertProvisionerDaemonParams{
		ID: uuid.New(), CreatedAt: now, Name: "d1", Provisioners: []string{"terraform"},
		Tags: []byte(`{"scope":"organization"}`), LastSeenAt: pgtype.Timestamptz{Time: now, Valid: true},
	})
	if err != nil {
		t.Fatalf("upsert daemon: %v", err)
	}
	acquire := func(tags string) (database.ProvisionerJob, error) {
		return store.AcquireProvisionerJob(ctx, database.AcquireProvisionerJobParams{
			StartedAt: pgtype.Timestamptz{Time: now, Valid: true},
			WorkerID:  uuid.NullUUID{UUID: daemon.ID, Valid: true},
			Types:     []string{"terraform"},
			Tags:      []byte(tags),
		})
	}
	got, err := acquire(`{"scope":"organization"}`)
	if err != nil || got.ID != plainJob.ID {
		t.Fatalf("acquire plain = %v, %v; want %v (the tofu job needs a tag the daemon lacks)", got.ID, err, plainJob.ID)
	}
	if _, err := acquire(`{"scope":"organization"}`); !database.IsNotFound(err) {
		t.Fatalf("second acquire: %v, want not found", err)
	}
	queued, err := store.GetProvisionerJobsWithQueueByIDs(ctx, database.GetProvisionerJobsWithQueueByIDsParams{
		LiveSince: now.Add(-time.Minute), Ids: []uuid.UUID{tofuJob.ID, plainJob.ID},
	})
	if err != nil || len(queued) != 2 {
		t.Fatalf("jobs with queue = %+v, %v", queued, err)
	}
	for _, q := range queued {
		switch q.ProvisionerJob.ID {
		case tofuJob.ID: // pending; the only daemon lacks its flavour tag
			if q.QueuePosition != 1 || q.QueueSize != 1 || q.LiveDaemons != 0 {
				t.Fatalf("pending tofu job queue = %+v", q)
			}
		case plainJob.ID: // running: no queue figures
			if q.QueuePosition != 0 || q.QueueSize != 0 || q.LiveDaemons != 0 {
				t.Fatalf("running job queue = %+v", q)
			}
		}
	}
	got, err = acquire(`{"scope":"organization","flavour":"tofu","extra":"x"}`)
	if err != nil || got.ID != tofuJob.ID {
		t.Fatalf("acquire tofu = %v, %v", got.ID, err)
	}

	logs, err := store.InsertProvisionerJobLogs(ctx, database.InsertProvisionerJobLogsParams{
		JobID: got.ID, CreatedAt: []time.Time{now, now}, Source: []string{"provisioner", "provisioner_daemon"},
		Level: []string{"info", "error"}, Stage: []string{"Planning", "Planning"}, Output: []string{"a", "b"},
	})
	if err != nil || len(logs) != 2 || logs[1].Level != database.LogLevelError {
		t.Fatalf("insert logs = %+v, %v", logs, err)
	}
	after, err := store.GetProvisionerLogsAfterID(ctx, database.GetProvisionerLogsAfterIDParams{JobID: got.ID, CreatedAfter: logs[0].ID})
	if err != nil || len(after) != 1 || after[0].Output != "b" {
		t.Fatalf("logs after = %+v, %v", after, err)
	}

	res, err := store.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{
		ID: uuid.New(), CreatedAt: now, JobID: got.ID, Transition: database.WorkspaceTransitionStart, Type: "terraform_data", Name: "agent",
	})
	if err != nil {
		t.Fatalf("insert resource: %v", err)
	}
	hash := sha256.Sum256([]byte(uuid.NewString()))
	agent, err := store.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
		ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "main", ResourceID: res.ID, AuthTokenHash: hash[:],
		Architecture: "amd64", OperatingSystem: "linux", DisplayApps: []byte(`{}`),
	})
	if err != nil || agent.LifecycleState != database.WorkspaceAgentLifecycleStateCreated {
		t.Fatalf("insert agent = %+v, %v", agent, err)
	}
	byHash, err := store.GetWorkspaceAgentByAuthTokenHash(ctx, hash[:])
	if err != nil || byHash.ID != agent.ID {
		t.Fatalf("agent by hash = %v, %v", byHash.ID, err)
	}
	src := uuid.New()
	if _, err := store.InsertWorkspaceAgentLogSources(ctx, database.InsertWorkspaceAgentLogSourcesParams{
		WorkspaceAgentID: agent.ID, CreatedAt: now, ID: []uuid.UUID{src}, DisplayName: []string{"Startup"}, Icon: []string{""},
	}); err != nil {
		t.Fatalf("insert log sources: %v", err)
	}
	if _, err := store.InsertWorkspaceAgentLogs(ctx, database.InsertWorkspaceAgentLogsParams{
		AgentID: agent.ID, CreatedAt: []time.Time{now}, Output: []string{"hello"}, Level: []string{"info"}, LogSourceID: src,
	}); err != nil {
		t.Fatalf("insert agent logs: %v", err)
	}
	if err := store.InsertWorkspaceAgentMetadata(ctx, database.InsertWorkspaceAgentMetadataParams{
		WorkspaceAgentID: agent.ID, DisplayName: "Load", Key: "load", Script: "uptime", Timeout: 1, Interval: 10,
	}); err != nil {
		t.Fatalf("insert metadata: %v", err)
	}
	if err := store.UpdateWorkspaceAgentMetadata(ctx, database.UpdateWorkspaceAgentMetadataParams{
		WorkspaceAgentID: agent.ID, Key: []string{"load"}, Value: []string{"0.1"}, Error: []string{""}, CollectedAt: []time.Time{now},
	}); err != nil {
		t.Fatalf("update metadata: %v", err)
	}
	md, err := store.GetWorkspaceAgentMetadata(ctx, agent.ID)
	if err != nil || len(md) != 1 || md[0].Value != "0.1" {
		t.Fatalf("metadata = %+v, %v", md, err)
	}
}
