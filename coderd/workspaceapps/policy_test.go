package workspaceapps_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/rbac"
	"github.com/wgmesh/coder/coderd/workspaceapps"
)

// tokens is an Identifier over a fixed table of tokens.
type tokens map[string]*workspaceapps.Identity

func (t tokens) Identify(_ context.Context, c workspaceapps.Credential) (*workspaceapps.Identity, error) {
	if c.Token == "broken" {
		return nil, errors.New("store unreachable")
	}
	return t[c.Token], nil
}

// lookup is an AppLookup over one workspace.
type lookup struct {
	res *workspaceapps.Resolved
}

func (l lookup) LookupApp(_ context.Context, req workspaceapps.Request) (*workspaceapps.Resolved, error) {
	if req.Owner != "alice" || req.Workspace != "dev" || (req.Agent != "" && req.Agent != "main") {
		return nil, workspaceapps.ErrNotFound
	}
	res := *l.res
	res.App = nil
	if req.App != "" {
		app, ok := apps[req.App]
		if !ok {
			return nil, workspaceapps.ErrNotFound
		}
		res.App = &app
	}
	return &res, nil
}

var apps = map[string]workspaceapps.App{
	"owner":    {Slug: "owner", URL: "http://127.0.0.1:8080", SharingLevel: workspaceapps.SharingLevelOwner},
	"authed":   {Slug: "authed", URL: "https://localhost/base", SharingLevel: workspaceapps.SharingLevelAuthenticated},
	"public":   {Slug: "public", URL: "http://127.0.0.1:9090", SharingLevel: workspaceapps.SharingLevelPublic},
	"sick":     {Slug: "sick", URL: "http://127.0.0.1:8080", SharingLevel: workspaceapps.SharingLevelPublic, Unhealthy: true},
	"external": {Slug: "external", URL: "vscode://open", External: true, SharingLevel: workspaceapps.SharingLevelPublic},
	"bad-url":  {Slug: "bad-url", URL: "ftp://x", SharingLevel: workspaceapps.SharingLevelPublic},
}

