package workspaceapps_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/workspaceapps"
	"github.com/wgmesh/coder/codersdk"
)

// countingAuthorizer grants every request with a session token to
// upstream, denies the rest, and counts the questions it was asked.
type countingAuthorizer struct {
	upstream string
	expires  time.Time

	mu    sync.Mutex
	calls int
}

func (a *countingAuthorizer) Authorize(_ context.Context, req workspaceapps.AccessRequest) (workspaceapps.Decision, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if req.Credential.Token == "" {
		return workspaceapps.Decision{Denial: &workspaceapps.Denial{Status: http.StatusNotFound, Title: "no"}}, nil
	}
	return workspaceapps.Decision{Grant: &workspaceapps.Grant{
		UserID: uuid.New(), AgentID: uuid.New(), AgentName: "main", WorkspaceName: "dev",
		AppSlug: req.App.App, Upstream: a.upstream, Expires: a.expires,
	}}, nil
}

func (a *countingAuthorizer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// noAppKeys refuses every handshake.
type noAppKeys struct{}

func (noAppKeys) IssueHandshake(context.Context, workspaceapps.Credential, string) (string, error) {
	return "", workspaceapps.ErrUnauthenticated
}

func (noAppKeys) RedeemHandshake(context.Context, string, string) (string, time.Time, error) {
	return "", time.Time{}, workspaceapps.ErrUnauthenticated
}

// localDialer reaches "the workspace" on this host.
type localDialer struct{}

func (localDialer) Transport(uuid.UUID) http.RoundTripper { return http.DefaultTransport }

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestServerWithoutDatabase runs the proxy on its interfaces alone and
// checks the grant cache in front of the Authorizer: a grant is reused for
// AuthCacheTTL and never past its expiry; denials are not reused.
func TestServerWithoutDatabase(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "path=%s cookie=%q", r.URL.Path, r.Header.Get("Cookie"))
	}))
	t.Cleanup(up.Close)
	clock := &testClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	authz := &countingAuthorizer{upstream: up.URL, expires: clock.now.Add(time.Minute)}
	access, _ := url.Parse("http://coder.test")
	srv, err := workspaceapps.New(workspaceapps.Options{
		Authorizer: authz, AppKeys: noAppKeys{}, Dialer: localDialer{}, AccessURL: access,
		Now: clock.Now, AuthCacheTTL: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) (int, string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, "http://coder.test/@alice/dev/apps/code/x", nil)
		if token != "" {
			r.AddCookie(&http.Cookie{Name: codersdk.SessionTokenCookie, Value: token})
		}
		w := httptest.NewRecorder()
		srv.ServePathApp(w, r)
		b, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(b)
	}

	steps := []struct {
		name      string
		advance   time.Duration
		token     string
		status    int
		wantCalls int
	}{
		{name: "first request asks", token: "tok", status: http.StatusOK, wantCalls: 1},
		{name: "within the TTL: cached", advance: 4 * time.Second, token: "tok", status: http.StatusOK, wantCalls: 1},
		{name: "another credential asks", token: "other", status: http.StatusOK, wantCalls: 2},
		{name: "at the TTL: asks again", advance: time.Second, token: "tok", status: http.StatusOK, wantCalls: 3},
		{name: "denial", token: "", status: http.StatusNotFound, wantCalls: 4},
		{name: "denials are not cached", token: "", status: http.StatusNotFound, wantCalls: 5},
		// The grant expires at t0+1m: a grant made at t0+58s is cached
		// for 2s only, not the full TTL.
		{name: "near the grant's expiry", advance: 53 * time.Second, token: "tok", status: http.StatusOK, wantCalls: 6},
		{name: "not cached past the grant's expiry", advance: 2 * time.Second, token: "tok", status: http.StatusOK, wantCalls: 7},
	}
	for _, s := range steps {
		clock.advance(s.advance)
		status, body := get(s.token)
		if status != s.status || authz.count() != s.wantCalls {
			t.Fatalf("%s: status %d (%q), %d authorizer calls; want %d, %d", s.name, status, body, authz.count(), s.status, s.wantCalls)
		}
		if status == http.StatusOK && body != `path=/x cookie=""` {
			t.Fatalf("%s: upstream saw %q", s.name, body)
		}
	}
}
