package coderd_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/workspaceapps"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// cookieUpstream is an app that tries to plant coderd's cookies in the
// visitor's browser (and one cookie of its own).
func cookieUpstream(t *testing.T) string {
	t.Helper()
	return newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{
			codersdk.SessionTokenCookie + "=planted; Path=/",
			workspaceapps.SubdomainAppSessionTokenCookie + "=planted; Path=/",
			"Coder_Session_Token=planted; Path=/",
			"__Host-" + codersdk.SessionTokenCookie + "=planted; Path=/; Secure",
			"app_pref=dark; Path=/",
		} {
			w.Header().Add("Set-Cookie", c)
		}
		fmt.Fprintf(w, "upstream path=%s", r.URL.Path)
	}))
}

// TestWorkspaceAppsPathAppBoundary: path apps and ports share the
// dashboard origin, so by default only the workspace's owner may use them
// there. A site owner on a member's path app or port, and another member
// on a shared path app, are refused with a page pointing to the subdomain
// URL; the same apps on their subdomains still open. The two dangerous
// flags each restore one kind of access.
func TestWorkspaceAppsPathAppBoundary(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{WildcardAccessURL: "*.example.test"})
	owner := codersdk.New(e.url)
	coderdtest.CreateFirstUser(t, owner)
	alice, aliceUser := coderdtest.CreateAnotherUser(t, owner)
	bob, _ := coderdtest.CreateAnotherUser(t, owner)
	up := newUpstream(t)
	upURL := fmt.Sprintf("http://127.0.0.1:%d", up.port)
	// Each coderd has its own in-memory coordinator: alice gets a workspace
	// (same apps) whose agent connects to each.
	workspaces := map[*appsEnv]string{}
	aliceWorkspace := func(env *appsEnv) {
		agentID, token := insertAgent(t, env.store, aliceUser.ID)
		insertApps(t, env.store, agentID,
			testApp{slug: "owner-app", url: upURL, share: database.AppSharingLevelOwner},
			testApp{slug: "auth-app", url: upURL, share: database.AppSharingLevelAuthenticated},
			testApp{slug: "public-app", url: upURL, share: database.AppSharingLevelPublic},
		)
		workspaces[env] = workspaceOfAgent(t, env.store, agentID).Name
		runAgent(t, env.url, token)
		waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	}
	siteOwnerOnly := startAppsCoderdWith(t, e.store, coderd.Options{
		Apps:   coderd.AppsOptions{WildcardAccessURL: "*.example.test", DangerousAllowPathAppSiteOwnerAccess: true},
		Agents: coderd.AgentOptions{DERPMap: e.derpMap, HeartbeatInterval: 500 * time.Millisecond},
	})
	sharing := startAppsCoderdWith(t, e.store, coderd.Options{
		Apps:   coderd.AppsOptions{DangerousAllowPathAppSharing: true},
		Agents: coderd.AgentOptions{DERPMap: e.derpMap, HeartbeatInterval: 500 * time.Millisecond},
	})
	for _, env := range []*appsEnv{e, siteOwnerOnly, sharing} {
		aliceWorkspace(env)
	}
	ws := struct{ Name string }{workspaces[e]}
	_, port, _ := net.SplitHostPort(e.addr)
	subdomain := func(name string) string {
		return fmt.Sprintf("%s--main--%s--%s.example.test:%s", name, ws.Name, aliceUser.Username, port)
	}
	ownerTok, aliceTok, bobTok := owner.SessionToken(), alice.SessionToken(), bob.SessionToken()
	const refused = "only to the workspace owner"
	tests := []struct {
		name    string
		env     *appsEnv
		kind    string // apps or ports
		app     string
		token   string
		host    string // a subdomain request when set (session in the header)
		status  int
		bodyHas string
	}{
		{name: "workspace owner on own path app", env: e, kind: "apps", app: "owner-app", token: aliceTok, status: 200, bodyHas: "upstream path=/x"},
		{name: "workspace owner on own path port", env: e, kind: "ports", app: fmt.Sprint(up.port), token: aliceTok, status: 200, bodyHas: "upstream path=/x"},
		{name: "site owner refused on a member's path app", env: e, kind: "apps", app: "owner-app", token: ownerTok, status: 403, bodyHas: refused},
		{name: "refusal points to the subdomain URL", env: e, kind: "apps", app: "owner-app", token: ownerTok, status: 403, bodyHas: "http://" + subdomain("owner-app") + "/x"},
		{name: "site owner refused on a member's path port", env: e, kind: "ports", app: fmt.Sprint(up.port), token: ownerTok, status: 403, bodyHas: refused},
		{name: "member refused on a shared path app", env: e, kind: "apps", app: "auth-app", token: bobTok, status: 403, bodyHas: refused},
		{name: "member learns nothing of an owner-only path app", env: e, kind: "apps", app: "owner-app", token: bobTok, status: 404, bodyHas: "Application not found"},
		{name: "anonymous on a public path app must sign in", env: e, kind: "apps", app: "public-app", status: 401, bodyHas: "Sign in required"},
		{name: "site owner on the subdomain app", env: e, kind: "apps", app: "owner-app", token: ownerTok, host: subdomain("owner-app"), status: 200, bodyHas: "upstream path=/x"},
		{name: "site owner on the subdomain port", env: e, kind: "ports", app: fmt.Sprint(up.port), token: ownerTok, host: subdomain(fmt.Sprint(up.port)), status: 200, bodyHas: "upstream path=/x"},
		{name: "member on the shared subdomain app", env: e, kind: "apps", app: "auth-app", token: bobTok, host: subdomain("auth-app"), status: 200, bodyHas: "upstream path=/x"},
		{name: "site owner access flag: site owner on path app", env: siteOwnerOnly, kind: "apps", app: "owner-app", token: ownerTok, status: 200, bodyHas: "upstream path=/x"},
		{name: "site owner access flag: site owner on path port", env: siteOwnerOnly, kind: "ports", app: fmt.Sprint(up.port), token: ownerTok, status: 200, bodyHas: "upstream path=/x"},
		{name: "site owner access flag: member still refused", env: siteOwnerOnly, kind: "apps", app: "auth-app", token: bobTok, status: 403, bodyHas: refused},
		{name: "sharing flag: member on shared path app", env: sharing, kind: "apps", app: "auth-app", token: bobTok, status: 200, bodyHas: "upstream path=/x"},
		{name: "sharing flag: anonymous on public path app", env: sharing, kind: "apps", app: "public-app", status: 200, bodyHas: "upstream path=/x"},
		{name: "sharing flag: site owner still refused", env: sharing, kind: "apps", app: "owner-app", token: ownerTok, status: 403, bodyHas: "Ask the administrator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := fmt.Sprintf("%s/@%s/%s/%s/%s/x", tc.env.url, aliceUser.Username, workspaces[tc.env], tc.kind, tc.app)
			if tc.host != "" {
				target = tc.env.url.String() + "/x"
			}
			req, err := http.NewRequest(http.MethodPost, target, nil) // not a navigation: no login redirect
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
				if tc.token != "" {
					req.Header.Set(codersdk.SessionTokenHeader, tc.token)
				}
			} else if tc.token != "" {
				req.AddCookie(&http.Cookie{Name: codersdk.SessionTokenCookie, Value: tc.token})
			}
			res, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body := readAll(t, res)
			if res.StatusCode != tc.status || !strings.Contains(body, tc.bodyHas) {
				t.Fatalf("got %d %q, want %d containing %q", res.StatusCode, body, tc.status, tc.bodyHas)
			}
		})
	}
}

