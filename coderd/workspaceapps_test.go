package coderd_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/workspaceapps"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// appsEnv is a coderd with the apps proxy, a DERP relay, and helpers to
// serve it.
type appsEnv struct {
	t       testing.TB
	derpMap *tailcfg.DERPMap
	store   *database.Store
	url     *url.URL
	addr    string
	api     *coderd.API
}

func newAppsEnv(t testing.TB, apps coderd.AppsOptions) *appsEnv {
	t.Helper()
	store := database.NewStore(dbtestutil.NewPoolFor(t, dbtestutil.NewDB(t)))
	return startAppsCoderd(t, store, tunneltest.RunDERP(t), apps)
}

func startAppsCoderd(t testing.TB, store *database.Store, derpMap *tailcfg.DERPMap, apps coderd.AppsOptions) *appsEnv {
	t.Helper()
	return startAppsCoderdWith(t, store, coderd.Options{Apps: apps, Agents: coderd.AgentOptions{DERPMap: derpMap, HeartbeatInterval: 500 * time.Millisecond}})
}

// startAppsCoderdWith starts coderd with opts, filling in the database and
// the access URL.
func startAppsCoderdWith(t testing.TB, store *database.Store, opts coderd.Options) *appsEnv {
	t.Helper()
	derpMap := opts.Agents.DERPMap
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://" + ln.Addr().String())
	opts.Database, opts.AccessURL = store, u
	api, err := coderd.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		_ = api.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return &appsEnv{t: t, derpMap: derpMap, store: store, url: u, addr: ln.Addr().String(), api: api}
}

// upstream is the HTTP app served "inside the workspace" (on 127.0.0.1,
// which the in-process agent dials). It records every credential-looking
// thing it receives.
type upstream struct {
	srv  *httptest.Server
	port int

	mu      sync.Mutex
	seen    []string // Cookie headers, session headers and raw queries
	sseGate chan struct{}
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{sseGate: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		u.record(r)
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), data...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		u.record(r)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		// The second event is only written once the client saw the first:
		// without flushing through the proxy this would never finish.
		select {
		case <-u.sseGate:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: second\n\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.record(r)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream path=%s query=%s", r.URL.Path, r.URL.RawQuery)
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	u.port = u.srv.Listener.Addr().(*net.TCPAddr).Port
	return u
}

func (u *upstream) record(r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen = append(u.seen, r.Header.Get("Cookie"), r.Header.Get(codersdk.SessionTokenHeader), r.URL.RawQuery)
}

func (u *upstream) sawAny(secrets ...string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.seen {
		for _, secret := range secrets {
			if secret != "" && strings.Contains(s, secret) {
				return s
			}
		}
		if strings.Contains(s, codersdk.SessionTokenCookie) || strings.Contains(s, workspaceapps.SubdomainAppSessionTokenCookie) || strings.Contains(s, workspaceapps.AppConnectAPIKeyParam) {
			return s
		}
	}
	return ""
}

type testApp struct {
	slug, url string
	share     database.AppSharingLevel
	subdomain bool
	health    database.WorkspaceAppHealth
}

func insertApps(t testing.TB, db *database.Store, agentID uuid.UUID, apps ...testApp) {
	t.Helper()
	for i, a := range apps {
		health := a.health
		if health == "" {
			health = database.WorkspaceAppHealthDisabled
		}
		_, err := db.InsertWorkspaceApp(context.Background(), database.InsertWorkspaceAppParams{
			ID: uuid.New(), CreatedAt: time.Now().UTC().Truncate(time.Microsecond), AgentID: agentID, Slug: a.slug, DisplayName: a.slug,
			Url: pgtype.Text{String: a.url, Valid: true}, Subdomain: a.subdomain, SharingLevel: a.share, Health: health,
			DisplayOrder: int32(i), OpenIn: "slim-window",
		})
		if err != nil {
			t.Fatalf("insert app %s: %v", a.slug, err)
		}
	}
}

func workspaceOfAgent(t *testing.T, db *database.Store, agentID uuid.UUID) database.Workspace {
	t.Helper()
	ws, err := db.GetWorkspaceByAgentID(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// noRedirect is an HTTP client that returns redirects instead of
// following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

type appResult struct {
	status   int
	body     string
	location string
}

func appGet(t *testing.T, client *http.Client, rawURL, host string, mod func(*http.Request)) appResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if mod != nil {
		mod(req)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return appResult{status: res.StatusCode, body: string(b), location: res.Header.Get("Location")}
}

func withSessionCookie(token string) func(*http.Request) {
	return func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: codersdk.SessionTokenCookie, Value: token})
		r.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
	}
}