// TestPolicyShareLevels is the share-level matrix of the apps proxy,
// decided without a database.
func TestPolicyShareLevels(t *testing.T) {
	t.Parallel()
	aliceID, bobID, adminID := uuid.New(), uuid.New(), uuid.New()
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := tokens{
		"alice": {UserID: aliceID, Subject: rbac.Subject{ID: aliceID, Roles: []string{rbac.RoleMember}}, Expires: exp},
		"bob":   {UserID: bobID, Subject: rbac.Subject{ID: bobID, Roles: []string{rbac.RoleMember}}, Expires: exp},
		"admin": {UserID: adminID, Subject: rbac.Subject{ID: adminID, Roles: []string{rbac.RoleOwner}}, Expires: exp},
	}
	ws := workspaceapps.Workspace{ID: uuid.New(), OwnerID: aliceID, Name: "dev"}
	agent := &workspaceapps.Agent{ID: uuid.New(), Name: "main", Connected: true}
	running := &workspaceapps.Policy{Identifier: ids, Apps: lookup{&workspaceapps.Resolved{Workspace: ws, Agent: agent}}, RBAC: rbac.NewAuthorizer()}
	disconnected := &workspaceapps.Policy{Identifier: ids, Apps: lookup{&workspaceapps.Resolved{Workspace: ws, Agent: &workspaceapps.Agent{ID: agent.ID, Name: "main"}}}, RBAC: rbac.NewAuthorizer()}
	stopped := &workspaceapps.Policy{Identifier: ids, Apps: lookup{&workspaceapps.Resolved{Workspace: ws}}, RBAC: rbac.NewAuthorizer()}
	starting := &workspaceapps.Policy{Identifier: ids, Apps: lookup{&workspaceapps.Resolved{Workspace: ws, Starting: true}}, RBAC: rbac.NewAuthorizer()}
	siteOwnerFlag, sharingFlag := *running, *running
	siteOwnerFlag.AllowPathAppSiteOwnerAccess = true
	sharingFlag.AllowPathAppSharing = true

	app := func(slug string) workspaceapps.Request {
		return workspaceapps.Request{Owner: "alice", Workspace: "dev", App: slug}
	}
	port := workspaceapps.Request{Owner: "alice", Workspace: "dev", Agent: "main", Port: 3000}
	tests := []struct {
		name     string
		policy   *workspaceapps.Policy
		token    string
		req      workspaceapps.Request
		status   int    // 0: granted
		upstream string // when granted
		login    bool
		path     bool // a path request (on the dashboard origin)
	}{
		{name: "owner opens owner app", policy: running, token: "alice", req: app("owner"), upstream: "http://127.0.0.1:8080"},
		{name: "site owner opens owner app", policy: running, token: "admin", req: app("owner"), upstream: "http://127.0.0.1:8080"},
		{name: "other user: owner app not found", policy: running, token: "bob", req: app("owner"), status: 404},
		{name: "anonymous: owner app asks to sign in", policy: running, req: app("owner"), status: 401, login: true},
		{name: "invalid token is anonymous", policy: running, token: "forged", req: app("owner"), status: 401, login: true},
		{name: "other user opens authenticated app", policy: running, token: "bob", req: app("authed"), upstream: "https://localhost:443/base"},
		{name: "anonymous: authenticated app asks to sign in", policy: running, req: app("authed"), status: 401, login: true},
		{name: "anonymous opens public app", policy: running, req: app("public"), upstream: "http://127.0.0.1:9090"},
		{name: "owner opens a port", policy: running, token: "alice", req: port, upstream: "http://127.0.0.1:3000"},
		{name: "other user: port not found", policy: running, token: "bob", req: port, status: 404},
		{name: "anonymous: port asks to sign in", policy: running, req: port, status: 401, login: true},
		{name: "unknown app", policy: running, token: "alice", req: app("nope"), status: 404},
		{name: "unknown agent", policy: running, token: "alice", req: workspaceapps.Request{Owner: "alice", Workspace: "dev", Agent: "other", App: "owner"}, status: 404},
		{name: "unknown workspace", policy: running, token: "alice", req: workspaceapps.Request{Owner: "alice", Workspace: "nope", App: "owner"}, status: 404},
		{name: "unhealthy app", policy: running, req: app("sick"), status: 502},
		{name: "external app", policy: running, req: app("external"), status: 404},
		{name: "app with a bad URL", policy: running, req: app("bad-url"), status: 502},
		{name: "owner: agent disconnected", policy: disconnected, token: "alice", req: app("owner"), status: 502},
		{name: "other user learns nothing of a disconnected agent", policy: disconnected, token: "bob", req: app("owner"), status: 404},
		{name: "owner: workspace stopped", policy: stopped, token: "alice", req: app("owner"), status: 503},
		{name: "owner: workspace starting", policy: starting, token: "alice", req: app("owner"), status: 503},
		{name: "other user learns nothing of a stopped workspace", policy: stopped, token: "bob", req: app("public"), status: 404},
		{name: "anonymous: unknown app asks to sign in", policy: running, req: app("nope"), status: 401, login: true},
		{name: "anonymous: unknown workspace asks to sign in", policy: running, req: workspaceapps.Request{Owner: "alice", Workspace: "nope", App: "owner"}, status: 401, login: true},
		{name: "anonymous: unknown owner's port asks to sign in", policy: running, req: workspaceapps.Request{Owner: "nobody", Workspace: "dev", Port: 3000}, status: 401, login: true},

		{name: "path: owner opens own owner app", policy: running, path: true, token: "alice", req: app("owner"), upstream: "http://127.0.0.1:8080"},
		{name: "path: owner opens own port", policy: running, path: true, token: "alice", req: port, upstream: "http://127.0.0.1:3000"},
		{name: "path: owner opens own public app", policy: running, path: true, token: "alice", req: app("public"), upstream: "http://127.0.0.1:9090"},
		{name: "path: site owner refused on owner app", policy: running, path: true, token: "admin", req: app("owner"), status: 403},
		{name: "path: site owner refused on a port", policy: running, path: true, token: "admin", req: port, status: 403},
		{name: "path: other user refused on authenticated app", policy: running, path: true, token: "bob", req: app("authed"), status: 403},
		{name: "path: other user refused on public app", policy: running, path: true, token: "bob", req: app("public"), status: 403},
		{name: "path: other user: owner app not found", policy: running, path: true, token: "bob", req: app("owner"), status: 404},
		{name: "path: anonymous on public app asks to sign in", policy: running, path: true, req: app("public"), status: 401, login: true},
		{name: "path, site owner flag: site owner opens owner app", policy: &siteOwnerFlag, path: true, token: "admin", req: app("owner"), upstream: "http://127.0.0.1:8080"},
		{name: "path, site owner flag: site owner opens a port", policy: &siteOwnerFlag, path: true, token: "admin", req: port, upstream: "http://127.0.0.1:3000"},
		{name: "path, site owner flag: other user still refused", policy: &siteOwnerFlag, path: true, token: "bob", req: app("authed"), status: 403},
		{name: "path, sharing flag: other user opens authenticated app", policy: &sharingFlag, path: true, token: "bob", req: app("authed"), upstream: "https://localhost:443/base"},
		{name: "path, sharing flag: anonymous opens public app", policy: &sharingFlag, path: true, req: app("public"), upstream: "http://127.0.0.1:9090"},
		{name: "path, sharing flag: site owner still refused on owner app", policy: &sharingFlag, path: true, token: "admin", req: app("owner"), status: 403},
		{name: "path, sharing flag: ports stay the owner's", policy: &sharingFlag, path: true, token: "admin", req: port, status: 403},
	}
	for _, tc := range tests {
		d, err := tc.policy.Authorize(context.Background(), workspaceapps.AccessRequest{
			Credential: workspaceapps.Credential{Kind: workspaceapps.CredentialSession, Token: tc.token},
			App:        tc.req,
			Path:       tc.path,
		})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if (d.Grant == nil) == (d.Denial == nil) {
			t.Errorf("%s: decision must be a grant or a denial: %+v", tc.name, d)
			continue
		}
		if tc.status != 0 {
			if d.Denial == nil || d.Denial.Status != tc.status || d.Denial.Login != tc.login || d.Denial.Title == "" {
				t.Errorf("%s: got %+v %+v, want denial %d (login %v)", tc.name, d.Grant, d.Denial, tc.status, tc.login)
			}
			// A refused path request names the app (with its agent) whose
			// subdomain serves it.
			if tc.status == http.StatusForbidden {
				want := tc.req
				want.Agent = "main"
				if d.Denial.Subdomain == nil || *d.Denial.Subdomain != want {
					t.Errorf("%s: refusal points to %+v, want %+v", tc.name, d.Denial.Subdomain, want)
				}
			}
			continue
		}
		g := d.Grant
		if g == nil {
			t.Errorf("%s: denied %+v", tc.name, d.Denial)
			continue
		}
		if g.Upstream != tc.upstream || g.AgentID != agent.ID || g.WorkspaceID != ws.ID || g.AppSlug != tc.req.App || g.Port != tc.req.Port {
			t.Errorf("%s: grant %+v", tc.name, g)
		}
		if id := ids[tc.token]; id != nil {
			if g.UserID != id.UserID || !g.Expires.Equal(exp) {
				t.Errorf("%s: grant for %v until %v, want %v until %v", tc.name, g.UserID, g.Expires, id.UserID, exp)
			}
		} else if g.UserID != uuid.Nil || !g.Expires.IsZero() {
			t.Errorf("%s: anonymous grant names %v until %v", tc.name, g.UserID, g.Expires)
		}
	}

	// An internal failure is an error, never a decision.
	if _, err := running.Authorize(context.Background(), workspaceapps.AccessRequest{Credential: workspaceapps.Credential{Token: "broken"}, App: app("public")}); err == nil {
		t.Fatal("identifier failure was not reported")
	}
}

