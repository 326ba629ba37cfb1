package coderd_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/autobuild"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/provisioner"
	"github.com/wgmesh/coder/provisioner/terraform"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// lifecycleTF is a template with an agent in a terraform_data that exists
// while the workspace is started (real terraform, the real Coder provider).
const lifecycleTF = `terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

data "coder_workspace" "me" {}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}

resource "terraform_data" "dev" {
  count = data.coder_workspace.me.start_count
  input = {
    agent = coder_agent.main.id
  }
}
`

// failingTF fails every start (its apply runs a failing local-exec) and
// deletes cleanly.
const failingTF = `resource "terraform_data" "broken" {
  provisioner "local-exec" {
    command = "exit 3"
  }
}
`

// testClock is coderd's clock: real time plus an offset the test moves.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func (c *testClock) AdvanceTo(t time.Time)   { c.offset.Store(int64(time.Until(t))) }

// lifecycleEnv is coderd with a real provisioner daemon (terraform) and
// a lifecycle executor driven by the test's ticks.
type lifecycleEnv struct {
	client *codersdk.Client
	srv    *coderdtest.Server
	clock  *testClock
	tick   chan time.Time
	stats  chan autobuild.Stats
}

func newLifecycleEnv(t *testing.T) *lifecycleEnv {
	t.Helper()
	const psk = "lifecycle-psk"
	deps := terraformtest.Find(t)
	e := &lifecycleEnv{clock: &testClock{}, tick: make(chan time.Time), stats: make(chan autobuild.Stats)}
	e.client, e.srv = coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		Now: e.clock.Now,
		// The clock jumps days ahead (between builds): sessions outlive that.
		SessionLifetime: 30 * 24 * time.Hour,
		Provisioning:    coderd.ProvisioningOptions{PSK: psk, AcquireWait: time.Second},
		Lifecycle:       coderd.LifecycleOptions{Tick: e.tick, Stats: e.stats},
	}})
	coderdtest.CreateFirstUser(t, e.client)
	d := &provisioner.Daemon{
		Client: &provisionersdk.Client{URL: e.client.URL, PSK: psk},
		Name:   "lifecycle",
		Runner: &terraform.Runner{TerraformPath: deps.Terraform, CLIConfigPath: deps.CLIConfig, WorkDir: t.TempDir()},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon Run: %v", err)
		}
	})
	return e
}

// tickAt runs one executor tick at now and returns its stats.
func (e *lifecycleEnv) tickAt(t *testing.T, now time.Time) autobuild.Stats {
	t.Helper()
	select {
	case e.tick <- now:
	case <-time.After(time.Minute):
		t.Fatal("executor did not take the tick")
	}
	select {
	case s := <-e.stats:
		return s
	case <-time.After(time.Minute):
		t.Fatal("executor did not report the tick")
	}
	return autobuild.Stats{}
}

func (e *lifecycleEnv) template(t *testing.T, name, body string, sched codersdk.TemplateScheduleFields) codersdk.Template {
	t.Helper()
	ctx := context.Background()
	up, err := e.client.Upload(ctx, codersdk.ContentTypeTar, strings.NewReader(string(tarMain(t, body))))
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{FileID: up.ID, StorageMethod: "file", Provisioner: "terraform"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "template import", func() bool {
		v, err = e.client.TemplateVersion(ctx, v.ID)
		return err == nil && !v.Job.Status.Active()
	})
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import: %s %q", v.Job.Status, v.Job.Error)
	}
	tmpl, err := e.client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: name, VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if tmpl, err = e.client.UpdateTemplateSchedule(ctx, tmpl.ID, sched); err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// waitLatest waits until the workspace's latest build ended and returns the
// workspace.
func (e *lifecycleEnv) waitLatest(t *testing.T, client *codersdk.Client, id uuid.UUID) codersdk.Workspace {
	t.Helper()
	var ws codersdk.Workspace
	eventually(t, 3*time.Minute, "build end", func() bool {
		var err error
		ws, err = client.Workspace(context.Background(), id)
		return err == nil && !ws.LatestBuild.Job.Status.Active()
	})
	return ws
}

