package site_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/wgmesh/coder/internal/browsertest"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/provisioner/templatearchive"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// appsDomain is the wildcard domain of subdomain apps in the browser tests;
// chromium resolves it to 127.0.0.1 by --host-resolver-rules.
const appsDomain = "example.test"

// browser is a headless chromium tab plus the test's artifact directory.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
	shots     int
}

// newBrowser starts a fresh headless chromium (its own profile) that
// t.Cleanup stops. A missing chromium fails the test.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	artifacts := os.Getenv("CODER_TEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else {
		artifacts = filepath.Join(artifacts, t.Name())
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := browsertest.Start(t, appsDomain, 1280, 900)
	return &browser{t: t, ctx: ctx, artifacts: artifacts}
}

// do runs actions, failing the test with what on error (and a screenshot).
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.screenshot("failure-" + strings.ReplaceAll(what, " ", "-"))
		body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		b.t.Fatalf("%s: %v\nlocation: %s\npage text:\n%s", what, err, loc, body)
	}
}

// waitJS waits until the JavaScript expression is truthy. Evaluation
// errors while a page navigates are retried until the deadline.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`!!(%s)`, expr)))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			b.do(what, func(context.Context, *chromedp.Target) (chromedp.Void, error) {
				return chromedp.Void{}, fmt.Errorf("timed out after %s (last error: %v)", timeout, lastErr)
			})
			return
		}
		select {
		case <-b.ctx.Done():
			b.t.Fatalf("%s: browser gone: %v", what, b.ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// eval returns the string value of a JavaScript expression.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves the viewport as a numbered PNG artifact and logs its path.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.shots++
	p := filepath.Join(b.artifacts, fmt.Sprintf("%02d-%s.png", b.shots, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string { return fmt.Sprintf("%q", s) }

// textIn is a JavaScript predicate: the element's text contains want.
func textIn(selector, want string) string {
	return fmt.Sprintf(`(() => { const el = document.querySelector(%s); return !!el && el.textContent.includes(%s); })()`,
		jsString(selector), jsString(want))
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// coderBinary builds cmd/coder once per test binary (the agent binary coderd
// serves, and the external provisioner daemon).
func coderBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "coder-site-test-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "coder")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "../cmd/coder")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("build coder: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.path != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.path))
	}
	os.Exit(code)
}

// startDaemon runs `coder provisioner start` against coderd until cleanup.
func startDaemon(t *testing.T, bin, coderURL, psk, home string) {
	t.Helper()
	var out bytes.Buffer
	deps := terraformtest.Find(t)
	cmd := exec.Command(bin, "provisioner", "start", "--url", coderURL, "--psk", psk, "--name", "browser-test",
		"--terraform-path", deps.Terraform, "--terraform-cli-config", deps.CLIConfig)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + os.TempDir()}
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start provisioner daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("provisioner daemon output:\n%s", out.String())
		}
	})
}

// pushLocalTemplate imports examples/templates/local as template "local".
func pushLocalTemplate(t *testing.T, client *codersdk.Client) {
	t.Helper()
	ctx := context.Background()
	archive, err := templatearchive.Create("../examples/templates/local")
	if err != nil {
		t.Fatal(err)
	}
	up, err := client.Upload(ctx, codersdk.ContentTypeTar, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{
		FileID: up.ID, StorageMethod: "file", Provisioner: "terraform",
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for v.Job.Status.Active() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the template import")
		}
		time.Sleep(200 * time.Millisecond)
		if v, err = client.TemplateVersion(ctx, v.ID); err != nil {
			t.Fatal(err)
		}
	}
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("template import %s: %s", v.Job.Status, v.Job.Error)
	}
	if _, err := client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: "local", VersionID: v.ID}); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserDashboard drives the dashboard in headless chromium against a
