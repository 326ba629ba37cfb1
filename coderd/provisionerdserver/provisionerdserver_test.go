package provisionerdserver_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/provisionerdserver"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
)

const testPSK = "server-test-psk"

// clock is a settable time source for the Server.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a Server on a fresh database, served over HTTP.
type env struct {
	t      *testing.T
	store  *database.Store
	srv    *provisionerdserver.Server
	clock  *clock
	url    *url.URL
	userID uuid.UUID
	fileID uuid.UUID
}

const heartbeatTimeout = 30 * time.Second

func newEnv(t *testing.T) *env {
	t.Helper()
	store := database.NewStore(dbtestutil.NewPool(t))
	clk := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	access, _ := url.Parse("http://coder.test")
	srv, err := provisionerdserver.New(provisionerdserver.Options{
		Database: store, AccessURL: access, PSK: testPSK,
		HeartbeatTimeout: heartbeatTimeout, AcquireWait: 200 * time.Millisecond, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Route("/api/v2/provisionerdaemons", srv.Routes)
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	u, _ := url.Parse(hs.URL)

	ctx := context.Background()
	now := clk.Now()
	user, err := store.InsertUser(ctx, database.InsertUserParams{
		ID: uuid.New(), Email: "owner@coder.test", Username: "owner", Name: "Owner", HashedPassword: []byte("x"),
		CreatedAt: now, UpdatedAt: now, Status: database.UserStatusActive, RbacRoles: []string{"owner"},
		LoginType: database.LoginTypePassword, LastSeenAt: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	file, err := store.InsertFile(ctx, database.InsertFileParams{
		ID: uuid.New(), Hash: "h", CreatedAt: now, CreatedBy: user.ID, Mimetype: codersdk.ContentTypeTar, Data: []byte("archive"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, store: store, srv: srv, clock: clk, url: u, userID: user.ID, fileID: file.ID}
}

func (e *env) client(psk string) *provisionersdk.Client {
	return &provisionersdk.Client{URL: e.url, PSK: psk}
}

func (e *env) register(name string, tags map[string]string) uuid.UUID {
	e.t.Helper()
	reg, err := e.client(testPSK).Register(context.Background(), provisionersdk.RegisterRequest{Name: name, Tags: tags})
	if err != nil {
		e.t.Fatalf("register %s: %v", name, err)
	}
	return reg.ID
}

// queueImport queues a template version import with tags, as coderd does.
func (e *env) queueImport(tags map[string]string) uuid.UUID {
	e.t.Helper()
	ctx := context.Background()
	if tags == nil {
		tags = map[string]string{}
	}
	tags["scope"] = "organization"
	rawTags, _ := json.Marshal(tags)
	versionID := uuid.New()
	input, _ := json.Marshal(provisionerdserver.JobInput{TemplateVersionID: versionID})
	e.clock.advance(time.Millisecond) // distinct created_at: FIFO order
	now := e.clock.Now()
	job, err := e.store.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
		ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: e.userID,
		Provisioner: database.ProvisionerTypeTerraform, StorageMethod: database.ProvisionerStorageMethodFile,
		Type: database.ProvisionerJobTypeTemplateVersionImport, Input: input, FileID: e.fileID, Tags: rawTags,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.InsertTemplateVersion(ctx, database.InsertTemplateVersionParams{
		ID: versionID, CreatedAt: now, UpdatedAt: now, Name: "v-" + versionID.String()[:8], JobID: job.ID, CreatedBy: e.userID,
	}); err != nil {
		e.t.Fatal(err)
	}
	e.srv.NotifyJobs()
	return job.ID
}

func (e *env) job(id uuid.UUID) database.ProvisionerJob {
	e.t.Helper()
	j, err := e.store.GetProvisionerJobByID(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func statusOf(err error) int {
	var apiErr *codersdk.Error
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode()
	}
	return 0
}

// TestAcquireEachJobOnce: daemons racing for the queue each get distinct
// jobs, every job is handed out exactly once, and a job whose tags no daemon
// has is never handed out.
func TestAcquireEachJobOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const jobs, daemons = 12, 4
	want := map[uuid.UUID]bool{}
	for i := 0; i < jobs; i++ {
		want[e.queueImport(nil)] = true
	}
	unmatched := e.queueImport(map[string]string{"pool": "gpu"})

	var mu sync.Mutex
	got := map[uuid.UUID]uuid.UUID{} // job -> daemon
	var dup []uuid.UUID
	var wg sync.WaitGroup
	errs := make(chan error, daemons)
	for i := 0; i < daemons; i++ {
		id := e.register("racer-"+string(rune('a'+i)), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client(testPSK)
			for {
				job, err := c.AcquireJob(context.Background(), id)
				if err != nil {
					errs <- err
					return
				}
				if job == nil {
					return // the long poll ended without a job: the queue is drained
				}
				mu.Lock()
				if _, seen := got[job.JobID]; seen {
					dup = append(dup, job.JobID)
				}
				got[job.JobID] = id
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("acquire: %v", err)
	}
	if len(dup) > 0 {
		t.Fatalf("jobs handed out twice: %v", dup)
	}
	if len(got) != jobs {
		t.Fatalf("acquired %d jobs, want %d", len(got), jobs)
	}
	for id, daemon := range got {
		if !want[id] {
			t.Errorf("acquired unexpected job %s", id)
		}
		if j := e.job(id); !j.StartedAt.Valid || j.WorkerID.UUID != daemon {
			t.Errorf("job %s: started %v worker %s, want started on %s", id, j.StartedAt.Valid, j.WorkerID.UUID, daemon)
		}
	}
	if j := e.job(unmatched); j.StartedAt.Valid {
		t.Fatal("the pool=gpu job was acquired by a daemon without that tag")
	}
}

// TestForeignDaemonCannotTouchJob: a second daemon (same PSK) can neither log
// to, heartbeat, complete nor fail a job running on another daemon; a job
// completes once, and reports after that are refused.
func TestForeignDaemonCannotTouchJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	owner := e.register("owner", nil)
	intruder := e.register("intruder", nil)
	jobID := e.queueImport(nil)
	c := e.client(testPSK)
	job, err := c.AcquireJob(ctx, owner)
	if err != nil || job == nil || job.JobID != jobID {
		t.Fatalf("acquire = %+v, %v", job, err)
	}
	if job.TemplateImport == nil || job.TemplateImport.Metadata.CoderURL != "http://coder.test" || job.TemplateImport.Metadata.WorkspaceOwner != "owner" {
		t.Fatalf("import payload = %+v", job.TemplateImport)
	}

	attempts := map[string]error{
		"logs":      c.SendLogs(ctx, intruder, provisionersdk.LogsRequest{JobID: jobID, Logs: []provisionersdk.Log{{Output: "forged"}}}),
		"complete":  c.CompleteJob(ctx, intruder, provisionersdk.CompletedJob{JobID: jobID}),
		"fail":      c.FailJob(ctx, intruder, provisionersdk.FailedJob{JobID: jobID, Error: "forged"}),
		"heartbeat": func() error { _, err := c.Heartbeat(ctx, intruder, jobID); return err }(),
	}
	for what, err := range attempts {
		if statusOf(err) != http.StatusForbidden {
			t.Errorf("intruder %s: %v, want 403", what, err)
		}
	}
	if j := e.job(jobID); j.CompletedAt.Valid {
		t.Fatal("the intruder ended the job")
	}
	logs, err := e.store.GetProvisionerLogsAfterID(ctx, database.GetProvisionerLogsAfterIDParams{JobID: jobID})
	if err != nil || len(logs) != 0 {
		t.Fatalf("logs after intrusion = %v, %v; want none", logs, err)
	}
	// A wrong key is refused before anything else.
	if _, err := e.client("wrong").AcquireJob(ctx, owner); statusOf(err) != http.StatusUnauthorized {
		t.Fatalf("acquire with a wrong PSK: %v, want 401", err)
	}

	if err := c.CompleteJob(ctx, owner, provisionersdk.CompletedJob{JobID: jobID}); err != nil {
		t.Fatal(err)
	}
	if err := c.CompleteJob(ctx, owner, provisionersdk.CompletedJob{JobID: jobID}); statusOf(err) != http.StatusConflict {
		t.Fatalf("second completion: %v, want 409", err)
	}
	if err := c.FailJob(ctx, owner, provisionersdk.FailedJob{JobID: jobID, Error: "late"}); statusOf(err) != http.StatusConflict {
		t.Fatalf("fail after completion: %v, want 409", err)
	}
	if j := e.job(jobID); !j.CompletedAt.Valid || j.Error.Valid {
		t.Fatalf("job after completion: completed %v error %q", j.CompletedAt.Valid, j.Error.String)
	}
}

// TestCompleteStoresResources: an import's resources, agents, scripts, apps,
// metadata and parameters are stored; the agent token only as its SHA-256.
func TestCompleteStoresResources(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	daemon := e.register("d", nil)
	jobID := e.queueImport(nil)
	c := e.client(testPSK)
	if job, err := c.AcquireJob(ctx, daemon); err != nil || job == nil {
		t.Fatalf("acquire = %+v, %v", job, err)
	}
	const token = "4a7a6bd2-agent-token"
	lo := int32(1)
	done := provisionersdk.CompletedJob{
		JobID: jobID,
		Resources: []provisionersdk.Resource{{
			Name: "dev", Type: "null_resource", Icon: "/icon.svg", DailyCost: 7,
			Metadata: []provisionersdk.ResourceMetadata{
				{WorkspaceResourceMetadata: codersdk.WorkspaceResourceMetadata{Key: "region", Value: "eu"}},
				{WorkspaceResourceMetadata: codersdk.WorkspaceResourceMetadata{Key: "gone"}, IsNull: true},
			},
			Agents: []provisionersdk.Agent{{
				Name: "main", Token: token, OperatingSystem: "linux", Architecture: "amd64",
				Env:     map[string]string{"A": "1"},
				Scripts: []provisionersdk.AgentScript{{DisplayName: "Startup Script", Script: "echo hi", RunOnStart: true}},
				Apps: []provisionersdk.App{
					{Slug: "web", DisplayName: "Web", URL: "http://localhost:8080", SharingLevel: provisionersdk.AppSharingLevelAuthenticated,
						Healthcheck: &codersdk.Healthcheck{URL: "http://localhost:8080/healthz", Interval: 5, Threshold: 3}},
					{Slug: "bogus", SharingLevel: "everyone"},
				},
				Metadata: []provisionersdk.AgentMetadata{{WorkspaceAgentMetadataDescription: codersdk.WorkspaceAgentMetadataDescription{Key: "load", Script: "uptime", Interval: 10, Timeout: 1}}},
			}},
		}},
		Parameters: []provisionersdk.RichParameter{{
			TemplateVersionParameter: codersdk.TemplateVersionParameter{
				Name: "size", Type: "number", DefaultValue: "2", ValidationMin: &lo,
				Options: []codersdk.TemplateVersionParameterOption{{Name: "Two", Value: "2"}},
			},
		}},
	}
	if err := c.CompleteJob(ctx, daemon, done); err != nil {
		t.Fatal(err)
	}

	res, err := e.store.GetWorkspaceResourcesByJobID(ctx, jobID)
	if err != nil || len(res) != 1 || res[0].Name != "dev" || res[0].DailyCost != 7 || res[0].Transition != database.WorkspaceTransitionStart {
		t.Fatalf("resources = %+v, %v", res, err)
	}
	md, err := e.store.GetWorkspaceResourceMetadataByResourceIDs(ctx, []uuid.UUID{res[0].ID})
	if err != nil || len(md) != 2 {
		t.Fatalf("resource metadata = %+v, %v", md, err)
	}
	sort.Slice(md, func(i, j int) bool { return md[i].Key < md[j].Key })
	if md[0].Key != "gone" || md[0].Value.Valid || md[1].Value.String != "eu" {
		t.Fatalf("resource metadata = %+v (null must stay null)", md)
	}

	sum := sha256.Sum256([]byte(token))
	agent, err := e.store.GetWorkspaceAgentByAuthTokenHash(ctx, sum[:])
	if err != nil || agent.Name != "main" || agent.ResourceID != res[0].ID {
		t.Fatalf("agent by token hash = %+v, %v", agent, err)
	}
	if strings.Contains(string(agent.AuthTokenHash), token) {
		t.Fatal("the agent token is stored in clear")
	}
	scripts, err := e.store.GetWorkspaceAgentScriptsByAgentIDs(ctx, []uuid.UUID{agent.ID})
	if err != nil || len(scripts) != 1 || scripts[0].Script != "echo hi" || !scripts[0].RunOnStart {
		t.Fatalf("scripts = %+v, %v", scripts, err)
	}
	apps, err := e.store.GetWorkspaceAppsByAgentID(ctx, agent.ID)
	if err != nil || len(apps) != 2 {
		t.Fatalf("apps = %+v, %v", apps, err)
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Slug < apps[j].Slug })
	if apps[0].Slug != "bogus" || apps[0].SharingLevel != database.AppSharingLevelOwner || apps[0].Health != database.WorkspaceAppHealthDisabled {
		t.Errorf("app with an unknown sharing level = %+v; want owner-only, no health check", apps[0])
	}
	if apps[1].SharingLevel != database.AppSharingLevelAuthenticated || apps[1].Health != database.WorkspaceAppHealthInitializing || apps[1].HealthcheckThreshold != 3 {
		t.Errorf("web app = %+v", apps[1])
	}
	amd, err := e.store.GetWorkspaceAgentMetadata(ctx, agent.ID)
	if err != nil || len(amd) != 1 || amd[0].Key != "load" {
		t.Fatalf("agent metadata = %+v, %v", amd, err)
	}

	version, err := e.store.GetTemplateVersionByJobID(ctx, jobID)
	if err != nil {
		t.Fatal(err)
	}
	params, err := e.store.GetTemplateVersionParameters(ctx, version.ID)
	if err != nil || len(params) != 1 || params[0].Name != "size" || !params[0].ValidationMin.Valid || params[0].ValidationMin.Int32 != 1 {
		t.Fatalf("parameters = %+v, %v", params, err)
	}
	var opts []codersdk.TemplateVersionParameterOption
	if err := json.Unmarshal(params[0].Options, &opts); err != nil || len(opts) != 1 || opts[0].Value != "2" {
		t.Fatalf("parameter options %s: %v", params[0].Options, err)
	}
}

// TestFailHungJobs: a running job is failed once its last heartbeat is older
// than the heartbeat timeout, not before; a heartbeat keeps it alive, and the
// daemon learns of the failure on its next heartbeat.
func TestFailHungJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	daemon := e.register("d", nil)
	alive := e.queueImport(nil)
	hung := e.queueImport(nil)
	c := e.client(testPSK)
	for range 2 {
		if job, err := c.AcquireJob(ctx, daemon); err != nil || job == nil {
			t.Fatalf("acquire = %+v, %v", job, err)
		}
	}

	e.clock.advance(heartbeatTimeout - time.Second)
	if _, err := c.Heartbeat(ctx, daemon, alive); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.FailHungJobs(ctx); err != nil {
		t.Fatal(err)
	}
	if e.job(hung).CompletedAt.Valid {
		t.Fatal("a job within its heartbeat timeout was failed")
	}

	e.clock.advance(2 * time.Second) // hung: timeout+1s without a heartbeat; alive: 2s
	if err := e.srv.FailHungJobs(ctx); err != nil {
		t.Fatal(err)
	}
	j := e.job(hung)
	if !j.CompletedAt.Valid || j.Error.String != provisionerdserver.HungJobError || j.ErrorCode.String != "HUNG" {
		t.Fatalf("hung job: completed %v error %q code %q", j.CompletedAt.Valid, j.Error.String, j.ErrorCode.String)
	}
	logs, err := e.store.GetProvisionerLogsAfterID(ctx, database.GetProvisionerLogsAfterIDParams{JobID: hung})
	if err != nil || len(logs) != 1 || !strings.Contains(logs[0].Output, "no heartbeat since") {
		t.Fatalf("hung job logs = %+v, %v", logs, err)
	}
	if e.job(alive).CompletedAt.Valid {
		t.Fatal("a job with a recent heartbeat was failed")
	}
	if _, err := c.Heartbeat(ctx, daemon, hung); statusOf(err) != http.StatusConflict {
		t.Fatalf("heartbeat of the failed job: %v, want 409", err)
	}
}
