package coderd_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// pushVersion uploads body as a version of template (uuid.Nil: none yet)
// with the given Terraform variable values and waits for its import.
func (e *lifecycleEnv) pushVersion(t *testing.T, template uuid.UUID, body string, vars []codersdk.VariableValue) codersdk.TemplateVersion {
	t.Helper()
	ctx := context.Background()
	up, err := e.client.Upload(ctx, codersdk.ContentTypeTar, strings.NewReader(string(tarMain(t, body))))
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{
		TemplateID: template, FileID: up.ID, StorageMethod: "file", Provisioner: "terraform", UserVariableValues: vars,
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "template import", func() bool {
		v, err = e.client.TemplateVersion(ctx, v.ID)
		return err == nil && !v.Job.Status.Active()
	})
	return v
}

// variablesTF declares a required variable shown as resource metadata, a
// sensitive required one and one with a default.
const variablesTF = `terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

variable "region" {
  type        = string
  description = "Where workspaces run"
}

variable "api_key" {
  type      = string
  sensitive = true
}

variable "size" {
  type    = string
  default = "small"
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
    key   = sha256(var.api_key)
  }
}

resource "coder_metadata" "dev" {
  count       = data.coder_workspace.me.start_count
  resource_id = terraform_data.dev[0].id
  item {
    key   = "region"
    value = var.region
  }
  item {
    key   = "size"
    value = var.size
  }
}
`

// TestTemplateVariables: a push without a required variable fails with an
// error naming it; with values the import stores the variable blocks; the
// API never returns the sensitive value; builds get the values; no log line
// holds the sensitive value.
func TestTemplateVariables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	const secret = "k3y-that-must-stay-secret"

	failed := e.pushVersion(t, uuid.Nil, variablesTF, []codersdk.VariableValue{{Name: "api_key", Value: secret}})
	if failed.Job.Status != codersdk.ProvisionerJobFailed || !strings.Contains(failed.Job.Error, `"region"`) ||
		!strings.Contains(failed.Job.Error, "--variable region=VALUE") {
		t.Fatalf("import without region: %s %q; want a failure naming region and --variable", failed.Job.Status, failed.Job.Error)
	}

	v := e.pushVersion(t, uuid.Nil, variablesTF, []codersdk.VariableValue{{Name: "region", Value: "eu-west"}, {Name: "api_key", Value: secret}})
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import: %s %q", v.Job.Status, v.Job.Error)
	}
	tmpl, err := e.client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: "vars", VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	vars, err := e.client.TemplateVersionVariables(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]codersdk.TemplateVersionVariable{}
	for _, tv := range vars {
		got[tv.Name] = tv
	}
	if r := got["region"]; r.Value != "eu-west" || !r.Required || r.Description != "Where workspaces run" || r.Sensitive {
		t.Fatalf("region = %+v", r)
	}
	if s := got["size"]; s.Value != "small" || s.DefaultValue != "small" || s.Required {
		t.Fatalf("size = %+v", s)
	}
	if k := got["api_key"]; !k.Sensitive || k.Value != "" || k.DefaultValue != "" || !k.Required {
		t.Fatalf("api_key = %+v; a sensitive value must never be returned", k)
	}
	// A member may read the template, still not the secret.
	member, _ := coderdtest.CreateAnotherUser(t, e.client)
	res, err := member.Request(ctx, http.MethodGet, "/api/v2/templateversions/"+v.ID.String()+"/variables", nil)
	if err != nil {
		t.Fatal(err)
	}
	body := new(strings.Builder)
	_, _ = io.Copy(body, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || strings.Contains(body.String(), secret) || !strings.Contains(body.String(), "eu-west") {
		t.Fatalf("member variables: %d %s", res.StatusCode, body)
	}

	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "vars"})
	if err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	if ws.LatestBuild.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("build: %s %q", ws.LatestBuild.Job.Status, ws.LatestBuild.Job.Error)
	}
	meta := map[string]string{}
	for _, r := range ws.LatestBuild.Resources {
		for _, m := range r.Metadata {
			meta[m.Key] = m.Value
		}
	}
	if meta["region"] != "eu-west" || meta["size"] != "small" {
		t.Fatalf("build metadata %v: the build did not get the variable values", meta)
	}
	// A new version inherits the values the push does not give (the
	// sensitive one included, without it leaving the server), a given one
	// wins, and one the new template no longer declares is dropped.
	v2 := e.pushVersion(t, tmpl.ID, variablesTF+"\n# v2\n", []codersdk.VariableValue{{Name: "size", Value: "large"}})
	if v2.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import of v2 without the required values: %s %q; want them inherited", v2.Job.Status, v2.Job.Error)
	}
	vars2, err := e.client.TemplateVersionVariables(ctx, v2.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tv := range vars2 {
		if (tv.Name == "region" && tv.Value != "eu-west") || (tv.Name == "size" && tv.Value != "large") || (tv.Name == "api_key" && tv.Value != "") {
			t.Fatalf("v2 variable %+v", tv)
		}
	}
	withoutKey := strings.Replace(strings.Replace(variablesTF, "    key   = sha256(var.api_key)\n", "", 1),
		"variable \"api_key\" {\n  type      = string\n  sensitive = true\n}\n", "", 1)
	if withoutKey == variablesTF || strings.Contains(withoutKey, "api_key") {
		t.Fatal("test template edit did not apply")
	}
	if v3 := e.pushVersion(t, tmpl.ID, withoutKey, nil); v3.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import of a version without the inherited variable: %s %q", v3.Job.Status, v3.Job.Error)
	}

	for _, logs := range []func() (<-chan codersdk.ProvisionerJobLog, error){
		func() (<-chan codersdk.ProvisionerJobLog, error) {
			ch, _, err := e.client.TemplateVersionLogsAfter(ctx, v.ID, 0, false)
			return ch, err
		},
		func() (<-chan codersdk.ProvisionerJobLog, error) {
			ch, _, err := e.client.WorkspaceBuildLogsAfter(ctx, ws.LatestBuild.ID, 0, false)
			return ch, err
		},
	} {
		ch, err := logs()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for l := range ch {
			n++
			if strings.Contains(l.Output, secret) {
				t.Fatalf("a job log line holds the sensitive value: %q", l.Output)
			}
		}
		if n == 0 {
			t.Fatal("no logs to check")
		}
	}
}

