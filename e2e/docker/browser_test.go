package docker_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/wgmesh/coder/internal/browsertest"

	"github.com/wgmesh/coder/codersdk"
)

// chrome is a headless chromium tab; t.Cleanup stops it.
type chrome struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	ctx := browsertest.Start(t, appsDomain, 1400, 900)
	return &chrome{t: t, ctx: ctx, dir: t.ArtifactDir()}
}

// run runs actions with a bound, failing the test with a screenshot.
func (c *chrome) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.screenshot("failure")
		c.t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until the JavaScript expression is truthy (errors while a
// page loads are retried until the deadline).
func (c *chrome) waitJS(what, expr string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`!!(%s)`, expr)))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			c.screenshot("failure")
			text, _ := chromedp.Run(c.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
			loc, _ := chromedp.Run(c.ctx, chromedp.Location())
			c.t.Fatalf("%s: timed out after %s (last error %v)\nlocation %s\npage text:\n%s", what, timeout, lastErr, loc, text)
		}
		select {
		case <-c.ctx.Done():
			c.t.Fatalf("%s: browser gone: %v", what, c.ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// screenshot saves the viewport under the test's artifact directory and
// prints the path.
func (c *chrome) screenshot(name string) string {
	c.t.Helper()
	png, err := chromedp.Run(c.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		c.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(c.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("screenshot: %s", p)
	return p
}

// TestCodeServerInBrowser opens code-server from a docker workspace through
// coderd's apps proxy in headless Chromium, by path (on the dashboard's
// origin) and by subdomain (its own origin), and waits for the VS Code
// workbench to list the workspace's files in its explorer: the workbench's
// websocket and its files come from the container through the mesh. Before
// logging in, the app is not served.
func TestCodeServerInBrowser(t *testing.T) {
	requireDocker(t)
	s := startServer(t)
	dc := newDockerCleanup(t)
	owner := s.cliFor(s.Client, s.Owner.Username)
	pushDockerTemplate(t, owner)
	ws := createWorkspace(t, owner, dc, "docker", "code")
	waitAgentReady(t, s.Client, ws.ID, containerLogs(ws.ID))
	const marker = "hello-from-the-browser-test.txt"
	if _, err := owner.ssh("code", "mkdir -p ~/project && echo hi >~/"+marker); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "code-server apps healthy", func() (bool, error) {
		w, err := s.Client.Workspace(context.Background(), ws.ID)
		if err != nil {
			return false, err
		}
		a, _ := workspaceAgent(w)
		healthy := 0
		for _, app := range a.Apps {
			if strings.HasPrefix(app.Slug, "code-server") && app.Health == codersdk.WorkspaceAppHealthHealthy {
				healthy++
			}
		}
		return healthy == 2, nil
	})

	pathURL := fmt.Sprintf("%s/@%s/code.main/apps/code-server/?folder=/home/coder", s.URL, s.Owner.Username)
	subHost := fmt.Sprintf("code-server-subdomain--main--code--%s.%s:%d", s.Owner.Username, appsDomain, s.Port)
	subURL := "http://" + subHost + "/?folder=/home/coder"

	// Without a session the proxy does not serve code-server.
	code, body, err := appGet(context.Background(), s, codersdk.New(s.URL), "", strings.TrimPrefix(pathURL, s.URL.String()))
	if err != nil {
		t.Fatal(err)
	}
	if code == http.StatusOK && strings.Contains(body, "workbench") {
		t.Fatalf("code-server served without a session (%d)", code)
	}

	c := newChrome(t)
	// Log in as the owner: the dashboard's session cookie on coderd's origin.
	httpOnly := true
	c.run("session cookie", func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, network.SetCookie, network.SetCookieParams{
			Name: codersdk.SessionTokenCookie, Value: s.Client.SessionToken(),
			Domain: "127.0.0.1", Path: "/", HTTPOnly: &httpOnly,
		})
		return chromedp.Void{}, err
	})

	workbench := func(name, url, wantHost string) {
		t.Helper()
		c.run("open "+name, chromedp.Navigate(url))
		c.waitJS(name+": the VS Code workbench", `document.querySelector(".monaco-workbench")`, 3*time.Minute)
		c.waitJS(name+": the workspace's files in the explorer", fmt.Sprintf(
			`[...document.querySelectorAll(".explorer-folders-view .monaco-list-row")].some(r => r.textContent.includes(%q))`, marker), 3*time.Minute)
		loc, err := chromedp.Run(c.ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(loc, wantHost) {
			t.Fatalf("%s: the workbench is at %s, want host %s", name, loc, wantHost)
		}
		c.screenshot("code-server-" + name)
	}
	workbench("path", pathURL, s.URL.Host)
	workbench("subdomain", subURL, subHost)

	owner.must("delete", "code", "-y")
}