func TestWorkspaceAppsProxy(t *testing.T) {
	t.Parallel()
	e := newAppsEnv(t, coderd.AppsOptions{WildcardAccessURL: "*.example.test"})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	member, _ := coderdtest.CreateAnotherUser(t, owner)
	up := newUpstream(t)
	upURL := fmt.Sprintf("http://127.0.0.1:%d", up.port)

	// A port nothing listens on.
	deadLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := deadLn.Addr().(*net.TCPAddr).Port
	_ = deadLn.Close()

	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, agentID,
		testApp{slug: "owner-app", url: upURL, share: database.AppSharingLevelOwner},
		testApp{slug: "auth-app", url: upURL + "/base", share: database.AppSharingLevelAuthenticated},
		testApp{slug: "public-app", url: upURL, share: database.AppSharingLevelPublic},
		testApp{slug: "sub-app", url: upURL, share: database.AppSharingLevelOwner, subdomain: true},
		testApp{slug: "sick-app", url: upURL, share: database.AppSharingLevelOwner, health: database.WorkspaceAppHealthUnhealthy},
		testApp{slug: "dead-app", url: fmt.Sprintf("http://127.0.0.1:%d", deadPort), share: database.AppSharingLevelOwner},
	)
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })

	// A second workspace whose agent never connects.
	idleAgentID, _ := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, idleAgentID, testApp{slug: "app", url: upURL, share: database.AppSharingLevelOwner})
	idleWS := workspaceOfAgent(t, e.store, idleAgentID)

	base := e.url.String()
	path := func(wsName, kind, name, rest string) string {
		return fmt.Sprintf("%s/@%s/%s/%s/%s%s", base, first.Username, wsName, kind, name, rest)
	}
	ownerTok, memberTok := owner.SessionToken(), member.SessionToken()

	t.Run("PathShareLevels", func(t *testing.T) {
		tests := []struct {
			name, url, token string
			status           int
			bodyHas          string
			locationHas      string
		}{
			{name: "owner opens owner app", url: path(ws.Name, "apps", "owner-app", "/hello?x=1"), token: ownerTok, status: 200, bodyHas: "upstream path=/hello query=x=1"},
			{name: "agent named", url: path(ws.Name+".main", "apps", "owner-app", "/"), token: ownerTok, status: 200, bodyHas: "upstream path=/"},
			{name: "member gets 404 on owner app", url: path(ws.Name, "apps", "owner-app", "/"), token: memberTok, status: 404, bodyHas: "Application not found"},
			{name: "anonymous must log in for owner app", url: path(ws.Name, "apps", "owner-app", "/"), status: 303, locationHas: "/login?redirect="},
			{name: "member refused on a shared path app", url: path(ws.Name, "apps", "auth-app", "/x"), token: memberTok, status: 403, bodyHas: "only to the workspace owner"},
			{name: "owner opens own authenticated app", url: path(ws.Name, "apps", "auth-app", "/x"), token: ownerTok, status: 200, bodyHas: "upstream path=/base/x"},
			{name: "anonymous must log in for authenticated app", url: path(ws.Name, "apps", "auth-app", "/"), status: 303, locationHas: "/login?redirect="},
			{name: "anonymous must log in for a public path app", url: path(ws.Name, "apps", "public-app", "/pub"), status: 303, locationHas: "/login?redirect="},
			{name: "owner opens own public app", url: path(ws.Name, "apps", "public-app", "/pub"), token: ownerTok, status: 200, bodyHas: "upstream path=/pub"},
			{name: "owner opens a port", url: path(ws.Name, "ports", fmt.Sprint(up.port), "/p"), token: ownerTok, status: 200, bodyHas: "upstream path=/p"},
			{name: "member gets 404 on a port", url: path(ws.Name, "ports", fmt.Sprint(up.port), "/p"), token: memberTok, status: 404},
			{name: "unknown app", url: path(ws.Name, "apps", "nope", "/"), token: ownerTok, status: 404, bodyHas: "Application not found"},
			{name: "unknown workspace", url: path("nope", "apps", "owner-app", "/"), token: ownerTok, status: 404},
			{name: "trailing slash redirect", url: path(ws.Name, "apps", "owner-app", ""), token: ownerTok, status: 307, locationHas: "/apps/owner-app/"},
			{name: "unhealthy app", url: path(ws.Name, "apps", "sick-app", "/"), token: ownerTok, status: 502, bodyHas: "Application unhealthy"},
			{name: "port not listening", url: path(ws.Name, "apps", "dead-app", "/"), token: ownerTok, status: 502, bodyHas: "Port not listening"},
			{name: "agent disconnected", url: path(idleWS.Name, "apps", "app", "/"), token: ownerTok, status: 502, bodyHas: "Agent disconnected"},
			{name: "member learns nothing about a disconnected agent", url: path(idleWS.Name, "apps", "app", "/"), token: memberTok, status: 404},
		}
		for _, tc := range tests {
			var mod func(*http.Request)
			if tc.token != "" {
				mod = withSessionCookie(tc.token)
			}
			got := appGet(t, noRedirect, tc.url, "", mod)
			if got.status != tc.status || !strings.Contains(got.body, tc.bodyHas) || !strings.Contains(got.location, tc.locationHas) {
				t.Errorf("%s: got %d %q (location %q), want %d containing %q (location %q)", tc.name, got.status, got.body, got.location, tc.status, tc.bodyHas, tc.locationHas)
			}
			if tc.status >= 400 && !strings.Contains(got.body, "<!DOCTYPE html>") {
				t.Errorf("%s: error is not an HTML page: %q", tc.name, got.body)
			}
		}
		// The session cookie and header never reach the app; other cookies do.
		got := appGet(t, noRedirect, path(ws.Name, "apps", "owner-app", "/cookies"), "", func(r *http.Request) {
			withSessionCookie(ownerTok)(r)
			r.Header.Set(codersdk.SessionTokenHeader, ownerTok)
		})
		if got.status != 200 {
			t.Fatalf("with header and cookie: %d %q", got.status, got.body)
		}
		if s := up.sawAny(ownerTok, memberTok); s != "" {
			t.Fatalf("upstream saw a credential: %q", s)
		}
		up.mu.Lock()
		sawPref := false
		for _, s := range up.seen {
			sawPref = sawPref || strings.Contains(s, "app_pref=dark")
		}
		up.mu.Unlock()
		if !sawPref {
			t.Fatal("the app's own cookies were not forwarded")
		}
	})

	t.Run("SessionCookieIsHttpOnly", func(t *testing.T) {
		// The XSS scenario: a path app's JavaScript runs on the dashboard
		// origin; the session cookie must be unreadable by scripts.
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v2/users/login", strings.NewReader(`{"email":"owner@coder.test","password":"`+coderdtest.FirstUserPassword+`"}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		found := false
		for _, c := range res.Cookies() {
			if c.Name == codersdk.SessionTokenCookie {
				found = true
				if !c.HttpOnly {
					t.Fatal("session cookie readable by JavaScript")
				}
			}
		}
		if !found {
			t.Fatal("login set no session cookie")
		}
	})

	t.Run("Websocket", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		u := strings.Replace(path(ws.Name, "apps", "owner-app", "/ws"), "http://", "ws://", 1)
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{codersdk.SessionTokenHeader: {ownerTok}}})
		if err != nil {
			t.Fatalf("dial through proxy: %v", err)
		}
		defer c.CloseNow()
		for _, msg := range []string{"one", "two"} {
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, data, err := c.Read(ctx)
			if err != nil || string(data) != "echo:"+msg {
				t.Fatalf("echo %q: %q %v", msg, data, err)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("ServerSentEvents", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, path(ws.Name, "apps", "owner-app", "/sse"), nil)
		req.Header.Set(codersdk.SessionTokenHeader, ownerTok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		br := bufio.NewReader(res.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "data: first\n" {
			t.Fatalf("first event: %q %v", line, err)
		}
		close(up.sseGate)
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), "data: second") {
			t.Fatalf("second event: %q", rest)
		}
	})

	t.Run("Subdomain", func(t *testing.T) {
		// A browser: a cookie jar, following redirects, resolving every
		// *.example.test name to coderd.
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		jar.SetCookies(e.url, []*http.Cookie{{Name: codersdk.SessionTokenCookie, Value: ownerTok, Path: "/"}})
		dialer := &net.Dialer{}
		var hops []string
		browser := &http.Client{
			Jar: jar,
			Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, e.addr)
			}},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				hops = append(hops, req.URL.String())
				return nil
			},
		}
		_, port, _ := net.SplitHostPort(e.addr)
		appHost := "sub-app--main--" + ws.Name + "--" + first.Username + ".example.test:" + port
		got := appGet(t, browser, "http://"+appHost+"/sub?y=2", "", nil)
		if got.status != 200 || got.body != "upstream path=/sub query=y=2" {
			t.Fatalf("subdomain app: %d %q (hops %v)", got.status, got.body, hops)
		}
		if len(hops) != 3 || !strings.Contains(hops[0], workspaceapps.AuthRedirectPath) || !strings.Contains(hops[1], workspaceapps.AppConnectAPIKeyParam) || strings.Contains(hops[2], workspaceapps.AppConnectAPIKeyParam) {
			t.Fatalf("handshake hops %v", hops)
		}
		appCookies := jar.Cookies(&url.URL{Scheme: "http", Host: appHost})
		if len(appCookies) != 1 || appCookies[0].Name != workspaceapps.SubdomainAppSessionTokenCookie || appCookies[0].Value == ownerTok {
			t.Fatalf("app origin cookies %v", appCookies)
		}
		appKey := appCookies[0].Value
		// Second visit: the cookie alone is enough.
		hops = nil
		got = appGet(t, browser, "http://"+appHost+"/again", "", nil)
		if got.status != 200 || len(hops) != 0 {
			t.Fatalf("second visit: %d %q hops %v", got.status, got.body, hops)
		}
		// The port form.
		portHost := fmt.Sprintf("%d--main--%s--%s.example.test:%s", up.port, ws.Name, first.Username, port)
		got = appGet(t, browser, "http://"+portHost+"/port", "", nil)
		if got.status != 200 || got.body != "upstream path=/port query=" {
			t.Fatalf("port subdomain: %d %q", got.status, got.body)
		}
		// The app key is bound to its origin: another app host refuses it.
		other := "public-app--main--" + ws.Name + "--" + first.Username + ".example.test:" + port
		got = appGet(t, noRedirect, base+"/", other, func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: workspaceapps.SubdomainAppSessionTokenCookie, Value: appKey})
		})
		if got.status != 200 { // public: served anonymously
			t.Fatalf("public subdomain app: %d", got.status)
		}
		got = appGet(t, noRedirect, base+"/", "owner-app--main--"+ws.Name+"--"+first.Username+".example.test:"+port, func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: workspaceapps.SubdomainAppSessionTokenCookie, Value: appKey})
		})
		if got.status != http.StatusSeeOther || !strings.Contains(got.location, workspaceapps.AuthRedirectPath) {
			t.Fatalf("app key reused on another origin: %d %q", got.status, got.location)
		}
		// The app key is useless against the API.
		apiReq := codersdk.New(e.url)
		apiReq.SetSessionToken(appKey)
		if _, err := apiReq.User(context.Background(), codersdk.Me); err == nil {
			t.Fatal("app-scoped key accepted by the API")
		}
		// A member's browser: the owner's app is not found.
		memberJar, _ := cookiejar.New(nil)
		memberJar.SetCookies(e.url, []*http.Cookie{{Name: codersdk.SessionTokenCookie, Value: memberTok, Path: "/"}})
		browser.Jar = memberJar
		got = appGet(t, browser, "http://"+appHost+"/", "", nil)
		if got.status != 404 {
			t.Fatalf("member on owner subdomain app: %d %q", got.status, got.body)
		}
		// The upstream never saw the dashboard token, the app key or the
		// handshake parameter.
		if s := up.sawAny(ownerTok, memberTok, appKey); s != "" {
			t.Fatalf("upstream saw a credential: %q", s)
		}
		// The auth redirect refuses destinations that are not app hosts.
		got = appGet(t, noRedirect, base+workspaceapps.AuthRedirectPath+"?redirect_uri="+url.QueryEscape("http://evil.test/"), "", withSessionCookie(ownerTok))
		if got.status != http.StatusBadRequest {
			t.Fatalf("open redirect: %d %q", got.status, got.location)
		}
	})

	t.Run("StoppedWorkspace", func(t *testing.T) {
		stopBuild(t, e.store, idleWS, uuid.MustParse(first.UserID))
		got := appGet(t, noRedirect, path(idleWS.Name, "apps", "app", "/"), "", withSessionCookie(ownerTok))
		if got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "Workspace is stopped") {
			t.Fatalf("stopped workspace: %d %q", got.status, got.body)
		}
		got = appGet(t, noRedirect, path(idleWS.Name, "apps", "app", "/"), "", withSessionCookie(memberTok))
		if got.status != http.StatusNotFound {
			t.Fatalf("member on stopped workspace: %d", got.status)
		}
	})

	t.Run("DisablePathApps", func(t *testing.T) {
		e2 := startAppsCoderd(t, e.store, e.derpMap, coderd.AppsOptions{DisablePathApps: true})
		got := appGet(t, noRedirect, fmt.Sprintf("%s/@%s/%s/apps/public-app/", e2.url, first.Username, ws.Name), "", nil)
		if got.status != 404 || !strings.Contains(got.body, "Path-based apps are disabled") {
			t.Fatalf("disabled path apps: %d %q", got.status, got.body)
		}
	})
}