// TestWorkspaceAppsStripCoderCookies: an app cannot set coderd's own
// cookies (the dashboard session, the app-origin key) through the proxy,
// on a path or a subdomain; its own cookies pass.
func TestWorkspaceAppsStripCoderCookies(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{WildcardAccessURL: "*.example.test"})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	up := cookieUpstream(t)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, agentID, testApp{slug: "app", url: up, share: database.AppSharingLevelOwner, subdomain: true})
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	_, port, _ := net.SplitHostPort(e.addr)

	for _, tc := range []struct{ name, url, host string }{
		{"path", fmt.Sprintf("%s/@%s/%s/apps/app/", e.url, first.Username, ws.Name), ""},
		{"subdomain", e.url.String() + "/", fmt.Sprintf("app--main--%s--%s.example.test:%s", ws.Name, first.Username, port)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			req.Host = tc.host
			req.Header.Set(codersdk.SessionTokenHeader, owner.SessionToken())
			res, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if body := readAll(t, res); res.StatusCode != 200 || !strings.Contains(body, "upstream path=/") {
				t.Fatalf("app: %d %q", res.StatusCode, body)
			}
			var names []string
			for _, c := range res.Cookies() {
				names = append(names, c.Name)
			}
			for _, sc := range res.Header.Values("Set-Cookie") {
				if strings.Contains(strings.ToLower(sc), "coder_") {
					t.Errorf("the app set a coderd cookie through the proxy: %q", sc)
				}
			}
			if len(names) != 1 || names[0] != "app_pref" {
				t.Errorf("cookies passed: %v, want only the app's own app_pref", names)
			}
		})
	}
}