// TestRequireActiveVersion: with require_active_version a member's start
// builds the active version even when the workspace was on an older one,
// naming an older version is refused, and the setting is visible on the
// template; a PATCH with one bad field changes nothing.
func TestRequireActiveVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "require", lifecycleTF, codersdk.TemplateScheduleFields{})
	v1 := tmpl.ActiveVersionID
	member, _ := coderdtest.CreateAnotherUser(t, e.client)
	ws, err := member.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "req"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitLatest(t, member, ws.ID)
	v2 := e.pushVersion(t, tmpl.ID, lifecycleTF+"\n# v2\n", nil)
	if err := e.client.UpdateActiveTemplateVersion(ctx, tmpl.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: v2.ID}); err != nil {
		t.Fatal(err)
	}
	if ws, _ = member.Workspace(ctx, ws.ID); !ws.Outdated {
		t.Fatal("workspace on v1 is not outdated after v2 was promoted")
	}

	// A PATCH with a good and a bad field stores neither.
	_, err = e.client.UpdateTemplateMeta(ctx, tmpl.ID.String(), codersdk.UpdateTemplateMeta{
		RequireActiveVersion: ptr(true), DisplayName: ptr("Changed"),
		TemplateScheduleFields: codersdk.TemplateScheduleFields{DefaultTTLMillis: ptr(int64(-1))},
	})
	wantStatus(t, err, http.StatusBadRequest, "PATCH with a negative default TTL")
	if cur, _ := e.client.TemplateByName(ctx, tmpl.Name); cur.RequireActiveVersion || cur.DisplayName == "Changed" {
		t.Fatalf("a refused PATCH was half applied: %+v", cur)
	}
	// Members may not change it.
	_, err = member.UpdateTemplateMeta(ctx, tmpl.ID.String(), codersdk.UpdateTemplateMeta{RequireActiveVersion: ptr(true)})
	wantStatus(t, err, http.StatusForbidden, "member PATCH")
	updated, err := e.client.UpdateTemplateMeta(ctx, tmpl.ID.String(), codersdk.UpdateTemplateMeta{RequireActiveVersion: ptr(true)})
	if err != nil || !updated.RequireActiveVersion {
		t.Fatalf("set require_active_version: %+v %v", updated, err)
	}

	if _, err := member.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop}); err != nil {
		t.Fatal(err)
	}
	if ws = e.waitLatest(t, member, ws.ID); ws.LatestBuild.TemplateVersionID != v1 {
		t.Fatalf("stop used version %s, want the workspace's own %s", ws.LatestBuild.TemplateVersionID, v1)
	}
	_, err = member.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart, TemplateVersionID: v1})
	if apiErr := wantStatus(t, err, http.StatusForbidden, "member start naming the old version"); !strings.Contains(apiErr.Message, "requires its active version") {
		t.Fatalf("refusal message %q", apiErr.Message)
	}
	b, err := member.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart})
	if err != nil {
		t.Fatal(err)
	}
	if b.TemplateVersionID != v2.ID {
		t.Fatalf("start built version %s, want the active %s", b.TemplateVersionID, v2.ID)
	}
	if ws = e.waitLatest(t, member, ws.ID); ws.LatestBuild.Job.Status != codersdk.ProvisionerJobSucceeded || ws.Outdated {
		t.Fatalf("after the start: %s outdated=%v", ws.LatestBuild.Job.Status, ws.Outdated)
	}
}