// agentToken reads the agent token from the workspace's stored Terraform
// state (plaintext: this coderd has no state key).
func (e *lifecycleEnv) agentToken(t *testing.T, workspaceID uuid.UUID) string {
	t.Helper()
	b, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(context.Background(), workspaceID)
	if err != nil {
		t.Fatal(err)
	}
	var state struct {
		Resources []struct {
			Type      string `json:"type"`
			Instances []struct {
				Attributes struct {
					Token string `json:"token"`
				} `json:"attributes"`
			} `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b.ProvisionerState, &state); err != nil {
		t.Fatalf("parse state: %v", err)
	}
	for _, r := range state.Resources {
		if r.Type == "coder_agent" && len(r.Instances) > 0 && r.Instances[0].Attributes.Token != "" {
			return r.Instances[0].Attributes.Token
		}
	}
	t.Fatal("no agent token in the state")
	return ""
}

func tarMain(t *testing.T, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "main.tf", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ms(d time.Duration) *int64 { v := d.Milliseconds(); return &v }
func ptr[T any](v T) *T         { return &v }

func wantStatus(t *testing.T, err error, status int, what string) *codersdk.Error {
	t.Helper()
	apiErr, ok := codersdk.AsError(err)
	if !ok || apiErr.StatusCode() != status {
		t.Fatalf("%s: got %v, want status %d", what, err, status)
	}
	return apiErr
}

// TestAutostopDeadlineBumpedByActivity: a start sets the deadline from the
// TTL and the max deadline from the template; sessions in agent stats bump
// it to now+TTL, never beyond the max; the executor stops the workspace at
// the deadline (reason autostop), not a second before.
func TestAutostopDeadlineBumpedByActivity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "autostop", lifecycleTF, codersdk.TemplateScheduleFields{MaxTTLMillis: ms(90 * time.Minute)})
	if tmpl.MaxTTLMillis != (90*time.Minute).Milliseconds() || !tmpl.AllowUserAutostop {
		t.Fatalf("template schedule %+v", tmpl.TemplateSchedule)
	}
	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "autostop", TTLMillis: ms(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	b := ws.LatestBuild
	if b.Status != codersdk.WorkspaceStatusRunning || b.Deadline == nil || b.MaxDeadline == nil || b.Job.CompletedAt == nil {
		t.Fatalf("started build: status %s deadline %v max %v", b.Status, b.Deadline, b.MaxDeadline)
	}
	if got := b.Deadline.Sub(*b.Job.CompletedAt); got != time.Hour {
		t.Fatalf("deadline is %v after completion, want the 1h TTL", got)
	}
	if got := b.MaxDeadline.Sub(*b.Job.CompletedAt); got != 90*time.Minute {
		t.Fatalf("max deadline is %v after completion, want the template's 90m", got)
	}
	deadline, maxDeadline := *b.Deadline, *b.MaxDeadline

	agent := agentsdk.New(e.client.URL, e.agentToken(t, ws.ID))
	post := func(sessions int64) time.Time {
		t.Helper()
		if _, err := agent.PostStats(ctx, agentsdk.Stats{SessionCountSSH: sessions, ConnectionCount: sessions, ConnectionMedianLatencyMS: -1}); err != nil {
			t.Fatal(err)
		}
		w, err := e.client.Workspace(ctx, ws.ID)
		if err != nil {
			t.Fatal(err)
		}
		return *w.LatestBuild.Deadline
	}
	// 20 minutes on: stats without sessions do not bump; an SSH session does,
	// to now+TTL (80 minutes after the start, within the 90-minute max).
	e.clock.Advance(20 * time.Minute)
	if got := post(0); !got.Equal(deadline) {
		t.Fatalf("stats without sessions moved the deadline %v -> %v", deadline, got)
	}
	before := e.clock.Now()
	bumped := post(1)
	after := e.clock.Now()
	if bumped.Before(before.Add(time.Hour).Truncate(time.Microsecond)) || bumped.After(after.Add(time.Hour)) {
		t.Fatalf("bumped deadline %v, want now+1h (%v..%v)", bumped, before.Add(time.Hour), after.Add(time.Hour))
	}
	// 40 minutes on, now+TTL is past the max deadline: the bump stops there.
	e.clock.Advance(20 * time.Minute)
	if got := post(1); !got.Equal(maxDeadline) {
		t.Fatalf("deadline after a bump past the max: %v, want the max deadline %v", got, maxDeadline)
	}

	if s := e.tickAt(t, maxDeadline.Add(-time.Second)); len(s.Transitions) != 0 || s.Skipped {
		t.Fatalf("tick before the deadline: %+v", s)
	}
	s := e.tickAt(t, maxDeadline)
	if s.Transitions[ws.ID] != "stop" || s.Reasons[ws.ID] != "autostop" {
		t.Fatalf("tick at the deadline: %+v", s)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusStopped || ws.LatestBuild.Reason != "autostop" || ws.LatestBuild.Transition != codersdk.WorkspaceTransitionStop {
		t.Fatalf("after autostop: %s %s %s (%s)", ws.LatestBuild.Transition, ws.LatestBuild.Status, ws.LatestBuild.Reason, ws.LatestBuild.Job.Error)
	}
	if ws.LatestBuild.InitiatorID != ws.OwnerID {
		t.Fatalf("autostop initiated by %s, want the owner", ws.LatestBuild.InitiatorID)
	}
	// A stopped workspace is left alone.
	if s := e.tickAt(t, maxDeadline.Add(time.Hour)); len(s.Transitions) != 0 {
		t.Fatalf("tick after the stop: %+v", s)
	}
}

// nextWeekday830 is the first 08:30 in loc on a weekday strictly after t,
// computed by walking the calendar (independently of the cron library).
func nextWeekday830(t time.Time, loc *time.Location) time.Time {
	l := t.In(loc)
	for d := 0; d < 8; d++ {
		c := time.Date(l.Year(), l.Month(), l.Day()+d, 8, 30, 0, 0, loc)
		if c.After(t) && c.Weekday() != time.Saturday && c.Weekday() != time.Sunday {
			return c
		}
	}
	panic("no weekday in a week")
}

// TestAutostartAtSchedule: a stopped workspace with a Berlin schedule is
// started by the executor at 08:30 Berlin on the next weekday (reason
// autostart, through a real build), not a minute before.
func TestAutostartAtSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "autostart", lifecycleTF, codersdk.TemplateScheduleFields{DefaultTTLMillis: ms(8 * time.Hour)})
	sched := "CRON_TZ=Europe/Berlin 30 8 * * 1-5"
	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "autostart", AutostartSchedule: &sched})
	if err != nil {
		t.Fatal(err)
	}
	e.waitLatest(t, e.client, ws.ID)
	if _, err := e.client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop}); err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusStopped || ws.AutostartSchedule == nil || *ws.AutostartSchedule != sched {
		t.Fatalf("stopped workspace: %s, schedule %v", ws.LatestBuild.Status, ws.AutostartSchedule)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	due := nextWeekday830(*ws.LatestBuild.Job.CompletedAt, berlin)
	if s := e.tickAt(t, due.Add(-time.Minute)); len(s.Transitions) != 0 {
		t.Fatalf("tick a minute early: %+v", s)
	}
	// coderd's clock is at the schedule too (no build runs while it jumps),
	// so the start's deadline is counted from there.
	e.clock.AdvanceTo(due)
	s := e.tickAt(t, due)
	if s.Transitions[ws.ID] != "start" || s.Reasons[ws.ID] != "autostart" {
		t.Fatalf("tick at %v: %+v", due, s)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	b := ws.LatestBuild
	if b.Status != codersdk.WorkspaceStatusRunning || b.Reason != "autostart" || b.InitiatorID != ws.OwnerID {
		t.Fatalf("autostarted build: %s %s by %s (%s)", b.Status, b.Reason, b.InitiatorID, b.Job.Error)
	}
	// The start's deadline comes from the template's default TTL.
	if b.Deadline == nil || b.Deadline.Sub(*b.Job.CompletedAt) != 8*time.Hour {
		t.Fatalf("autostart deadline %v (completed %v), want +8h", b.Deadline, b.Job.CompletedAt)
	}
	// Running now: the same schedule time does not start it again.
	if s := e.tickAt(t, due.Add(time.Minute)); len(s.Transitions) != 0 {
		t.Fatalf("tick after the start: %+v", s)
	}
}

// TestScheduleValidationAndPermissions: bad cron and TTL values are 400s
// naming the field; a member may not change the schedule of a workspace
// whose template forbids it (403) while a template admin may; extending
// beyond the max deadline is refused.
func TestScheduleValidationAndPermissions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "perm", lifecycleTF, codersdk.TemplateScheduleFields{
		MaxTTLMillis: ms(4 * time.Hour), AllowUserAutostart: ptr(false), AllowUserAutostop: ptr(false),
	})
	member, _ := coderdtest.CreateAnotherUser(t, e.client)

	// Bad cron at creation.
	bad := "CRON_TZ=Europe/Berlin 61 8 * * 1-5"
	_, err := member.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "bad", AutostartSchedule: &bad})
	if apiErr := wantStatus(t, err, http.StatusBadRequest, "create with bad cron"); len(apiErr.Validations) == 0 || apiErr.Validations[0].Field != "schedule" {
		t.Fatalf("validations %+v", apiErr.Validations)
	}
	ws, err := member.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "perm"})
	if err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, member, ws.ID)

	for _, expr := range []string{"bogus", "CRON_TZ=Mars/Olympus 30 8 * * 1-5", "30 8 1 * *", "0 30 8 * * 1"} {
		err := member.UpdateWorkspaceAutostart(ctx, ws.ID, codersdk.UpdateWorkspaceAutostartRequest{Schedule: &expr})
		apiErr := wantStatus(t, err, http.StatusBadRequest, "bad cron "+expr)
		if len(apiErr.Validations) != 1 || apiErr.Validations[0].Field != "schedule" || apiErr.Validations[0].Detail == "" {
			t.Fatalf("bad cron %q: %+v", expr, apiErr)
		}
	}
	good := "CRON_TZ=Europe/Berlin 30 8 * * 1-5"
	wantStatus(t, member.UpdateWorkspaceAutostart(ctx, ws.ID, codersdk.UpdateWorkspaceAutostartRequest{Schedule: &good}), http.StatusForbidden, "member autostart, template forbids")
	wantStatus(t, member.UpdateWorkspaceTTL(ctx, ws.ID, codersdk.UpdateWorkspaceTTLRequest{TTLMillis: ms(time.Hour)}), http.StatusForbidden, "member ttl, template forbids")
	wantStatus(t, member.PutExtendWorkspace(ctx, ws.ID, codersdk.PutExtendWorkspaceRequest{Deadline: e.clock.Now().Add(2 * time.Hour)}), http.StatusForbidden, "member extend, template forbids")
	if w, _ := e.client.Workspace(ctx, ws.ID); w.AutostartSchedule != nil || w.TTLMillis != nil {
		t.Fatalf("refused changes were stored: %v %v", w.AutostartSchedule, w.TTLMillis)
	}
	// The owner (a template admin) may.
	if err := e.client.UpdateWorkspaceAutostart(ctx, ws.ID, codersdk.UpdateWorkspaceAutostartRequest{Schedule: &good}); err != nil {
		t.Fatal(err)
	}
	// TTL bounds, whoever asks.
	for _, ttl := range []time.Duration{30 * time.Second, 5 * time.Hour} {
		apiErr := wantStatus(t, e.client.UpdateWorkspaceTTL(ctx, ws.ID, codersdk.UpdateWorkspaceTTLRequest{TTLMillis: ms(ttl)}), http.StatusBadRequest, "ttl "+ttl.String())
		if apiErr.Validations[0].Field != "ttl_ms" {
			t.Fatalf("ttl %v: %+v", ttl, apiErr)
		}
	}
	// Once the template allows it, the member changes its own schedule.
	if _, err := e.client.UpdateTemplateSchedule(ctx, tmpl.ID, codersdk.TemplateScheduleFields{AllowUserAutostart: ptr(true), AllowUserAutostop: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if err := member.UpdateWorkspaceTTL(ctx, ws.ID, codersdk.UpdateWorkspaceTTLRequest{TTLMillis: ms(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	w, err := member.Workspace(ctx, ws.ID)
	if err != nil || w.AutostartSchedule == nil || *w.AutostartSchedule != good || w.TTLMillis == nil || *w.TTLMillis != (2*time.Hour).Milliseconds() {
		t.Fatalf("stored schedule %v ttl %v (%v)", w.AutostartSchedule, w.TTLMillis, err)
	}
	// Extension: the running build's max deadline is 4h after its start.
	maxDeadline := *w.LatestBuild.MaxDeadline
	wantStatus(t, member.PutExtendWorkspace(ctx, ws.ID, codersdk.PutExtendWorkspaceRequest{Deadline: maxDeadline.Add(time.Minute)}), http.StatusBadRequest, "extend beyond max")
	wantStatus(t, member.PutExtendWorkspace(ctx, ws.ID, codersdk.PutExtendWorkspaceRequest{Deadline: e.clock.Now().Add(5 * time.Minute)}), http.StatusBadRequest, "extend too short")
	want := e.clock.Now().Add(3 * time.Hour).UTC().Truncate(time.Second)
	if err := member.PutExtendWorkspace(ctx, ws.ID, codersdk.PutExtendWorkspaceRequest{Deadline: want}); err != nil {
		t.Fatal(err)
	}
	if w, _ := member.Workspace(ctx, ws.ID); !w.LatestBuild.Deadline.Equal(want) {
		t.Fatalf("extended deadline %v, want %v", w.LatestBuild.Deadline, want)
	}
	// Another member may not touch it at all.
	other, _ := coderdtest.CreateAnotherUser(t, e.client)
	wantStatus(t, other.UpdateWorkspaceTTL(ctx, ws.ID, codersdk.UpdateWorkspaceTTLRequest{TTLMillis: ms(time.Hour)}), http.StatusNotFound, "another member")
	// Members may not change template settings.
	_, err = member.UpdateTemplateSchedule(ctx, tmpl.ID, codersdk.TemplateScheduleFields{AllowUserAutostart: ptr(false)})
	wantStatus(t, err, http.StatusForbidden, "member template update")
	_, err = e.client.UpdateTemplateSchedule(ctx, tmpl.ID, codersdk.TemplateScheduleFields{DefaultTTLMillis: ms(5 * time.Hour)})
	wantStatus(t, err, http.StatusBadRequest, "default TTL beyond max")
}

// TestDormancyStopsAndDeletes: an idle workspace is marked dormant and
// stopped (reason dormancy), refuses to start, and is deleted once its
// deletion date passes (reason autodelete); marking another one active
// again lets it start.
func TestDormancyStopsAndDeletes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "dormancy", lifecycleTF, codersdk.TemplateScheduleFields{
		TimeTilDormantMillis: ms(24 * time.Hour), TimeTilDormantAutoDeleteMillis: ms(48 * time.Hour),
	})
	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	if s := e.tickAt(t, ws.CreatedAt.Add(23*time.Hour)); len(s.Transitions)+len(s.Dormant) != 0 {
		t.Fatalf("tick before idle: %+v", s)
	}
	at := ws.CreatedAt.Add(24 * time.Hour)
	s := e.tickAt(t, at)
	if len(s.Dormant) != 1 || s.Dormant[0] != ws.ID || s.Transitions[ws.ID] != "stop" || s.Reasons[ws.ID] != "dormancy" {
		t.Fatalf("tick when idle: %+v", s)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusStopped || ws.DormantAt == nil || ws.DeletingAt == nil || !ws.DeletingAt.Equal(at.Add(48*time.Hour).UTC().Truncate(time.Microsecond)) {
		t.Fatalf("dormant workspace: %s dormant %v deleting %v", ws.LatestBuild.Status, ws.DormantAt, ws.DeletingAt)
	}
	_, err = e.client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart})
	if apiErr := wantStatus(t, err, http.StatusForbidden, "start a dormant workspace"); !strings.Contains(apiErr.Message, "dormant") {
		t.Fatalf("message %q", apiErr.Message)
	}
	if s := e.tickAt(t, ws.DeletingAt.Add(-time.Minute)); len(s.Transitions) != 0 {
		t.Fatalf("tick before deletion: %+v", s)
	}
	s = e.tickAt(t, *ws.DeletingAt)
	if s.Transitions[ws.ID] != "delete" || s.Reasons[ws.ID] != "autodelete" {
		t.Fatalf("tick at deletion: %+v", s)
	}
	eventually(t, 3*time.Minute, "workspace deleted", func() bool {
		w, _ := e.srv.DB.GetWorkspaceByID(ctx, ws.ID)
		return w.Deleted
	})
	if b, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID); err != nil || b.Reason != "autodelete" || b.Transition != "delete" {
		t.Fatalf("deleting build: %+v %v", b, err)
	}

	// Marked dormant by hand, then active again: it starts.
	ws2, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "manual"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitLatest(t, e.client, ws2.ID)
	if w, err := e.client.UpdateWorkspaceDormancy(ctx, ws2.ID, codersdk.UpdateWorkspaceDormancy{Dormant: true}); err != nil || w.DormantAt == nil || w.LatestBuild.Reason != "dormancy" {
		t.Fatalf("mark dormant: %+v %v", w.LatestBuild, err)
	}
	e.waitLatest(t, e.client, ws2.ID)
	w, err := e.client.UpdateWorkspaceDormancy(ctx, ws2.ID, codersdk.UpdateWorkspaceDormancy{Dormant: false})
	if err != nil || w.DormantAt != nil || w.DeletingAt != nil {
		t.Fatalf("mark active: %v %v %v", w.DormantAt, w.DeletingAt, err)
	}
	if _, err := e.client.CreateWorkspaceBuild(ctx, ws2.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart}); err != nil {
		t.Fatalf("start after un-marking: %v", err)
	}
	if w := e.waitLatest(t, e.client, ws2.ID); w.LatestBuild.Status != codersdk.WorkspaceStatusRunning {
		t.Fatalf("restart: %s %s", w.LatestBuild.Status, w.LatestBuild.Job.Error)
	}
}

// TestFailedWorkspaceCleanup: a workspace whose start failed is deleted
// (reason autodelete, terraform destroy) once the template's failure TTL
// passed since the failure.
func TestFailedWorkspaceCleanup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "failing", failingTF, codersdk.TemplateScheduleFields{FailureTTLMillis: ms(time.Hour)})
	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "broken"})
	if err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusFailed {
		t.Fatalf("start of the failing template: %s", ws.LatestBuild.Status)
	}
	failed := *ws.LatestBuild.Job.CompletedAt
	if s := e.tickAt(t, failed.Add(59*time.Minute)); len(s.Transitions) != 0 {
		t.Fatalf("tick within the failure TTL: %+v", s)
	}
	s := e.tickAt(t, failed.Add(time.Hour))
	if s.Transitions[ws.ID] != "delete" || s.Reasons[ws.ID] != "autodelete" {
		t.Fatalf("tick after the failure TTL: %+v", s)
	}
	eventually(t, 3*time.Minute, "failed workspace deleted", func() bool {
		w, _ := e.srv.DB.GetWorkspaceByID(ctx, ws.ID)
		return w.Deleted
	})
}

// TestLifecycleAdvisoryLock: a second executor instance on the same
// database skips its tick while the lock is held, and two executors
// ticking at once queue exactly one build per due workspace.
func TestLifecycleAdvisoryLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "lock", lifecycleTF, codersdk.TemplateScheduleFields{})
	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "lock", TTLMillis: ms(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	due := *ws.LatestBuild.Deadline
	second := autobuild.New(e.srv.DB, e.srv.API.LifecycleBuilder(), nil)

	// Another session holds the lock: the second executor does nothing.
	conn, err := e.srv.DB.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", autobuild.LockClass, autobuild.LockKey); err != nil {
		t.Fatal(err)
	}
	s, err := second.Tick(ctx, due)
	if err != nil || !s.Skipped || len(s.Transitions) != 0 {
		t.Fatalf("tick while locked: %+v %v", s, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", autobuild.LockClass, autobuild.LockKey); err != nil {
		t.Fatal(err)
	}
	conn.Release()

	// Both executors tick at once, several times: one stop build.
	var wg sync.WaitGroup
	var mu sync.Mutex
	queued := 0
	for i := 0; i < 3; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			s := e.tickAt(t, due)
			mu.Lock()
			queued += len(s.Transitions)
			mu.Unlock()
		}()
		go func() {
			defer wg.Done()
			s, err := second.Tick(ctx, due)
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("second tick: %v", err)
			}
			mu.Lock()
			queued += len(s.Transitions)
			mu.Unlock()
		}()
		wg.Wait()
	}
	if queued != 1 {
		t.Fatalf("%d builds queued by two executors, want 1", queued)
	}
	builds, err := e.srv.DB.GetWorkspaceBuildsByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	autostops := 0
	for _, b := range builds {
		if b.Reason == "autostop" {
			autostops++
		}
	}
	if len(builds) != 2 || autostops != 1 {
		t.Fatalf("%d builds, %d autostops; want the start and one autostop", len(builds), autostops)
	}
	e.waitLatest(t, e.client, ws.ID)
}

// TestAppTrafficBumpsDeadline: requests through the apps proxy count as
// use of the workspace and bump its deadline to now+TTL (at most once a
// minute per workspace), never beyond the max deadline.
func TestAppTrafficBumpsDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := &offsetClock{}
	store := database.NewStore(dbtestutil.NewPoolFor(t, dbtestutil.NewDB(t)))
	e := startAppsCoderdWith(t, store, coderd.Options{
		Now:    clock.now,
		Agents: coderd.AgentOptions{DERPMap: tunneltest.RunDERP(t), HeartbeatInterval: 500 * time.Millisecond, InactiveDisconnectTimeout: time.Hour},
	})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	up := newUpstream(t)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, agentID, testApp{slug: "app", url: fmt.Sprintf("http://127.0.0.1:%d", up.port), share: database.AppSharingLevelOwner})
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })

	// A running start with a 1h TTL: deadline in 10 minutes, max in 100.
	now := clock.now().UTC().Truncate(time.Microsecond)
	if err := store.UpdateWorkspaceTTL(ctx, database.UpdateWorkspaceTTLParams{ID: ws.ID, Ttl: pgtype.Int8{Int64: int64(time.Hour), Valid: true}, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	b, err := store.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	maxDeadline := now.Add(100 * time.Minute)
	if err := store.UpdateWorkspaceBuildDeadlineByID(ctx, database.UpdateWorkspaceBuildDeadlineByIDParams{ID: b.ID, Deadline: now.Add(10 * time.Minute), MaxDeadline: maxDeadline, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	deadline := func() time.Time {
		b, err := store.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
		if err != nil {
			t.Fatal(err)
		}
		return b.Deadline
	}
	open := func() {
		t.Helper()
		url := fmt.Sprintf("%s/@%s/%s/apps/app/", e.url, first.Username, ws.Name)
		if got := appGet(t, noRedirect, url, "", withSessionCookie(owner.SessionToken())); got.status != http.StatusOK {
			t.Fatalf("open app: %d %q", got.status, got.body)
		}
	}
	before := clock.now()
	open()
	if got := deadline(); got.Before(before.Add(time.Hour).Truncate(time.Microsecond)) || got.After(clock.now().Add(time.Hour)) {
		t.Fatalf("deadline after app traffic %v, want now+1h (%v)", got, before.Add(time.Hour))
	}
	if w, _ := store.GetWorkspaceByID(ctx, ws.ID); w.LastUsedAt.Before(before.Add(-time.Second)) {
		t.Fatalf("last_used_at %v not recorded", w.LastUsedAt)
	}
	// 50 minutes on, now+TTL is beyond the max: the bump stops there.
	clock.advance(50 * time.Minute)
	open()
	if got := deadline(); !got.Equal(maxDeadline) {
		t.Fatalf("deadline %v, want the max deadline %v", got, maxDeadline)
	}
}
