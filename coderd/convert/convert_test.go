package convert_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/convert"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

func ts(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: true} }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestJobStatus(t *testing.T) {
	t.Parallel()
	failed := pgtype.Text{String: "boom", Valid: true}
	cases := []struct {
		name string
		job  database.ProvisionerJob
		want codersdk.ProvisionerJobStatus
	}{
		{"pending", database.ProvisionerJob{}, codersdk.ProvisionerJobPending},
		{"running", database.ProvisionerJob{StartedAt: ts(t0)}, codersdk.ProvisionerJobRunning},
		{"succeeded", database.ProvisionerJob{StartedAt: ts(t0), CompletedAt: ts(t0)}, codersdk.ProvisionerJobSucceeded},
		{"empty error succeeds", database.ProvisionerJob{CompletedAt: ts(t0), Error: pgtype.Text{Valid: true}}, codersdk.ProvisionerJobSucceeded},
		{"failed", database.ProvisionerJob{StartedAt: ts(t0), CompletedAt: ts(t0), Error: failed}, codersdk.ProvisionerJobFailed},
		{"canceling", database.ProvisionerJob{StartedAt: ts(t0), CanceledAt: ts(t0)}, codersdk.ProvisionerJobCanceling},
		{"canceled", database.ProvisionerJob{CanceledAt: ts(t0), CompletedAt: ts(t0), Error: failed}, codersdk.ProvisionerJobCanceled},
	}
	for _, c := range cases {
		if got := convert.JobStatus(c.job); got != c.want {
			t.Errorf("%s: JobStatus = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestJobQueueDetail(t *testing.T) {
	t.Parallel()
	pending := database.ProvisionerJob{ID: uuid.New(), CreatedAt: t0, Tags: []byte(`{"scope":"organization","flavour":"tofu"}`)}
	cases := []struct {
		name       string
		job        database.ProvisionerJob
		queue      convert.JobQueue
		wantPos    int
		wantDetail string
	}{
		{"no daemon", pending, convert.JobQueue{Position: 2, Size: 3}, 2,
			"no provisioner daemon with tags {flavour=tofu, scope=organization} is connected; the job waits for one"},
		{"daemons", pending, convert.JobQueue{Position: 1, Size: 1, LiveDaemons: 2}, 1,
			"waiting for one of 2 provisioner daemon(s) with tags {flavour=tofu, scope=organization} (queue position 1 of 1)"},
		{"running ignores queue", database.ProvisionerJob{StartedAt: ts(t0), Tags: []byte(`{}`)}, convert.JobQueue{Position: 5, Size: 5}, 0, ""},
	}
	for _, c := range cases {
		got := convert.Job(c.job, c.queue)
		if got.QueuePosition != c.wantPos || got.Detail != c.wantDetail {
			t.Errorf("%s: position %d detail %q, want %d %q", c.name, got.QueuePosition, got.Detail, c.wantPos, c.wantDetail)
		}
	}
	if got := convert.Job(database.ProvisionerJob{Tags: []byte("not json")}, convert.JobQueue{}); got.Tags == nil {
		t.Error("undecodable tags: want an empty map, got nil")
	}
}

// TestBuildStatus checks the status derived from job state and transition.
func TestBuildStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		job        codersdk.ProvisionerJobStatus
		transition codersdk.WorkspaceTransition
		want       codersdk.WorkspaceStatus
	}{
		{codersdk.ProvisionerJobPending, codersdk.WorkspaceTransitionStart, codersdk.WorkspaceStatusPending},
		{codersdk.ProvisionerJobRunning, codersdk.WorkspaceTransitionStart, codersdk.WorkspaceStatusStarting},
		{codersdk.ProvisionerJobRunning, codersdk.WorkspaceTransitionStop, codersdk.WorkspaceStatusStopping},
		{codersdk.ProvisionerJobRunning, codersdk.WorkspaceTransitionDelete, codersdk.WorkspaceStatusDeleting},
		{codersdk.ProvisionerJobSucceeded, codersdk.WorkspaceTransitionStart, codersdk.WorkspaceStatusRunning},
		{codersdk.ProvisionerJobSucceeded, codersdk.WorkspaceTransitionStop, codersdk.WorkspaceStatusStopped},
		{codersdk.ProvisionerJobSucceeded, codersdk.WorkspaceTransitionDelete, codersdk.WorkspaceStatusDeleted},
		{codersdk.ProvisionerJobFailed, codersdk.WorkspaceTransitionStart, codersdk.WorkspaceStatusFailed},
		{codersdk.ProvisionerJobCanceling, codersdk.WorkspaceTransitionStop, codersdk.WorkspaceStatusCanceling},
		{codersdk.ProvisionerJobCanceled, codersdk.WorkspaceTransitionStop, codersdk.WorkspaceStatusCanceled},
	}
	for _, c := range cases {
		if got := convert.BuildStatus(c.job, c.transition); got != c.want {
			t.Errorf("BuildStatus(%s, %s) = %s, want %s", c.job, c.transition, got, c.want)
		}
	}
}

func TestAgentStatus(t *testing.T) {
	t.Parallel()
	inactive := 30 * time.Second
	cases := []struct {
		name  string
		agent database.WorkspaceAgent
		now   time.Time
		want  codersdk.WorkspaceAgentStatus
	}{
		{"connecting", database.WorkspaceAgent{CreatedAt: t0, ConnectionTimeoutSeconds: 60}, t0.Add(time.Minute), codersdk.WorkspaceAgentConnecting},
		{"timeout", database.WorkspaceAgent{CreatedAt: t0, ConnectionTimeoutSeconds: 60}, t0.Add(61 * time.Second), codersdk.WorkspaceAgentTimeout},
		{"no timeout configured", database.WorkspaceAgent{CreatedAt: t0}, t0.Add(time.Hour), codersdk.WorkspaceAgentConnecting},
		{"connected", database.WorkspaceAgent{FirstConnectedAt: ts(t0), LastConnectedAt: ts(t0)}, t0.Add(inactive), codersdk.WorkspaceAgentConnected},
		{"heartbeat lapsed", database.WorkspaceAgent{FirstConnectedAt: ts(t0), LastConnectedAt: ts(t0)}, t0.Add(inactive + time.Second), codersdk.WorkspaceAgentDisconnected},
		{"disconnect after connect", database.WorkspaceAgent{FirstConnectedAt: ts(t0), LastConnectedAt: ts(t0), DisconnectedAt: ts(t0)}, t0, codersdk.WorkspaceAgentDisconnected},
		{"reconnected", database.WorkspaceAgent{FirstConnectedAt: ts(t0), LastConnectedAt: ts(t0.Add(time.Second)), DisconnectedAt: ts(t0)}, t0.Add(time.Second), codersdk.WorkspaceAgentConnected},
	}
	for _, c := range cases {
		if got := convert.AgentStatus(c.agent, c.now, inactive); got != c.want {
			t.Errorf("%s: AgentStatus = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestAgent(t *testing.T) {
	t.Parallel()
	agent := database.WorkspaceAgent{ID: uuid.New(), Name: "main", EnvironmentVariables: []byte(`{"A":"b"}`), LifecycleState: "ready"}
	wsID := uuid.New()
	got, err := convert.Agent(agent, wsID, nil, nil, codersdk.WorkspaceAgentConnected)
	if err != nil {
		t.Fatal(err)
	}
	if got.WorkspaceID != wsID || got.Status != codersdk.WorkspaceAgentConnected || got.EnvironmentVariables["A"] != "b" {
		t.Errorf("agent = %+v", got)
	}
	// Empty lists are lists, not null, in the JSON.
	raw, _ := json.Marshal(got)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	if string(m["apps"]) != "[]" || string(m["scripts"]) != "[]" || got.StartupScriptBehavior != "non-blocking" {
		t.Errorf("apps %s scripts %s behavior %s", m["apps"], m["scripts"], got.StartupScriptBehavior)
	}
	if got.TailnetIP == "" {
		t.Error("no tailnet IP")
	}

	scripts := []database.WorkspaceAgentScript{
		{ID: uuid.New(), DisplayName: "stop", RunOnStop: true, StartBlocksLogin: true},
		{ID: uuid.New(), DisplayName: "start", RunOnStart: true, StartBlocksLogin: true},
	}
	apps := []database.WorkspaceApp{
		{ID: uuid.New(), Slug: "code", HealthcheckUrl: "http://localhost/healthz", HealthcheckInterval: 5, HealthcheckThreshold: 3},
		{ID: uuid.New(), Slug: "web", Url: pgtype.Text{String: "http://localhost:8080", Valid: true}},
	}
	got, err = convert.Agent(agent, wsID, apps, scripts, codersdk.WorkspaceAgentConnecting)
	if err != nil {
		t.Fatal(err)
	}
	if got.StartupScriptBehavior != "blocking" || len(got.Scripts) != 2 || got.Scripts[1].DisplayName != "start" {
		t.Errorf("scripts %+v behavior %s", got.Scripts, got.StartupScriptBehavior)
	}
	if len(got.Apps) != 2 || got.Apps[0].Healthcheck == nil || got.Apps[0].Healthcheck.Threshold != 3 ||
		got.Apps[1].Healthcheck != nil || got.Apps[1].URL != "http://localhost:8080" {
		t.Errorf("apps %+v", got.Apps)
	}

	agent.EnvironmentVariables = []byte("{broken")
	if _, err := convert.Agent(agent, wsID, nil, nil, codersdk.WorkspaceAgentConnected); err == nil {
		t.Error("broken environment: want an error")
	}
	agent.EnvironmentVariables = []byte("null")
	if env, err := convert.AgentEnvironment(agent); err != nil || env == nil || len(env) != 0 {
		t.Errorf("null environment = %v, %v; want an empty map", env, err)
	}
}

func TestResourceHidesSensitiveMetadata(t *testing.T) {
	t.Parallel()
	res := database.WorkspaceResource{ID: uuid.New(), JobID: uuid.New(), Type: "docker_container", Name: "dev", Transition: "start"}
	md := []database.WorkspaceResourceMetadatum{
		{Key: "image", Value: pgtype.Text{String: "ubuntu", Valid: true}},
		{Key: "password", Value: pgtype.Text{String: "hunter2", Valid: true}, Sensitive: true},
	}
	got := convert.Resource(res, md, nil, false)
	if len(got.Metadata) != 2 || got.Metadata[0].Value != "ubuntu" || got.Metadata[1].Value != "" || !got.Metadata[1].Sensitive {
		t.Errorf("metadata = %+v", got.Metadata)
	}
	if got.Transition != codersdk.WorkspaceTransitionStart || got.JobID != res.JobID {
		t.Errorf("resource = %+v", got)
	}
}

func TestResourceKindAndLifetime(t *testing.T) {
	t.Parallel()
	res := database.WorkspaceResource{ID: uuid.New(), JobID: uuid.New(), Type: "docker_container", Name: "dev", Transition: "start"}
	agent := []codersdk.WorkspaceAgent{{ID: uuid.New(), Name: "main"}}
	for _, tc := range []struct {
		name       string
		agents     []codersdk.WorkspaceAgent
		persistent bool
		kind       codersdk.ResourceKind
		lifetime   codersdk.ResourceLifetime
	}{
		{"container", agent, false, codersdk.ResourceKindComputational, codersdk.ResourceLifetimeEphemeral},
		{"volume", nil, true, codersdk.ResourceKindPeripheral, codersdk.ResourceLifetimePersistent},
		{"persistent VM", agent, true, codersdk.ResourceKindComputational, codersdk.ResourceLifetimePersistent},
		{"network", nil, false, codersdk.ResourceKindPeripheral, codersdk.ResourceLifetimeEphemeral},
	} {
		got := convert.Resource(res, nil, tc.agents, tc.persistent)
		if got.Kind != tc.kind || got.Lifetime != tc.lifetime {
			t.Errorf("%s: kind %q lifetime %q, want %q %q", tc.name, got.Kind, got.Lifetime, tc.kind, tc.lifetime)
		}
	}
}

func TestWorkspaceAndBuild(t *testing.T) {
	t.Parallel()
	owner := uuid.New()
	ws := database.Workspace{
		ID: uuid.New(), OwnerID: owner, TemplateID: uuid.New(), Name: "dev",
		AutostartSchedule: pgtype.Text{String: "CRON_TZ=UTC 30 9 * * 1-5", Valid: true},
		Ttl:               pgtype.Int8{Int64: int64(8 * time.Hour), Valid: true},
	}
	active, older := uuid.New(), uuid.New()
	tmpl := database.Template{ID: ws.TemplateID, Name: "docker", DisplayName: "Docker", ActiveVersionID: active, AllowUserCancelWorkspaceJobs: true}
	b := database.WorkspaceBuild{ID: uuid.New(), WorkspaceID: ws.ID, TemplateVersionID: older, BuildNumber: 3, Transition: "stop", Reason: "initiator"}
	job := convert.Job(database.ProvisionerJob{StartedAt: ts(t0), Tags: []byte(`{}`)}, convert.JobQueue{})
	build := convert.WorkspaceBuild(b, ws, convert.BuildNames{Owner: "alice", Initiator: "bob", TemplateVersion: "v1"}, job, nil)
	if build.Status != codersdk.WorkspaceStatusStopping || build.WorkspaceOwnerID != owner || build.WorkspaceOwnerName != "alice" ||
		build.InitiatorUsername != "bob" || build.TemplateVersionName != "v1" || build.WorkspaceName != "dev" {
		t.Errorf("build = %+v", build)
	}
	if build.Resources == nil {
		t.Error("nil resources: want an empty list")
	}
	got := convert.Workspace(ws, "alice", tmpl, build)
	if !got.Outdated || got.OwnerName != "alice" || got.TemplateDisplayName != "Docker" || !got.TemplateAllowUserCancelWorkspaceJobs {
		t.Errorf("workspace = %+v", got)
	}
	if got.TTLMillis == nil || *got.TTLMillis != 8*3600*1000 || got.AutostartSchedule == nil {
		t.Errorf("ttl %v autostart %v", got.TTLMillis, got.AutostartSchedule)
	}
	build.TemplateVersionID = active
	if convert.Workspace(ws, "alice", tmpl, build).Outdated {
		t.Error("a build of the active version is outdated")
	}
}

func TestTemplateAndVersion(t *testing.T) {
	t.Parallel()
	tmpl := database.Template{ID: uuid.New(), Name: "docker", Provisioner: "terraform", DefaultTtl: int64(2 * time.Hour), CreatedBy: uuid.New()}
	got := convert.Template(tmpl, "admin", 4)
	if got.DefaultTTLMillis != 2*3600*1000 || got.CreatedByName != "admin" || got.ActiveUserCount != 4 || got.Provisioner != "terraform" {
		t.Errorf("template = %+v", got)
	}
	v := database.TemplateVersion{ID: uuid.New(), Name: "v1", CreatedBy: tmpl.CreatedBy}
	sv := convert.TemplateVersion(v, codersdk.ProvisionerJob{Status: codersdk.ProvisionerJobSucceeded}, "admin")
	if sv.TemplateID != nil || sv.CreatedBy.Username != "admin" || sv.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Errorf("version = %+v", sv)
	}
	v.TemplateID = uuid.NullUUID{UUID: tmpl.ID, Valid: true}
	if sv := convert.TemplateVersion(v, codersdk.ProvisionerJob{}, ""); sv.TemplateID == nil || *sv.TemplateID != tmpl.ID {
		t.Errorf("template id = %v", sv.TemplateID)
	}
	p := convert.TemplateVersionParameter(database.TemplateVersionParameter{
		Name: "region", Options: []byte(`[{"name":"EU","value":"eu"}]`), ValidationMin: pgtype.Int4{Int32: 1, Valid: true},
	})
	if len(p.Options) != 1 || p.Options[0].Value != "eu" || p.ValidationMin == nil || *p.ValidationMin != 1 || p.ValidationMax != nil {
		t.Errorf("parameter = %+v", p)
	}
	if p := convert.TemplateVersionParameter(database.TemplateVersionParameter{}); p.Options == nil {
		t.Error("no options: want an empty list")
	}
}
