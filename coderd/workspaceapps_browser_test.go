package coderd_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/wgmesh/coder/internal/browsertest"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// browserAppsDomain is the wildcard domain of subdomain apps in the browser
// tests; chromium resolves it to 127.0.0.1 by --host-resolver-rules.
const browserAppsDomain = "example.test"

// chromeTab is a headless chromium with its own profile, stopped by
// t.Cleanup. A missing chromium fails the test.
type chromeTab struct {
	t   *testing.T
	ctx context.Context
}

func newChromeTab(t *testing.T) *chromeTab {
	t.Helper()
	ctx := browsertest.Start(t, browserAppsDomain, 1280, 900)
	return &chromeTab{t: t, ctx: ctx}
}

// do runs actions, failing the test with what on error.
func (b *chromeTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\nlocation: %s\npage text:\n%s", what, err, b.location(), b.text())
	}
}

func (b *chromeTab) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	return loc
}

func (b *chromeTab) text() string {
	s, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// eval returns the string value of a JavaScript expression.
func (b *chromeTab) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is truthy; evaluation
// errors while a page navigates are retried until the deadline.
func (b *chromeTab) waitJS(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(time.Minute)
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
			b.t.Fatalf("%s: timed out (last error: %v)\nlocation: %s\npage text:\n%s", what, lastErr, b.location(), b.text())
		}
		select {
		case <-b.ctx.Done():
			b.t.Fatalf("%s: browser gone: %v", what, b.ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// login signs in through the dashboard's login form.
func (b *chromeTab) login(base, email string) {
	b.t.Helper()
	b.do("open login", chromedp.Navigate(base+"/login"))
	b.waitJS("login form", `!!document.querySelector("#f-email")`)
	b.do("log in "+email,
		chromedp.SendKeys(chromedp.CSS("#f-email"), email),
		chromedp.SendKeys(chromedp.CSS("#f-password"), coderdtest.FirstUserPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("signed in", `location.pathname === "/workspaces"`)
}

// evilPage is what a workspace serves at /evil.html: a script that tries to
// mint an API token for whoever views it, through the API on the page's own
// origin, and reports what it got in the page.
const evilPage = `<!DOCTYPE html><html><head><title>evil</title></head><body><p>workspace app</p><pre id="result"></pre>
<script>
fetch("/api/v2/users/me/keys/tokens", {method: "POST", credentials: "include", headers: {"Content-Type": "application/json"}, body: JSON.stringify({token_name: "stolen"})})
  .then(r => r.text().then(t => r.status + " " + t))
  .catch(e => "error " + e)
  .then(t => { document.getElementById("result").textContent = t; document.body.dataset.done = "1"; });
</script></body></html>`

// newEvilUpstream serves evilPage and, at /hello.html, a page that loads a
// relative resource (what a legitimate app does).
func newEvilUpstream(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/evil.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, evilPage)
	})
	mux.HandleFunc("/hello.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!DOCTYPE html><html><body><pre id="result"></pre><script>fetch("data.txt").then(r => r.text()).then(t => { document.getElementById("result").textContent = t; document.body.dataset.done = "1"; });</script></body></html>`)
	})
	mux.HandleFunc("/data.txt", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the workspace")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream: no such page "+r.URL.Path, http.StatusNotFound)
	})
	return newHTTPServer(t, mux)
}

// newHTTPServer serves h on 127.0.0.1 until the test ends and returns its
// base URL.
func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// tokenNames lists the names of the user's API tokens.
func tokenNames(t *testing.T, client *codersdk.Client) []string {
	t.Helper()
	keys, err := client.Tokens(context.Background(), codersdk.Me)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range keys {
		names = append(names, k.TokenName)
	}
	return names
}