// real coderd, PostgreSQL, provisioner daemon, terraform and the Coder
// provider: first-user setup, login, creating a workspace from
// examples/templates/local with a parameter, watching it run, the web
// terminal (with reload and scrollback), apps by path and subdomain, and
// stopping the workspace. Screenshots land in $CODER_TEST_ARTIFACTS.
func TestBrowserDashboard(t *testing.T) {
	bin := coderBinary(t)
	const psk = "browser-test-psk"
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		// A TLS DERP relay with a pinned certificate, as in the mesh tests
		// (the agent is a separate process reading it from its manifest).
		Agents:       coderd.AgentOptions{DERPMap: tunneltest.RunDERP(t), HeartbeatInterval: time.Second},
		Provisioning: coderd.ProvisioningOptions{PSK: psk, AgentBinaryPath: bin, AcquireWait: 2 * time.Second},
		Apps:         coderd.AppsOptions{WildcardAccessURL: "*." + appsDomain},
	}})
	daemonHome := t.TempDir()
	startDaemon(t, bin, srv.URL.String(), psk, daemonHome)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		agentLog := filepath.Join(daemonHome, ".coder-workspaces", "owner-ws1", ".coder-agent", "agent.log")
		if data, err := os.ReadFile(agentLog); err == nil {
			t.Logf("agent log (%s):\n%s", agentLog, data)
		}
	})
	appPort := freePort(t)
	wsHome := filepath.Join(daemonHome, ".coder-workspaces", "owner-ws1")
	// Processes started inside the workspace (the agents of each start, the
	// http server the terminal starts). Stop and delete should end them;
	// whatever is still alive at the end is ended here and reported.
	var workspacePIDs []int
	notePID := func(file string) {
		data, err := os.ReadFile(filepath.Join(wsHome, file))
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			t.Fatalf("bad pid in %s: %q", file, data)
		}
		workspacePIDs = append(workspacePIDs, pid)
	}
	t.Cleanup(func() {
		for _, pid := range workspacePIDs {
			if syscall.Kill(pid, 0) == nil {
				t.Logf("workspace process %d outlived the workspace; sending SIGTERM", pid)
				_ = syscall.Kill(-pid, syscall.SIGTERM)
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	})
	base := strings.TrimSuffix(srv.URL.String(), "/")
	b := newBrowser(t)

	// First-user setup through the form: the dashboard sends a fresh
	// deployment to /setup.
	b.do("open dashboard", chromedp.Navigate(base+"/"))
	b.waitJS("setup page", `location.pathname === "/setup" && !!document.querySelector("#f-username")`, 30*time.Second)
	b.screenshot("setup")
	b.do("fill setup form",
		chromedp.SendKeys(chromedp.CSS("#f-username"), "owner"),
		chromedp.SendKeys(chromedp.CSS("#f-email"), "owner@coder.test"),
		chromedp.SendKeys(chromedp.CSS("#f-password"), coderdtest.FirstUserPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("templates page after setup", `location.pathname === "/templates" && document.querySelector("h1")?.textContent === "Templates"`, 30*time.Second)

	// Push the template with the API, as an admin would with the CLI.
	login, err := client.LoginWithPassword(context.Background(), codersdk.LoginWithPasswordRequest{
		Email: "owner@coder.test", Password: coderdtest.FirstUserPassword,
	})
	if err != nil {
		t.Fatal(err)
	}
	client.SetSessionToken(login.SessionToken)
	pushLocalTemplate(t, client)

	// Log out, then a wrong password shows an error, the right one logs in.
	b.do("log out", chromedp.Click(chromedp.CSS("#logout")))
	b.waitJS("login page", `location.pathname === "/login" && !!document.querySelector("#f-email")`, 30*time.Second)
	b.do("wrong password",
		chromedp.SendKeys(chromedp.CSS("#f-email"), "owner@coder.test"),
		chromedp.SendKeys(chromedp.CSS("#f-password"), "not-the-password"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("login error", textIn(".form-error", "Incorrect email or password."), 30*time.Second)
	b.screenshot("login-error")
	b.do("right password",
		clearInput("#f-password"),
		chromedp.SendKeys(chromedp.CSS("#f-password"), coderdtest.FirstUserPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("workspaces page", `location.pathname === "/workspaces" && document.querySelector("h1")?.textContent === "Workspaces"`, 30*time.Second)

	// Users (owners see the nav entry).
	b.do("users", chromedp.Click(chromedp.CSS(`#nav-users`)))
	b.waitJS("users list", `(() => { const r = document.querySelector('tr[data-user="owner"]'); return !!r && r.textContent.includes("owner@coder.test") && !!r.querySelector(".s-active"); })()`, 30*time.Second)
	b.screenshot("users")

	// Templates list and versions.
	b.do("templates", chromedp.Click(chromedp.CSS(`#nav a[href="/templates"]`)))
	b.waitJS("template row", `!!document.querySelector('tr[data-template="local"]')`, 30*time.Second)
	b.do("template page", chromedp.Click(chromedp.CSS(`tr[data-template="local"] th a`)))
	b.waitJS("template versions", `!!document.querySelector("tr[data-version] .s-succeeded") && !!document.querySelector("tr[data-version] .s-active")`, 30*time.Second)
	b.screenshot("template")

	// Create a workspace with a parameter; an invalid name is refused by
	// the server and the error lands next to the field.
	b.do("create form", chromedp.Click(chromedp.CSS(`a.button.primary[href="/templates/local/workspace"]`)))
	b.waitJS("parameter field", `!!document.querySelector("#param-greeting")`, 30*time.Second)
	b.do("submit invalid name",
		chromedp.SendKeys(chromedp.CSS("#workspace-name"), "Not A Valid Name!"),
		clearInput("#param-greeting"),
		chromedp.SendKeys(chromedp.CSS("#param-greeting"), "howdy"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("name validation error", `(() => { const e = document.querySelector('.field[data-field="name"] .field-error'); return !!e && e.textContent.length > 0 && document.querySelector("#workspace-name").getAttribute("aria-invalid") === "true"; })()`, 30*time.Second)
	b.screenshot("create-validation")
	b.do("submit valid form",
		clearInput("#workspace-name"),
		chromedp.SendKeys(chromedp.CSS("#workspace-name"), "ws1"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("workspace page", `location.pathname === "/@owner/ws1"`, 30*time.Second)
	// Build logs stream while the build runs, and the workspace reaches running
	// with its agent connected and ready.
	b.waitJS("build logs", `document.querySelectorAll("#build-logs .log").length > 0`, 2*time.Minute)
	b.waitJS("workspace running", textIn("#workspace-status", "running"), 3*time.Minute)
	b.waitJS("agent ready", `!!document.querySelector('article[data-agent="main"] .s-connected') && !!document.querySelector('article[data-agent="main"] .s-ready')`, 3*time.Minute)
	b.waitJS("files app healthy", `!!document.querySelector('a[data-app="files"] .s-healthy')`, 2*time.Minute)
	b.screenshot("workspace-running")
	notePID(".coder-agent/agent.pid")
	b.waitJS("resource kinds while running", resourceKindJS("terraform_data.agent", "computational", "ephemeral")+" && "+resourceKindJS("terraform_data.home", "peripheral", "persistent"), 30*time.Second)

	ws, err := client.WorkspaceByOwnerAndName(context.Background(), "owner", "ws1")
	if err != nil {
		t.Fatal(err)
	}
	b.waitJS("build logs complete", fmt.Sprintf(`document.querySelector("#build-logs").textContent.includes(%s)`, jsString("Apply complete")), time.Minute)

	// The parameter reached the workspace.
	buildParamsOK := false
	for _, r := range ws.LatestBuild.Resources {
		for _, a := range r.Agents {
			if a.EnvironmentVariables["GREETING"] == "howdy" {
				buildParamsOK = true
			}
		}
	}
	if !buildParamsOK {
		t.Fatalf("parameter greeting=howdy did not reach the agent: %+v", ws.LatestBuild.Resources)
	}

	// The list shows it running, with live agent status.
	b.do("workspaces list", chromedp.Click(chromedp.CSS(`#nav a[href="/workspaces"]`)))
	b.waitJS("list row", `(() => { const r = document.querySelector('tr[data-workspace="owner/ws1"]'); return !!r && !!r.querySelector(".s-running") && !!r.querySelector(".s-connected"); })()`, 30*time.Second)
	b.screenshot("workspaces")

	t.Run("Terminal", func(t *testing.T) {
		b.t = t
		b.do("open workspace", chromedp.Click(chromedp.CSS(`tr[data-workspace="owner/ws1"] th a`)))
		b.waitJS("terminal button", `!!document.querySelector('a[data-app="terminal"]')`, 30*time.Second)
		b.do("open terminal", chromedp.Click(chromedp.CSS(`a[data-app="terminal"]`)))
		b.waitJS("terminal connected", `document.body.dataset.state === "connected" && location.search.includes("reconnect=")`, time.Minute)
		firstURL, err := chromedp.Run(b.ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		typeLine(b, `echo "=$CODER_WORKSPACE_NAME="`)
		b.waitJS("echo output", textIn(".xterm-rows", "=ws1="), time.Minute)
		b.screenshot("terminal")

		// Reload: the same reconnect ID, the same shell, its scrollback.
		b.do("reload", chromedp.Reload())
		b.waitJS("terminal reconnected", `document.body.dataset.state === "connected"`, time.Minute)
		b.waitJS("scrollback after reload", textIn(".xterm-rows", "=ws1="), time.Minute)
		if loc, _ := chromedp.Run(b.ctx, chromedp.Location()); loc != firstURL {
			t.Fatalf("reload changed the terminal URL: %s -> %s", firstURL, loc)
		}
		// The shell is the same process: a variable set before survives.
		typeLine(b, `MARK=kept-$((40+2)); echo "mark=$MARK"`)
		b.waitJS("shell state", textIn(".xterm-rows", "mark=kept-42"), time.Minute)
		b.do("reload again", chromedp.Reload())
		b.waitJS("terminal reconnected again", `document.body.dataset.state === "connected"`, time.Minute)
		typeLine(b, `echo "again=$MARK"`)
		b.waitJS("same shell after reload", textIn(".xterm-rows", "again=kept-42"), time.Minute)

		// Resize: a smaller window sends a resize frame; the PTY follows.
		b.do("shrink viewport", chromedp.EmulateViewport(700, 400))
		b.waitJS("terminal refit", `document.querySelector(".xterm-rows").children.length < 30`, 30*time.Second)
		rows := b.eval(`String(document.querySelector(".xterm-rows").children.length)`)
		typeLine(b, `echo "size=$(stty size)="`)
		b.waitJS("pty size follows", fmt.Sprintf(`/size=%s \d+=/.test(document.querySelector(".xterm-rows").textContent)`, rows), time.Minute)
		b.screenshot("terminal-resized")
		b.do("restore viewport", chromedp.EmulateViewport(1280, 900))

		// Serve the workspace directory on a free port for the app tests
		// (the template's own app port 13337 may be taken by another test).
		typeLine(b, fmt.Sprintf(`touch browser-marker.txt; python3 -m http.server %d --bind 127.0.0.1 --directory "$PWD" >/dev/null 2>&1 & echo $! > browser-http.pid; echo "started=$?"`, appPort))
		b.waitJS("http server started", textIn(".xterm-rows", "started=0"), time.Minute)
		typeLine(b, fmt.Sprintf(`until (exec 3<>/dev/tcp/127.0.0.1/%d) 2>/dev/null; do sleep 0.1; done; echo "listening-$((%d))"`, appPort, appPort))
		b.waitJS("http server listening", textIn(".xterm-rows", fmt.Sprintf("listening-%d", appPort)), time.Minute)
		notePID("browser-http.pid")
	})
	b.t = t

	t.Run("AppByPath", func(t *testing.T) {
		b.t = t
		b.do("open workspace", chromedp.Navigate(base+"/@owner/ws1"))
		b.waitJS("files app button", `!!document.querySelector('a[data-app="files"]')`, time.Minute)
		// With a wildcard access URL every app opens on its own subdomain
		// (path apps share the dashboard origin and serve only the owner).
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		if href, want := b.eval(`document.querySelector('a[data-app="files"]').getAttribute("href")`), fmt.Sprintf("http://files--main--ws1--owner.%s:%s/", appsDomain, u.Port()); href != want {
			t.Fatalf("files app button links to %q, want %q", href, want)
		}
		// The server the terminal started, through the path-based proxy.
		b.do("open port by path", chromedp.Navigate(fmt.Sprintf("%s/@owner/ws1.main/ports/%d/", base, appPort)))
		b.waitJS("python http.server listing by path", `document.body.textContent.includes("Directory listing for /") && document.body.textContent.includes("browser-marker.txt")`, time.Minute)
		b.screenshot("port-by-path")
	})
	b.t = t

	t.Run("PortBySubdomain", func(t *testing.T) {
		b.t = t
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		appHost := fmt.Sprintf("%d--main--ws1--owner.%s:%s", appPort, appsDomain, u.Port())
		b.do("open port by subdomain", chromedp.Navigate("http://"+appHost+"/"))
		b.waitJS("python http.server listing on the subdomain", fmt.Sprintf(`location.host === %s && document.body.textContent.includes("Directory listing for /") && document.body.textContent.includes("browser-marker.txt")`, jsString(appHost)), time.Minute)
		// The app origin never sees the dashboard session cookie.
		if c := b.eval(`document.cookie`); strings.Contains(c, codersdk.SessionTokenCookie) {
			t.Fatalf("the app origin can read the session cookie: %q", c)
		}
		b.screenshot("port-by-subdomain")
	})
	b.t = t

	// Restart, stop and delete from the workspace page: the logs of each new
	// build stream in and the status follows.
	b.do("workspace page", chromedp.Navigate(base+"/@owner/ws1"))
	b.waitJS("restart button", `!!document.querySelector('button[data-action="restart"]')`, 30*time.Second)
	b.do("restart", chromedp.Click(chromedp.CSS(`button[data-action="restart"]`)))
	b.waitJS("restarted", `document.querySelector("#build-logs")?.closest("section")?.querySelector("h2")?.textContent.includes("start #3") && document.querySelector("#workspace-status")?.textContent.includes("running")`, 3*time.Minute)
	b.waitJS("agent ready after restart", `!!document.querySelector('article[data-agent="main"] .s-connected') && !!document.querySelector('article[data-agent="main"] .s-ready')`, 3*time.Minute)
	b.screenshot("workspace-restarted")
	notePID(".coder-agent/agent.pid")

	b.do("stop", chromedp.Click(chromedp.CSS(`button[data-action="stop"]`)))
	b.waitJS("stopped", textIn("#workspace-status", "stopped"), 3*time.Minute)
	b.waitJS("start button", `!!document.querySelector('button[data-action="start"]')`, 30*time.Second)
	b.waitJS("stop build logs", textIn("#build-logs", "Apply complete"), time.Minute)
	b.waitJS("a stopped workspace lists its persistent home", resourceKindJS("terraform_data.home", "peripheral", "persistent")+` && !document.querySelector('tr[data-resource="terraform_data.agent"]')`, 30*time.Second)
	b.screenshot("workspace-stopped")
	ws, err = client.WorkspaceByOwnerAndName(context.Background(), "owner", "ws1")
	if err != nil {
		t.Fatal(err)
	}
	if ws.LatestBuild.Transition != codersdk.WorkspaceTransitionStop || ws.LatestBuild.Status != codersdk.WorkspaceStatusStopped || ws.LatestBuild.BuildNumber != 4 {
		t.Fatalf("after stop: %s %s #%d", ws.LatestBuild.Transition, ws.LatestBuild.Status, ws.LatestBuild.BuildNumber)
	}

	// Delete asks for confirmation (accepted here), then the dashboard
	// returns to the list once the workspace is gone.
	b.do("accept confirmations", func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](`(() => { window.confirm = () => true; return true; })()`)(ctx, t)
		return chromedp.Void{}, err
	})
	b.do("delete", chromedp.Click(chromedp.CSS(`button[data-action="delete"]`)))
	b.waitJS("back to the list", `location.pathname === "/workspaces" && !document.querySelector('tr[data-workspace="owner/ws1"]')`, 3*time.Minute)
	list, err := client.Workspaces(context.Background(), "")
	if err != nil || len(list.Workspaces) != 0 {
		t.Fatalf("workspaces after delete: %+v %v", list, err)
	}
	b.screenshot("workspace-deleted")
	if errors.Is(context.Cause(b.ctx), context.Canceled) {
		t.Fatal("browser context ended early")
	}
}

// clearInput empties an input's value (what a user does before typing).
// resourceKindJS is a JavaScript expression that is true when the
// workspace page lists the resource with that kind and lifetime.
func resourceKindJS(resource, kind, lifetime string) string {
	return fmt.Sprintf(`(() => { const c = document.querySelector('tr[data-resource=%s] [data-kind]'); return !!c && c.dataset.kind === %s && c.dataset.lifetime === %s && c.textContent.includes(%s) && c.textContent.includes(%s); })()`,
		jsString(resource), jsString(kind), jsString(lifetime), jsString(kind), jsString(lifetime))
}

func clearInput(selector string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const el = document.querySelector(%s); el.value = ""; return true; })()`, jsString(selector)))(ctx, t)
		return chromedp.Void{}, err
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// typeLine types a shell line into the terminal and presses Enter. The text
// is inserted as one input event (synthetic key events for printable
// characters reach xterm.js twice, as keydown and keypress).
func typeLine(b *browser, line string) {
	b.t.Helper()
	insert := func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: line})
		return chromedp.Void{}, err
	}
	b.do("type "+line, chromedp.Focus(chromedp.CSS(".xterm-helper-textarea")), insert, chromedp.KeyEvent(kb.Enter))
}