// TestTemplateDeleteAndArchive: a template with workspaces cannot be
// deleted (409 naming the count); the active version cannot be archived;
// an archived version is hidden, unusable and cannot be promoted until
// unarchived; members can do neither.
func TestTemplateDeleteAndArchive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "del", lifecycleTF, codersdk.TemplateScheduleFields{})
	v1 := tmpl.ActiveVersionID
	member, _ := coderdtest.CreateAnotherUser(t, e.client)
	ws, err := member.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "keep"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitLatest(t, member, ws.ID)

	wantStatus(t, member.DeleteTemplate(ctx, tmpl.ID.String()), http.StatusForbidden, "member delete")
	apiErr := wantStatus(t, e.client.DeleteTemplate(ctx, tmpl.ID.String()), http.StatusConflict, "delete of a used template")
	if !strings.Contains(apiErr.Message, "used by 1 workspace") {
		t.Fatalf("refusal message %q", apiErr.Message)
	}

	wantStatus(t, e.client.ArchiveTemplateVersion(ctx, v1), http.StatusBadRequest, "archive the active version")
	v2 := e.pushVersion(t, tmpl.ID, lifecycleTF+"\n# v2\n", nil)
	if err := e.client.UpdateActiveTemplateVersion(ctx, tmpl.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: v2.ID}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, member.ArchiveTemplateVersion(ctx, v1), http.StatusForbidden, "member archive")
	if err := e.client.ArchiveTemplateVersion(ctx, v1); err != nil {
		t.Fatal(err)
	}
	listed, _ := e.client.TemplateVersionsByTemplate(ctx, tmpl.ID.String())
	all, _ := e.client.TemplateVersionsByTemplateIncludingArchived(ctx, tmpl.ID.String())
	if len(listed) != 1 || listed[0].ID != v2.ID || len(all) != 2 {
		t.Fatalf("versions: %d listed, %d with archived; want 1 and 2", len(listed), len(all))
	}
	_, err = member.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateVersionID: v1, Name: "old"})
	wantStatus(t, err, http.StatusBadRequest, "workspace on an archived version")
	err = e.client.UpdateActiveTemplateVersion(ctx, tmpl.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: v1})
	wantStatus(t, err, http.StatusBadRequest, "promote an archived version")
	if err := e.client.UnarchiveTemplateVersion(ctx, v1); err != nil {
		t.Fatal(err)
	}
	if err := e.client.UpdateActiveTemplateVersion(ctx, tmpl.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: v1}); err != nil {
		t.Fatalf("promote after unarchive: %v", err)
	}

	if _, err := member.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionDelete}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "workspace deleted", func() bool {
		w, err := member.Workspace(ctx, ws.ID)
		return err != nil || w.LatestBuild.Status == codersdk.WorkspaceStatusDeleted
	})
	if err := e.client.DeleteTemplate(ctx, tmpl.ID.String()); err != nil {
		t.Fatalf("delete of an unused template: %v", err)
	}
	_, err = e.client.TemplateByName(ctx, tmpl.Name)
	wantStatus(t, err, http.StatusNotFound, "deleted template")
	_, err = member.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "late"})
	wantStatus(t, err, http.StatusBadRequest, "workspace of a deleted template")
}

// TestAutostartUsesRequiredActiveVersion: the lifecycle executor's
// autostart of a workspace built from an old version builds the active
// version when the template requires it (the injected clock drives the
// schedule).
func TestAutostartUsesRequiredActiveVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newLifecycleEnv(t)
	tmpl := e.template(t, "auto-active", lifecycleTF, codersdk.TemplateScheduleFields{})
	sched := "CRON_TZ=Europe/Berlin 30 8 * * 1-5"
	ws, err := e.client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "auto", AutostartSchedule: &sched})
	if err != nil {
		t.Fatal(err)
	}
	e.waitLatest(t, e.client, ws.ID)
	if _, err := e.client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop}); err != nil {
		t.Fatal(err)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	v2 := e.pushVersion(t, tmpl.ID, lifecycleTF+"\n# v2\n", nil)
	if err := e.client.UpdateActiveTemplateVersion(ctx, tmpl.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: v2.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.UpdateTemplateMeta(ctx, tmpl.ID.String(), codersdk.UpdateTemplateMeta{RequireActiveVersion: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	due := nextWeekday830(*ws.LatestBuild.Job.CompletedAt, berlin)
	e.clock.AdvanceTo(due)
	if s := e.tickAt(t, due); s.Transitions[ws.ID] != "start" {
		t.Fatalf("tick at %v: %+v", due, s)
	}
	ws = e.waitLatest(t, e.client, ws.ID)
	if b := ws.LatestBuild; b.Reason != "autostart" || b.TemplateVersionID != v2.ID || b.Status != codersdk.WorkspaceStatusRunning {
		t.Fatalf("autostart: reason %s version %s (want %s) status %s %s", b.Reason, b.TemplateVersionID, v2.ID, b.Status, b.Job.Error)
	}
}