// TestWorkspaceAppsBrowserPathAppXSS is the attack of issue 11 item 1 in a
// real browser: a member's workspace serves a page whose script mints an
// API token through the dashboard's API; the site owner opens it as a
// path app (and as a path port). The owner must get no token: path apps
// serve only their workspace's owner, so the page never runs on the
// dashboard origin with the owner's session. The member opening her own
// path app, and the owner opening the member's shared app on its subdomain,
// still work.
func TestWorkspaceAppsBrowserPathAppXSS(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{WildcardAccessURL: "*." + browserAppsDomain})
	owner := codersdk.New(e.url)
	coderdtest.CreateFirstUser(t, owner)
	_, aliceUser := coderdtest.CreateAnotherUser(t, owner)
	up := newEvilUpstream(t)
	_, upPort, _ := net.SplitHostPort(strings.TrimPrefix(up, "http://"))

	agentID, token := insertAgent(t, e.store, aliceUser.ID)
	insertApps(t, e.store, agentID,
		testApp{slug: "evil", url: up, share: database.AppSharingLevelOwner},
		testApp{slug: "shared", url: up, share: database.AppSharingLevelAuthenticated, subdomain: true},
	)
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	base := strings.TrimSuffix(e.url.String(), "/")
	_, coderdPort, _ := net.SplitHostPort(e.addr)

	ownerTab := newChromeTab(t)
	ownerTab.login(base, "owner@coder.test")

	t.Run("OwnerOnMembersPathApp", func(t *testing.T) {
		ownerTab.t = t
		for _, u := range []string{
			fmt.Sprintf("%s/@%s/%s/apps/evil/evil.html", base, aliceUser.Username, ws.Name),
			fmt.Sprintf("%s/@%s/%s.main/ports/%s/evil.html", base, aliceUser.Username, ws.Name, upPort),
		} {
			ownerTab.do("open "+u, chromedp.Navigate(u))
			// Either the script ran (and reported), or the proxy refused.
			ownerTab.waitJS("page settled", `document.body && (document.body.dataset.done === "1" || document.body.innerText.includes("HTTP "))`)
			if got := ownerTab.eval(`document.getElementById("result") ? document.getElementById("result").textContent : ""`); got != "" {
				t.Errorf("%s: the member's script ran on the dashboard origin with the owner's session: %s", u, got)
			}
			text := ownerTab.text()
			if !strings.Contains(text, "only to the workspace owner") || !strings.Contains(text, "--"+aliceUser.Username+"."+browserAppsDomain) {
				t.Errorf("%s: refusal page does not explain or point to the subdomain URL:\n%s", u, text)
			}
		}
		for _, n := range tokenNames(t, owner) {
			if n == "stolen" {
				t.Fatal("the member's page minted an API token of the owner")
			}
		}
	})
	ownerTab.t = t

	t.Run("OwnerOnMembersSubdomainApp", func(t *testing.T) {
		// The same page on its own origin: the shared app opens after the
		// cookie handshake, and its script only reaches the app itself.
		ownerTab.t = t
		host := fmt.Sprintf("shared--main--%s--%s.%s:%s", ws.Name, aliceUser.Username, browserAppsDomain, coderdPort)
		ownerTab.do("open subdomain app", chromedp.Navigate("http://"+host+"/evil.html"))
		ownerTab.waitJS("script ran on the app origin", `location.host === `+fmt.Sprintf("%q", host)+` && document.body.dataset.done === "1"`)
		if got := ownerTab.eval(`document.getElementById("result").textContent`); !strings.HasPrefix(got, "404 upstream: no such page") {
			t.Errorf("the app origin's fetch reached something other than the app: %q", got)
		}
		for _, n := range tokenNames(t, owner) {
			if n == "stolen" {
				t.Fatal("the subdomain app minted an API token of the owner")
			}
		}
	})
	ownerTab.t = t

	t.Run("MemberOnOwnPathApp", func(t *testing.T) {
		aliceTab := newChromeTab(t)
		aliceTab.login(base, aliceUser.Email)
		aliceTab.do("open own path app", chromedp.Navigate(fmt.Sprintf("%s/@%s/%s/apps/evil/hello.html", base, aliceUser.Username, ws.Name)))
		aliceTab.waitJS("own app loaded its resource", `document.body.dataset.done === "1"`)
		if got := aliceTab.eval(`document.getElementById("result").textContent`); got != "hello from the workspace" {
			t.Fatalf("own path app: %q", got)
		}
		// The dashboard links apps to their subdomain, since the
		// deployment has a wildcard access URL.
		aliceTab.do("open workspace page", chromedp.Navigate(fmt.Sprintf("%s/@%s/%s", base, aliceUser.Username, ws.Name)))
		aliceTab.waitJS("app buttons", `!!document.querySelector('a[data-app="evil"]') && !!document.querySelector('a[data-app="shared"]')`)
		for _, slug := range []string{"evil", "shared"} {
			want := fmt.Sprintf("http://%s--main--%s--%s.%s:%s/", slug, ws.Name, aliceUser.Username, browserAppsDomain, coderdPort)
			if href := aliceTab.eval(fmt.Sprintf(`document.querySelector('a[data-app=%q]').getAttribute("href")`, slug)); href != want {
				t.Errorf("dashboard links app %s to %q, want its subdomain %q", slug, href, want)
			}
		}
	})
}
