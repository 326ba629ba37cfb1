package site_test

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// TestBrowserWorkspaceSchedule: the workspace page of a running workspace
// with a TTL shows "Stops in 1h 0m"; Extend moves the deadline one hour
// (through PUT /extend); a dormant workspace shows the banner with its
// deletion date, and Activate clears it. Real coderd, PostgreSQL,
// terraform (in-process daemon) and headless Chromium.
func TestBrowserWorkspaceSchedule(t *testing.T) {
	ctx := context.Background()
	client, srv := newTerraformServer(t, "schedule-browser", coderd.AgentOptions{})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "resource \"terraform_data\" \"box\" {}\n"
	_ = tw.WriteHeader(&tar.Header{Name: "main.tf", Mode: 0o644, Size: int64(len(body))})
	_, _ = tw.Write([]byte(body))
	_ = tw.Close()
	up, err := client.Upload(ctx, codersdk.ContentTypeTar, &buf)
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{FileID: up.ID, StorageMethod: "file", Provisioner: "terraform"})
	if err != nil {
		t.Fatal(err)
	}
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
	waitFor("import", func() bool { v, err = client.TemplateVersion(ctx, v.ID); return err == nil && !v.Job.Status.Active() })
	tmpl, err := client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: "box", VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	maxTTL, ttd, del := (4 * time.Hour).Milliseconds(), (24 * time.Hour).Milliseconds(), (7 * 24 * time.Hour).Milliseconds()
	if _, err := client.UpdateTemplateSchedule(ctx, tmpl.ID, codersdk.TemplateScheduleFields{MaxTTLMillis: &maxTTL, TimeTilDormantMillis: &ttd, TimeTilDormantAutoDeleteMillis: &del}); err != nil {
		t.Fatal(err)
	}
	ttl := time.Hour.Milliseconds()
	ws, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "box", TTLMillis: &ttl})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("start", func() bool {
		ws, err = client.Workspace(ctx, ws.ID)
		return err == nil && ws.LatestBuild.Status == codersdk.WorkspaceStatusRunning
	})
	first := *ws.LatestBuild.Deadline

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
	b.do("open workspace", chromedp.Navigate(base+"/@owner/box"))
	b.waitJS("deadline shown", `/^Stops in (59m|1h 0m)\./.test(document.querySelector("#workspace-deadline")?.textContent || "")`, 30*time.Second)
	b.screenshot("stops-in")
	b.do("extend", chromedp.Click(chromedp.CSS(`#workspace-deadline button[data-action="extend"]`)))
	b.waitJS("extended", `/^Stops in (1h 59m|2h 0m)\./.test(document.querySelector("#workspace-deadline")?.textContent || "")`, 30*time.Second)
	// The browser's clock has millisecond precision.
	if ws, err = client.Workspace(ctx, ws.ID); err != nil || ws.LatestBuild.Deadline.Sub(first.Add(time.Hour)).Abs() >= time.Millisecond {
		t.Fatalf("deadline after Extend %v, want %v (%v)", ws.LatestBuild.Deadline, first.Add(time.Hour), err)
	}

	ws, err = client.UpdateWorkspaceDormancy(ctx, ws.ID, codersdk.UpdateWorkspaceDormancy{Dormant: true})
	if err != nil || ws.DeletingAt == nil {
		t.Fatalf("mark dormant: %v %v", ws.DeletingAt, err)
	}
	b.waitJS("dormant banner", `(document.querySelector("#dormant-banner")?.textContent || "").includes("will be deleted on")`, 30*time.Second)
	b.screenshot("dormant")
	waitFor("dormancy stop", func() bool {
		ws, err = client.Workspace(ctx, ws.ID)
		return err == nil && !ws.LatestBuild.Job.Status.Active()
	})
	b.do("activate", chromedp.Click(chromedp.CSS(`#dormant-banner button[data-action="activate"]`)))
	b.waitJS("banner gone", `!document.querySelector("#dormant-banner")`, 30*time.Second)
	if ws, err = client.Workspace(ctx, ws.ID); err != nil || ws.DormantAt != nil {
		t.Fatalf("after Activate: dormant %v (%v)", ws.DormantAt, err)
	}
}