// handshakeEnv is coderd with subdomain apps, a clock the test moves, and
// a member with a subdomain app.
type handshakeEnv struct {
	*appsEnv
	clock   *offsetClock
	session string
	host    string // the app's host:port
}

func newHandshakeEnv(t *testing.T) *handshakeEnv {
	t.Helper()
	clock := &offsetClock{}
	store := database.NewStore(dbtestutil.NewPoolFor(t, dbtestutil.NewDB(t)))
	e := startAppsCoderdWith(t, store, coderd.Options{
		Now:    clock.now,
		Apps:   coderd.AppsOptions{WildcardAccessURL: "*.example.test"},
		Agents: coderd.AgentOptions{DERPMap: tunneltest.RunDERP(t), HeartbeatInterval: 500 * time.Millisecond, InactiveDisconnectTimeout: time.Hour},
	})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	up := newUpstream(t)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, agentID, testApp{slug: "sub-app", url: fmt.Sprintf("http://127.0.0.1:%d", up.port), share: database.AppSharingLevelOwner, subdomain: true})
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	_, port, _ := net.SplitHostPort(e.addr)
	return &handshakeEnv{appsEnv: e, clock: clock, session: owner.SessionToken(), host: "sub-app--main--" + ws.Name + "--" + first.Username + ".example.test:" + port}
}

// code runs step 1 of the handshake on the dashboard origin for
// redirectURI and returns the handshake key it hands out.
func (h *handshakeEnv) code(t *testing.T, redirectURI string) string {
	t.Helper()
	got := appGet(t, noRedirect, h.url.String()+workspaceapps.AuthRedirectPath+"?"+url.Values{workspaceapps.RedirectURIParam: {redirectURI}}.Encode(), "", withSessionCookie(h.session))
	loc, err := url.Parse(got.location)
	if got.status != http.StatusSeeOther || err != nil || loc.Query().Get(workspaceapps.AppConnectAPIKeyParam) == "" {
		t.Fatalf("auth redirect: %d %q", got.status, got.location)
	}
	return loc.Query().Get(workspaceapps.AppConnectAPIKeyParam)
}