// stopBuild records a finished stop build as the workspace's latest.
func stopBuild(t *testing.T, db *database.Store, ws database.Workspace, initiator uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	prev, err := db.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	file, err := db.InsertFile(ctx, database.InsertFileParams{ID: uuid.New(), Hash: uuid.NewString(), CreatedAt: now, CreatedBy: initiator, Mimetype: "application/x-tar", Data: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	job, err := db.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
		ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: initiator, Provisioner: database.ProvisionerTypeTerraform,
		StorageMethod: database.ProvisionerStorageMethodFile, Type: database.ProvisionerJobTypeWorkspaceBuild, Input: []byte("{}"), FileID: file.ID, Tags: []byte("{}"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: ws.ID, TemplateVersionID: prev.TemplateVersionID, BuildNumber: prev.BuildNumber + 1, Transition: database.WorkspaceTransitionStop, InitiatorID: initiator, JobID: job.ID, Reason: database.BuildReasonInitiator}); err != nil {
		t.Fatal(err)
	}
}

// offsetClock is coderd's clock in TestWorkspaceAppsAuthCacheBound: real
// time plus an offset the test moves forward.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// TestWorkspaceAppsAuthCacheBound checks the staleness bound of the
// proxy's decision cache: once AuthCacheTTL has passed, a suspended user
// and a stopped workspace have lost access.
func TestWorkspaceAppsAuthCacheBound(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	clock := &offsetClock{}
	store := database.NewStore(dbtestutil.NewPoolFor(t, dbtestutil.NewDB(t)))
	e := startAppsCoderdWith(t, store, coderd.Options{
		Now: clock.now,
		// The member opens a shared app by path (which needs the flag).
		Apps: coderd.AppsOptions{AuthCacheTTL: ttl, DangerousAllowPathAppSharing: true},
		// Moving the clock must not make the agent look disconnected.
		Agents: coderd.AgentOptions{DERPMap: tunneltest.RunDERP(t), HeartbeatInterval: 500 * time.Millisecond, InactiveDisconnectTimeout: time.Hour},
	})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	member, memberUser := coderdtest.CreateAnotherUser(t, owner)
	up := newUpstream(t)
	upURL := fmt.Sprintf("http://127.0.0.1:%d", up.port)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, agentID,
		testApp{slug: "owner-app", url: upURL, share: database.AppSharingLevelOwner},
		testApp{slug: "auth-app", url: upURL, share: database.AppSharingLevelAuthenticated},
	)
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	app := func(slug string) string {
		return fmt.Sprintf("%s/@%s/%s/apps/%s/", e.url, first.Username, ws.Name, slug)
	}
	ownerTok, memberTok := owner.SessionToken(), member.SessionToken()

	// Both are granted (and the grants are cached).
	for _, c := range []struct{ slug, tok string }{{"owner-app", ownerTok}, {"auth-app", memberTok}} {
		if got := appGet(t, noRedirect, app(c.slug), "", withSessionCookie(c.tok)); got.status != http.StatusOK {
			t.Fatalf("%s before: %d %q", c.slug, got.status, got.body)
		}
	}

	// A suspended member loses access once the TTL has passed.
	if _, err := owner.UpdateUserStatus(context.Background(), memberUser.ID.String(), codersdk.UserStatusSuspended); err != nil {
		t.Fatal(err)
	}
	clock.advance(ttl)
	got := appGet(t, noRedirect, app("auth-app"), "", withSessionCookie(memberTok))
	if got.status != http.StatusSeeOther || !strings.Contains(got.location, "/login?redirect=") {
		t.Fatalf("suspended member after %s: %d %q (location %q)", ttl, got.status, got.body, got.location)
	}
	// The owner, still allowed, is granted again after a fresh lookup.
	if got := appGet(t, noRedirect, app("owner-app"), "", withSessionCookie(ownerTok)); got.status != http.StatusOK {
		t.Fatalf("owner after %s: %d %q", ttl, got.status, got.body)
	}

	// A stopped workspace is closed to its owner once the TTL has passed.
	stopBuild(t, e.store, ws, uuid.MustParse(first.UserID))
	clock.advance(ttl)
	got = appGet(t, noRedirect, app("owner-app"), "", withSessionCookie(ownerTok))
	if got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "Workspace is stopped") {
		t.Fatalf("stopped workspace after %s: %d %q", ttl, got.status, got.body)
	}
}