// TestDecisionRoundTrip checks that requests and decisions survive JSON
// (a regional proxy will receive them from coderd).
func TestDecisionRoundTrip(t *testing.T) {
	t.Parallel()
	req := workspaceapps.AccessRequest{
		Credential: workspaceapps.Credential{Kind: workspaceapps.CredentialAppKey, Token: "tok", Host: "a--b--c--d.apps.test"},
		App:        workspaceapps.Request{Owner: "d", Workspace: "c", Agent: "b", App: "a"},
	}
	d := workspaceapps.Decision{Grant: &workspaceapps.Grant{
		UserID: uuid.New(), WorkspaceID: uuid.New(), WorkspaceName: "c", AgentID: uuid.New(), AgentName: "b",
		AppSlug: "a", Upstream: "http://127.0.0.1:8080", Expires: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}}
	for _, v := range []any{req, d, workspaceapps.Decision{Denial: &workspaceapps.Denial{Status: http.StatusNotFound, Title: "t", Detail: "d"}}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case workspaceapps.AccessRequest:
			var got workspaceapps.AccessRequest
			if err := json.Unmarshal(b, &got); err != nil || got != v {
				t.Fatalf("request round trip %s: %+v %v", b, got, err)
			}
		case workspaceapps.Decision:
			var got workspaceapps.Decision
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			again, _ := json.Marshal(got)
			if string(again) != string(b) {
				t.Fatalf("decision round trip: %s != %s", again, b)
			}
		}
	}
}
