package coderd_test

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/codersdk"
)

// recordingAuthorizer wraps the real authorizer and counts its decisions.
type recordingAuthorizer struct {
	inner rbac.Authorizer
	mu    sync.Mutex
	calls int
}

func (a *recordingAuthorizer) Authorize(ctx context.Context, s rbac.Subject, act rbac.Action, obj rbac.Object) error {
	a.mu.Lock()
	a.calls++
	a.mu.Unlock()
	return a.inner.Authorize(ctx, s, act, obj)
}

func (a *recordingAuthorizer) take() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.calls
	a.calls = 0
	return n
}

// TestAuthzWalk walks every route of the router. Public routes are listed
// in coderd.PublicRoutes ("METHOD pattern", or "* pattern" for every
// method); every other route must refuse a request without credentials
// (401/403) and must never answer an authenticated user with a 2xx without
// consulting the authorizer. Routes whose parameters the walk can fill with
// real values ({user}, {keyid}, {keyname}) must consult the authorizer on
// every authenticated request, and must never succeed for a member acting
// on another user. Routes that refuse a valid user session with 401 take
// other credentials (agent tokens, provisioner keys) and are only checked
// for refusing requests without credentials.
func TestAuthzWalk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	authz := &recordingAuthorizer{inner: rbac.NewAuthorizer()}
	owner, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Authorizer: authz}})
	first := coderdtest.CreateFirstUser(t, owner)
	member, _ := coderdtest.CreateAnotherUser(t, owner)

	type route struct{ method, pattern string }
	var routes []route
	err := chi.Walk(srv.API.Router(), func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, route{method, pattern})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	public := coderd.PublicRoutes()
	seenPublic := map[string]bool{}
	paramRe := regexp.MustCompile(`\{[^}]+\}`)
	checked := 0
	for _, rt := range routes {
		name := rt.method + " " + rt.pattern
		if public[name] {
			seenPublic[name] = true
			continue
		}
		if public["* "+rt.pattern] {
			seenPublic["* "+rt.pattern] = true
			continue
		}
		checked++
		t.Run(name, func(t *testing.T) {
			// A fresh token per route: logout and key deletion consume them.
			token, err := owner.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{})
			if err != nil {
				t.Fatal(err)
			}
			keyID, _, _ := strings.Cut(token.Key, "-")
			keys, err := owner.Tokens(ctx, codersdk.Me)
			if err != nil {
				t.Fatal(err)
			}
			var keyName string
			for _, k := range keys {
				if k.ID == keyID {
					keyName = k.TokenName
				}
			}
			path := strings.NewReplacer("{user}", first.Username, "{keyid}", keyID, "{keyname}", keyName).Replace(rt.pattern)
			// Parameters of other areas get an unknown ID.
			knownParams := !strings.Contains(path, "{")
			path = paramRe.ReplaceAllStringFunc(path, func(string) string { return uuid.NewString() })
			path = strings.ReplaceAll(path, "*", "x")

			call := func(token string) int {
				req, err := http.NewRequestWithContext(ctx, rt.method, srv.URL.String()+path, bytes.NewBufferString("{}"))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				if token != "" {
					req.Header.Set(codersdk.SessionTokenHeader, token)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res.StatusCode
			}

			authz.take()
			if status := call(""); status != http.StatusUnauthorized && status != http.StatusForbidden {
				t.Fatalf("without credentials: status %d, want 401 (or 403); public routes belong in coderd.PublicRoutes", status)
			}
			if n := authz.take(); n != 0 {
				t.Fatalf("authorizer consulted %d times for a request without credentials", n)
			}
			if knownParams && strings.Contains(rt.pattern, "{user}") {
				status := call(member.SessionToken())
				if status < 400 {
					t.Fatalf("member acting on the owner: status %d, want a 4xx", status)
				}
				if authz.take() == 0 {
					t.Fatal("member request was answered without consulting the authorizer")
				}
			}
			status := call(token.Key)
			consulted := authz.take() > 0
			if status >= 500 {
				t.Fatalf("owner request: status %d", status)
			}
			if status == http.StatusUnauthorized {
				// The route takes other credentials (an agent token, a
				// provisioner key); user authorization does not apply.
				t.Logf("route refuses user sessions (status 401): not a user route")
				return
			}
			if status < 300 && !consulted {
				t.Fatalf("handler answered %d without consulting the authorizer", status)
			}
			if knownParams && !consulted {
				t.Fatalf("handler answered %d without consulting the authorizer", status)
			}
		})
	}
	for name := range public {
		if !seenPublic[name] {
			t.Errorf("public route %s is not served", name)
		}
	}
	if checked < 10 {
		t.Fatalf("only %d authenticated routes walked", checked)
	}
}
