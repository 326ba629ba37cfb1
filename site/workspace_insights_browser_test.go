package site_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/wgmesh/coder/agent"
	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// insightsTemplate has an agent with two metadata items and a start script
// that prints a line, blocks until a gate file appears, then prints
// another. The agent token is written to a file (the test runs the agent
// in-process with it).
func insightsTemplate(tokenFile, gate string) string {
	return fmt.Sprintf(`terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  metadata {
    key          = "answer"
    display_name = "The answer"
    script       = "echo value-$((6*7))"
    interval     = 1
    timeout      = 5
  }
  metadata {
    key          = "broken"
    display_name = "Broken item"
    script       = "exit 3"
    interval     = 1
    timeout      = 5
  }
}

resource "coder_script" "gate" {
  agent_id     = coder_agent.main.id
  display_name = "Wait for gate"
  run_on_start = true
  script       = <<-EOT
    echo "first-line-$((20+1))"
    while [ ! -e %q ]; do sleep 0.1; done
    echo "second-line-$((40+2))"
  EOT
}

resource "terraform_data" "token" {
  input = coder_agent.main.token
  provisioner "local-exec" {
    command = "printf %%s \"$TOKEN\" > \"$OUT\""
    environment = {
      TOKEN = coder_agent.main.token
      OUT   = %q
    }
  }
}
`, gate, tokenFile)
}

// TestBrowserWorkspaceInsights: the workspace page shows the startup log
// of a script while it runs (the first line, then, after the test opens
// the gate, the second), the script's status, the agent's metadata values
// (and a failing item's error), the listening ports the agent detects with
// a link through the apps proxy, and the build history (number,
// transition, reason, initiator, duration, status) with each build's log.
// The web terminal shows underscores (a pixel probe of a row of "_").
// Real coderd, PostgreSQL, terraform with the Coder provider, an agent and
// headless Chromium.
func TestBrowserWorkspaceInsights(t *testing.T) {
	ctx := context.Background()
	client, srv := newTerraformServer(t, "insights-browser", coderd.AgentOptions{DERPMap: tunneltest.RunDERP(t), HeartbeatInterval: time.Second, LogsPollInterval: 100 * time.Millisecond})

	dir := t.TempDir()
	tokenFile, gate := filepath.Join(dir, "token"), filepath.Join(dir, "gate")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := insightsTemplate(tokenFile, gate)
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
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import %s: %s", v.Job.Status, v.Job.Error)
	}
	tmpl, err := client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: "insights", VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "ins"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("start build", func() bool {
		ws, err = client.Workspace(ctx, ws.ID)
		return err == nil && !ws.LatestBuild.Job.Status.Active()
	})
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusRunning {
		t.Fatalf("start build %s: %s", ws.LatestBuild.Status, ws.LatestBuild.Job.Error)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil || len(token) == 0 {
		t.Fatalf("agent token file: %q %v", token, err)
	}

	// A server the agent will list among its listening ports.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("port-marker-page"))
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = httpSrv.Serve(ln) }()
	t.Cleanup(func() { _ = httpSrv.Close() })
	appPort := ln.Addr().(*net.TCPAddr).Port

	a, err := agent.New(agent.Options{
		Client: agentsdk.New(srv.URL, string(token)), DataDir: t.TempDir(), Shell: "/bin/sh",
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })

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
	b.do("open workspace", chromedp.Navigate(base+"/@owner/ins"))

	// The running script's log, live.
	scriptLog := `[data-agent-insight="main"] details[data-source-name="Wait for gate"]`
	b.waitJS("first script line", textIn(scriptLog+" pre", "first-line-21"), 2*time.Minute)
	b.waitJS("script running", `document.querySelector(`+jsString(scriptLog)+`)?.dataset.status === "running"`, time.Minute)
	if strings.Contains(b.eval(`document.querySelector(`+jsString(scriptLog+" pre")+`).textContent`), "second-line") {
		t.Fatal("the second line shows before the gate opened")
	}
	// Metadata values and a failing item's error.
	b.waitJS("metadata value", textIn(`[data-agent-insight="main"] dd[data-metadata="answer"]`, "value-42"), time.Minute)
	b.waitJS("metadata error", textIn(`[data-agent-insight="main"] dd[data-metadata="broken"]`, "exit status 3"), time.Minute)
	// The listening port, linked through the apps proxy.
	portSel := fmt.Sprintf(`[data-agent-insight="main"] a[data-port="%d"]`, appPort)
	b.waitJS("listening port", `!!document.querySelector(`+jsString(portSel)+`)`, time.Minute)
	if href, want := b.eval(`document.querySelector(`+jsString(portSel)+`).getAttribute("href")`), fmt.Sprintf("/@owner/ins.main/ports/%d/", appPort); href != want {
		t.Fatalf("port link %q, want %q", href, want)
	}
	b.screenshot("script-running")

	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b.waitJS("second script line", textIn(scriptLog+" pre", "second-line-42"), time.Minute)
	b.waitJS("script ended ok", `document.querySelector(`+jsString(scriptLog)+`)?.dataset.status === "ok"`, time.Minute)
	b.waitJS("exit code shown", textIn(scriptLog+" summary", "exit code 0"), time.Minute)
	b.screenshot("script-done")

	t.Run("TerminalUnderscores", func(t *testing.T) {
		b.t = t
		defer func() { b.t = t }()
		terminalUnderscores(t, b, base+"/@owner/ins.main/terminal")
	})
	b.t = t
	b.do("back to the workspace", chromedp.Navigate(base+"/@owner/ins"))

	// Build history: stop the workspace, then both builds are listed; the
	// first build's log opens from the history.
	if _, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop}); err != nil {
		t.Fatal(err)
	}
	row := func(n int, col string) string {
		return fmt.Sprintf(`#build-history tr[data-build="%d"] [data-col=%q]`, n, col)
	}
	b.waitJS("stop build in history", textIn(row(2, "status"), "stopped"), 3*time.Minute)
	for _, c := range []struct {
		build     int
		col, want string
	}{
		{1, "transition", "start"}, {1, "reason", "initiator"}, {1, "initiator", "owner"}, {1, "status", "running"},
		{2, "transition", "stop"}, {2, "reason", "initiator"}, {2, "initiator", "owner"},
	} {
		if got := b.eval(`document.querySelector(` + jsString(row(c.build, c.col)) + `)?.textContent || ""`); !strings.Contains(got, c.want) {
			t.Fatalf("build #%d %s: %q, want %q", c.build, c.col, got, c.want)
		}
	}
	if got := b.eval(`document.querySelector(` + jsString(row(1, "duration")) + `)?.textContent || ""`); !strings.HasSuffix(got, "s") {
		t.Fatalf("build #1 duration %q", got)
	}
	b.waitJS("stop build logs", `document.querySelector("#build-logs")?.closest("section")?.querySelector("h2")?.textContent.includes("stop #2")`, time.Minute)
	b.do("view build #1 logs", chromedp.Click(chromedp.CSS(`#build-history tr[data-build="1"] button[data-action="view-build-logs"]`)))
	b.waitJS("build #1 logs", `document.querySelector("#build-logs")?.closest("section")?.querySelector("h2")?.textContent.includes("start #1") && document.querySelector("#build-logs").textContent.includes("terraform_data.token")`, time.Minute)
	b.screenshot("build-history")
}

