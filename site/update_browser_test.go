package site_test

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// TestBrowserUpdateAndVariables: the template page lists the active
// version's Terraform variables (a sensitive value is never sent to the
// browser); an outdated workspace shows an Update button that builds the
// active version, after which the button is gone. Real coderd, PostgreSQL,
// terraform (in-process daemon) and headless Chromium.
func TestBrowserUpdateAndVariables(t *testing.T) {
	ctx := context.Background()
	const secret = "browser-secret-never-shown"
	client, srv := newTerraformServer(t, "update-browser", coderd.AgentOptions{})

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	push := func(template uuid.UUID, body string) codersdk.TemplateVersion {
		t.Helper()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: "main.tf", Mode: 0o644, Size: int64(len(body))})
		_, _ = tw.Write([]byte(body))
		_ = tw.Close()
		up, err := client.Upload(ctx, codersdk.ContentTypeTar, &buf)
		if err != nil {
			t.Fatal(err)
		}
		v, err := client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{
			TemplateID: template, FileID: up.ID, StorageMethod: "file", Provisioner: "terraform",
			UserVariableValues: []codersdk.VariableValue{{Name: "region", Value: "eu-west"}, {Name: "token", Value: secret}},
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor("import", func() bool { v, err = client.TemplateVersion(ctx, v.ID); return err == nil && !v.Job.Status.Active() })
		if v.Job.Status != codersdk.ProvisionerJobSucceeded {
			t.Fatalf("import: %s %q", v.Job.Status, v.Job.Error)
		}
		return v
	}
	const body = `variable "region" {
  type        = string
  description = "Where workspaces run"
}
variable "token" {
  type      = string
  sensitive = true
}
resource "terraform_data" "box" {
  input = "${var.region}-${sha256(var.token)}"
}
`
	v1 := push(uuid.Nil, body)
	tmpl, err := client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: "box", VersionID: v1.ID})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "box"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("start", func() bool {
		ws, err = client.Workspace(ctx, ws.ID)
		return err == nil && ws.LatestBuild.Status == codersdk.WorkspaceStatusRunning
	})
	v2 := push(tmpl.ID, body+"# v2\n")
	if err := client.UpdateActiveTemplateVersion(ctx, tmpl.ID.String(), codersdk.UpdateActiveTemplateVersion{ID: v2.ID}); err != nil {
		t.Fatal(err)
	}

	base := strings.TrimSuffix(srv.URL.String(), "/")
	b := newBrowser(t)
	b.do("log in", chromedp.Navigate(base+"/login"))
	b.waitJS("login page", `!!document.querySelector("#f-email")`, 30*time.Second)
	b.do("fill login",
		chromedp.SendKeys(chromedp.CSS("#f-email"), "owner@coder.test"),
		chromedp.SendKeys(chromedp.CSS("#f-password"), coderdtest.FirstUserPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("workspaces page", `location.pathname === "/workspaces"`, 30*time.Second)

	b.do("open template", chromedp.Navigate(base+"/templates/box"))
	b.waitJS("variables table", `(document.querySelector('#template-variables tr[data-variable="region"]')?.textContent || "").includes("eu-west")`, 30*time.Second)
	page := b.eval(`document.documentElement.outerHTML`)
	if !strings.Contains(page, `data-variable="token"`) || strings.Contains(page, secret) {
		t.Fatal("template page: the sensitive variable is missing or its value reached the browser")
	}
	b.screenshot("template-variables")

	b.do("open workspace", chromedp.Navigate(base+"/@owner/box"))
	b.waitJS("update button", `!!document.querySelector('button[data-action="update"]')`, 30*time.Second)
	b.screenshot("update-button")
	b.do("update", chromedp.Click(chromedp.CSS(`button[data-action="update"]`)))
	waitFor("update build", func() bool {
		ws, err = client.Workspace(ctx, ws.ID)
		return err == nil && ws.LatestBuild.TemplateVersionID == v2.ID && !ws.LatestBuild.Job.Status.Active()
	})
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusRunning || ws.Outdated {
		t.Fatalf("after Update: %s outdated=%v (%s)", ws.LatestBuild.Status, ws.Outdated, ws.LatestBuild.Job.Error)
	}
	b.waitJS("update button gone", `!document.querySelector('button[data-action="update"]')`, 30*time.Second)
}