// TestWorkspaceAppsRefreshKeys checks that the apps proxy records the use
// of the key it authenticates by, as the API does: a session used only to
// open apps keeps sliding (at most one write a minute), and an app key's
// last use is recorded while its expiry stays bounded by the session it
// came from.
func TestWorkspaceAppsRefreshKeys(t *testing.T) {
	t.Parallel()
	clock := &offsetClock{}
	store := database.NewStore(dbtestutil.NewPoolFor(t, dbtestutil.NewDB(t)))
	e := startAppsCoderdWith(t, store, coderd.Options{
		Now:  clock.now,
		Apps: coderd.AppsOptions{WildcardAccessURL: "*.example.test"},
		// Moving the clock must not make the agent look disconnected.
		Agents: coderd.AgentOptions{DERPMap: tunneltest.RunDERP(t), HeartbeatInterval: 500 * time.Millisecond, InactiveDisconnectTimeout: time.Hour},
	})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(t, owner)
	up := newUpstream(t)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	insertApps(t, e.store, agentID,
		testApp{slug: "owner-app", url: fmt.Sprintf("http://127.0.0.1:%d", up.port), share: database.AppSharingLevelOwner},
		testApp{slug: "sub-app", url: fmt.Sprintf("http://127.0.0.1:%d", up.port), share: database.AppSharingLevelOwner, subdomain: true},
	)
	ws := workspaceOfAgent(t, e.store, agentID)
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	ownerTok := owner.SessionToken()
	getKey := func(tok string) database.APIKey {
		t.Helper()
		id, _, _ := strings.Cut(tok, "-")
		k, err := e.store.GetAPIKeyByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	pathApp := fmt.Sprintf("%s/@%s/%s/apps/owner-app/", e.url, first.Username, ws.Name)

	// Path app: the dashboard session slides.
	before := getKey(ownerTok)
	clock.advance(30 * time.Minute)
	if got := appGet(t, noRedirect, pathApp, "", withSessionCookie(ownerTok)); got.status != http.StatusOK {
		t.Fatalf("path app: %d %q", got.status, got.body)
	}
	after := getKey(ownerTok)
	if !after.LastUsed.After(before.LastUsed.Add(29*time.Minute)) || !after.ExpiresAt.After(before.ExpiresAt.Add(29*time.Minute)) {
		t.Fatalf("path app did not refresh the session: last_used %v -> %v, expires %v -> %v", before.LastUsed, after.LastUsed, before.ExpiresAt, after.ExpiresAt)
	}
	user, err := e.store.GetUserByID(context.Background(), uuid.MustParse(first.UserID))
	if err != nil {
		t.Fatal(err)
	}
	if !user.LastSeenAt.Equal(after.LastUsed) {
		t.Fatalf("last_seen_at %v, want %v", user.LastSeenAt, after.LastUsed)
	}
	// Used again within the refresh interval (past the grant cache): no write.
	clock.advance(30 * time.Second)
	if got := appGet(t, noRedirect, pathApp, "", withSessionCookie(ownerTok)); got.status != http.StatusOK {
		t.Fatalf("path app again: %d %q", got.status, got.body)
	}
	if again := getKey(ownerTok); !again.LastUsed.Equal(after.LastUsed) || !again.ExpiresAt.Equal(after.ExpiresAt) {
		t.Fatalf("refreshed within the interval: last_used %v -> %v", after.LastUsed, again.LastUsed)
	}

	// Subdomain app: the app key's use is recorded, its expiry stays.
	_, port, _ := net.SplitHostPort(e.addr)
	appHost := "sub-app--main--" + ws.Name + "--" + first.Username + ".example.test:" + port
	got := appGet(t, noRedirect, e.url.String()+workspaceapps.AuthRedirectPath+"?"+url.Values{workspaceapps.RedirectURIParam: {"http://" + appHost + "/"}}.Encode(), "", withSessionCookie(ownerTok))
	loc, err := url.Parse(got.location)
	if got.status != http.StatusSeeOther || err != nil || loc.Query().Get(workspaceapps.AppConnectAPIKeyParam) == "" {
		t.Fatalf("auth redirect: %d %q", got.status, got.location)
	}
	// The app origin redeems the handshake key for its cookie's app key.
	redeem, err := http.NewRequest(http.MethodGet, e.url.String()+"/?"+url.Values{workspaceapps.AppConnectAPIKeyParam: {loc.Query().Get(workspaceapps.AppConnectAPIKeyParam)}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	redeem.Host = appHost
	res, err := noRedirect.Do(redeem)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var appKey string
	for _, c := range res.Cookies() {
		if c.Name == workspaceapps.SubdomainAppSessionTokenCookie {
			appKey = c.Value
		}
	}
	if res.StatusCode != http.StatusSeeOther || appKey == "" {
		t.Fatalf("redeem handshake: %d, cookie %q", res.StatusCode, appKey)
	}
	keyBefore := getKey(appKey)
	clock.advance(10 * time.Minute)
	got = appGet(t, noRedirect, e.url.String()+"/", appHost, func(r *http.Request) {
		r.AddCookie(&http.Cookie{Name: workspaceapps.SubdomainAppSessionTokenCookie, Value: appKey})
	})
	if got.status != http.StatusOK {
		t.Fatalf("subdomain app: %d %q", got.status, got.body)
	}
	keyAfter := getKey(appKey)
	if !keyAfter.LastUsed.After(keyBefore.LastUsed.Add(9*time.Minute)) || !keyAfter.ExpiresAt.Equal(keyBefore.ExpiresAt) {
		t.Fatalf("app key: last_used %v -> %v, expires %v -> %v", keyBefore.LastUsed, keyAfter.LastUsed, keyBefore.ExpiresAt, keyAfter.ExpiresAt)
	}
}