// rowForeground counts the pixels of a PNG that differ clearly from the
// terminal background (#111418).
func rowForeground(t *testing.T, data []byte) int {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode screenshot: %v", err)
	}
	return countForeground(img)
}

func countForeground(img image.Image) int {
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 > 0x60 || g>>8 > 0x60 || bl>>8 > 0x60 {
				n++
			}
		}
	}
	return n
}

// terminalUnderscores: the web terminal draws underscores. xterm clips
// each row to its cell height, so a row of "_" must leave foreground
// pixels inside its own row box (a row of "=" is the probe's control).
// The row's text is checked first (what xterm holds), then its pixels.
func terminalUnderscores(t *testing.T, b *browser, terminalURL string) {
	b.do("open terminal", chromedp.Navigate(terminalURL))
	b.waitJS("terminal connected", `document.body.dataset.state === "connected"`, time.Minute)
	typeLine(b, `u=$(printf '_%.0s' 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20); e=$(echo "$u" | tr _ =); printf '%s\n%s\n' "$u" "$e"; echo "$CODER_WORKSPACE_NAME" done_$((1+1))`)
	b.waitJS("underscore rows", textIn(".xterm-rows", "done_2"), time.Minute)
	b.screenshot("terminal-underscores")
	probe := func(glyph string) int {
		t.Helper()
		want := strings.Repeat(glyph, 20)
		rect := b.eval(fmt.Sprintf(`(() => {
			const row = [...document.querySelectorAll(".xterm-rows > div")].find((r) => r.textContent.trim() === %s);
			if (!row) return "";
			const r = row.getBoundingClientRect();
			const span = [...row.querySelectorAll("span")].find((s) => s.textContent.includes(%s)) || row;
			const s = span.getBoundingClientRect();
			return [s.left, r.top, s.width, r.height].map(Math.round).join(",");
		})()`, jsString(want), jsString(glyph)))
		var x, y, w, hgt float64
		if _, err := fmt.Sscanf(rect, "%g,%g,%g,%g", &x, &y, &w, &hgt); err != nil || w <= 0 || hgt <= 0 {
			t.Fatalf("no terminal row of %q (rect %q): %v", want, rect, err)
		}
		var shot []byte
		b.do("screenshot row of "+glyph, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			res, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
				Format: page.CaptureScreenshotFormatPng,
				Clip:   &page.Viewport{X: x, Y: y, Width: w, Height: hgt, Scale: 1},
			})
			if err == nil {
				shot = res.Data
			}
			return chromedp.Void{}, err
		})
		if err := os.WriteFile(filepath.Join(b.artifacts, "row-"+map[string]string{"_": "underscore", "=": "equals"}[glyph]+".png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
		return rowForeground(t, shot)
	}
	eq, us := probe("="), probe("_")
	t.Logf("foreground pixels in the row box: '=' %d, '_' %d", eq, us)
	if eq == 0 {
		t.Fatal("the probe sees no foreground in a row of '=' (probe broken)")
	}
	if us == 0 {
		t.Fatal("a row of underscores draws nothing inside its row: underscores are clipped")
	}
}