// redeem runs step 2 on the app origin host with the key, at path, as a
// browser sends it: the path exactly as given, in origin form.
func (h *handshakeEnv) redeem(t *testing.T, host, path, key string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	q := url.Values{workspaceapps.AppConnectAPIKeyParam: {key}}.Encode()
	if _, err := fmt.Fprintf(conn, "GET %s?%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, q, host); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

func appCookie(res *http.Response) string {
	for _, c := range res.Cookies() {
		if c.Name == workspaceapps.SubdomainAppSessionTokenCookie {
			return c.Value
		}
	}
	return ""
}

// TestWorkspaceAppsHandshakeAttacks is issue 11 item 9: the subdomain
// sign-in handshake redirects only to a path on the app origin, and its key
// works once, within a minute, on the one origin it was issued for.
func TestWorkspaceAppsHandshakeAttacks(t *testing.T) {
	t.Parallel()
	h := newHandshakeEnv(t)
	self := "http://" + h.host + "/"

	t.Run("Legitimate", func(t *testing.T) {
		res := h.redeem(t, h.host, "/some/page", h.code(t, self+"some/page"))
		if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/some/page" || appCookie(res) == "" {
			t.Fatalf("redeem: %d location %q cookie %q", res.StatusCode, res.Header.Get("Location"), appCookie(res))
		}
		// The cookie is an app key of this origin, not the handshake key.
		got := appGet(t, noRedirect, h.url.String()+"/", h.host, func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: workspaceapps.SubdomainAppSessionTokenCookie, Value: appCookie(res)})
		})
		if got.status != http.StatusOK {
			t.Fatalf("app with the cookie: %d %q", got.status, got.body)
		}
	})

	t.Run("OpenRedirect", func(t *testing.T) {
		for _, p := range []string{"//evil.example/", "//evil.example", "/\\evil.example/", "/%2F/evil.example", "///evil.example/x"} {
			res := h.redeem(t, h.host, p, h.code(t, self))
			loc := res.Header.Get("Location")
			u, err := url.Parse(loc)
			if err != nil || !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.Contains(loc, "\\") || u.Host != "" {
				t.Errorf("path %q redirected to %q", p, loc)
			}
		}
	})

	t.Run("SingleUse", func(t *testing.T) {
		key := h.code(t, self)
		if res := h.redeem(t, h.host, "/", key); res.StatusCode != http.StatusSeeOther || appCookie(res) == "" {
			t.Fatalf("first use: %d", res.StatusCode)
		}
		if res := h.redeem(t, h.host, "/", key); res.StatusCode != http.StatusUnauthorized || appCookie(res) != "" {
			t.Fatalf("second use of the handshake key: %d cookie %q", res.StatusCode, appCookie(res))
		}
		// Nor is the handshake key a credential of the app origin itself.
		key = h.code(t, self)
		got := appGet(t, noRedirect, h.url.String()+"/", h.host, func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: workspaceapps.SubdomainAppSessionTokenCookie, Value: key})
		})
		if got.status == http.StatusOK {
			t.Fatal("the handshake key works as the app cookie")
		}
	})

	t.Run("ShortLived", func(t *testing.T) {
		key := h.code(t, self)
		h.clock.advance(2 * time.Minute)
		if res := h.redeem(t, h.host, "/", key); res.StatusCode != http.StatusUnauthorized || appCookie(res) != "" {
			t.Fatalf("handshake key after 2 minutes: %d", res.StatusCode)
		}
	})

	t.Run("BoundToHost", func(t *testing.T) {
		name, _, _ := net.SplitHostPort(h.host)
		for _, other := range []string{
			name + ":1",                      // same name, another port
			"made--up--host--x.example.test", // a host of no app
			strings.Replace(h.host, "sub-app--", "other--", 1),
		} {
			if res := h.redeem(t, other, "/", h.code(t, self)); res.StatusCode == http.StatusSeeOther || appCookie(res) != "" {
				t.Errorf("key for %s accepted on %s: %d", h.host, other, res.StatusCode)
			}
		}
	})

	t.Run("SchemeOfAccessURL", func(t *testing.T) {
		// A deployment reached over https (a TLS proxy in front): the
		// handshake never hands a key to an http origin.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		access, _ := url.Parse("https://" + ln.Addr().String())
		api, err := coderd.New(coderd.Options{
			Database: h.store, AccessURL: access,
			Apps:   coderd.AppsOptions{WildcardAccessURL: "*.example.test"},
			Agents: coderd.AgentOptions{DERPMap: h.derpMap},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(api.Handler())
		srv.Listener = ln
		srv.Start()
		t.Cleanup(func() {
			_ = api.Close()
			srv.Close()
		})
		auth := func(redirect string) appResult {
			return appGet(t, noRedirect, "http://"+ln.Addr().String()+workspaceapps.AuthRedirectPath+"?"+url.Values{workspaceapps.RedirectURIParam: {redirect}}.Encode(), "", withSessionCookie(h.session))
		}
		name, _, _ := net.SplitHostPort(h.host)
		host := net.JoinHostPort(name, access.Port())
		if got := auth("http://" + host + "/"); got.status != http.StatusBadRequest || strings.Contains(got.location, workspaceapps.AppConnectAPIKeyParam) {
			t.Fatalf("http app origin with an https access URL: %d %q", got.status, got.location)
		}
		if got := auth("https://" + net.JoinHostPort(name, "1") + "/"); got.status == http.StatusSeeOther {
			t.Fatalf("https app origin on another port than the access URL's: %d %q", got.status, got.location)
		}
		if got := auth("https://" + host + "/"); got.status != http.StatusSeeOther || !strings.Contains(got.location, workspaceapps.AppConnectAPIKeyParam) {
			t.Fatalf("https app origin: %d %q", got.status, got.location)
		}
	})
}

// TestWorkspaceAppsAnonymousSameAnswer is the apps part of issue 11 item
// 11: an anonymous visitor gets the same status and body for an app or
// port that exists (but is not theirs) as for one that does not, on paths
// and subdomains, whether navigating or not.
func TestWorkspaceAppsAnonymousSameAnswer(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{WildcardAccessURL: "*.example.test"})
	owner := codersdk.New(e.url)
	coderdtest.CreateFirstUser(t, owner)
	_, alice := coderdtest.CreateAnotherUser(t, owner)
	up := newUpstream(t)
	agentID, token := insertAgent(t, e.store, alice.ID)
	insertApps(t, e.store, agentID, testApp{slug: "owner-app", url: fmt.Sprintf("http://127.0.0.1:%d", up.port), share: database.AppSharingLevelOwner, subdomain: true})
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	_, port, _ := net.SplitHostPort(e.addr)
	portName := fmt.Sprint(up.port)

	// Each case names owner, workspace and app/port; the answers are
	// compared with those names blanked out.
	type target struct{ owner, workspace, app string }
	exists := []target{{alice.Username, ws.Name, "owner-app"}, {alice.Username, ws.Name, portName}}
	missing := []target{
		{alice.Username, ws.Name, "nope-app"},
		{alice.Username, "no-such-ws", "owner-app"},
		{"no-such-user", ws.Name, "owner-app"},
		{alice.Username, "no-such-ws", portName},
		{"no-such-user", "no-such-ws", portName},
	}
	blank := func(s string, tg target) string {
		for _, v := range []string{tg.app, tg.workspace, tg.owner} {
			s = strings.ReplaceAll(s, v, "NAME")
			s = strings.ReplaceAll(s, url.QueryEscape(v), "NAME")
		}
		return s
	}
	answer := func(t *testing.T, mode, method string, tg target) string {
		kind := "apps"
		if tg.app == portName {
			kind = "ports"
		}
		var rawURL, host string
		if mode == "path" {
			rawURL = fmt.Sprintf("%s/@%s/%s/%s/%s/", e.url, tg.owner, tg.workspace, kind, tg.app)
		} else {
			rawURL = e.url.String() + "/"
			host = fmt.Sprintf("%s--main--%s--%s.example.test:%s", tg.app, tg.workspace, tg.owner, port)
		}
		req, _ := http.NewRequest(method, rawURL, nil)
		req.Host = host
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		return blank(fmt.Sprintf("%d location=%s\n%s", res.StatusCode, res.Header.Get("Location"), readAll(t, res)), tg)
	}
	for _, mode := range []string{"path", "subdomain"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(mode+"/"+method, func(t *testing.T) {
				for _, ex := range exists {
					want := answer(t, mode, method, ex)
					if strings.HasPrefix(want, "200") || strings.HasPrefix(want, "404") {
						t.Fatalf("existing %v: anonymous got %q", ex, want)
					}
					for _, m := range missing {
						if (m.app == portName) != (ex.app == portName) {
							continue
						}
						if got := answer(t, mode, method, m); got != want {
							t.Errorf("anonymous answers differ:\nexists %v:\n%s\nmissing %v:\n%s", ex, want, m, got)
						}
					}
				}
			})
		}
	}
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
