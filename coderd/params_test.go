package coderd_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// TestPathParams checks how every route with a row in its path answers a
// malformed ID (400), an unknown one (404, or 403 on the routes that
// connect to an agent) and another user's row: exactly like an unknown
// one, so a member learns nothing about rows they may not see.
func TestPathParams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, srv := coderdtest.New(t, nil)
	first := coderdtest.CreateFirstUser(t, owner)
	member, _ := coderdtest.CreateAnotherUser(t, owner)
	now := time.Now().UTC().Truncate(time.Microsecond)
	ws := insertCountedWorkspace(t, srv.DB, uuid.MustParse(first.UserID), now, 1)
	sws, err := owner.Workspace(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	build := sws.LatestBuild
	agentID := build.Resources[0].Agents[0].ID
	tmpl, err := srv.DB.GetTemplateByID(ctx, ws.TemplateID)
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		status int
		body   codersdk.Response
	}
	get := func(client *codersdk.Client, path string) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL.String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(codersdk.SessionTokenHeader, client.SessionToken())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var a answer
		a.status = res.StatusCode
		_ = json.NewDecoder(res.Body).Decode(&a.body)
		return a
	}

	cases := []struct {
		pattern string // with {id} for the parameter
		id      string // an existing row of the owner
		what    string // in the 400 message; "" when any string is a valid parameter
		denied  int    // the answer to an unknown row and to a member
		// memberMay is set when members may read the owner's row.
		memberMay bool
	}{
		{"/api/v2/workspaces/{id}", ws.ID.String(), "workspace", http.StatusNotFound, false},
		{"/api/v2/workspaces/{id}/builds", ws.ID.String(), "workspace", http.StatusNotFound, false},
		{"/api/v2/workspacebuilds/{id}", build.ID.String(), "workspace build", http.StatusNotFound, false},
		{"/api/v2/workspacebuilds/{id}/resources", build.ID.String(), "workspace build", http.StatusNotFound, false},
		{"/api/v2/workspacebuilds/{id}/logs", build.ID.String(), "workspace build", http.StatusNotFound, false},
		{"/api/v2/workspaceagents/{id}", agentID.String(), "workspace agent", http.StatusNotFound, false},
		{"/api/v2/workspaceagents/{id}/metadata", agentID.String(), "workspace agent", http.StatusNotFound, false},
		{"/api/v2/workspaceagents/{id}/logs", agentID.String(), "workspace agent", http.StatusNotFound, false},
		{"/api/v2/workspaceagents/{id}/script-runs", agentID.String(), "workspace agent", http.StatusNotFound, false},
		{"/api/v2/workspaceagents/{id}/listening-ports", agentID.String(), "workspace agent", http.StatusForbidden, false},
		{"/api/v2/workspaceagents/{id}/coordinate", agentID.String(), "workspace agent", http.StatusForbidden, false},
		{"/api/v2/workspaceagents/{id}/pty", agentID.String(), "workspace agent", http.StatusForbidden, false},
		{"/api/v2/users/" + first.Username + "/workspace/{id}", ws.Name, "", http.StatusNotFound, false},
		{"/api/v2/files/{id}", build.Job.FileID.String(), "file", http.StatusNotFound, false},
		{"/api/v2/templateversions/{id}", build.TemplateVersionID.String(), "template version", http.StatusNotFound, true},
		{"/api/v2/templates/{id}", tmpl.ID.String(), "", http.StatusNotFound, true},
		{"/api/v2/templates/{id}", tmpl.Name, "", http.StatusNotFound, true},
	}
	for _, c := range cases {
		path := func(id string) string { return strings.Replace(c.pattern, "{id}", id, 1) }
		unknown := get(owner, path(uuid.NewString()))
		if unknown.status != c.denied {
			t.Errorf("%s, unknown row: status %d, want %d", c.pattern, unknown.status, c.denied)
		}
		if c.what != "" {
			bad := get(owner, path("not-a-uuid"))
			if bad.status != http.StatusBadRequest || bad.body.Message != "Invalid "+c.what+" ID." {
				t.Errorf("%s, malformed ID: %d %+v, want 400 %q", c.pattern, bad.status, bad.body, "Invalid "+c.what+" ID.")
			}
		}
		foreign := get(member, path(c.id))
		switch {
		case c.memberMay:
			if foreign.status != http.StatusOK {
				t.Errorf("%s, member: status %d, want 200", c.pattern, foreign.status)
			}
		case !reflect.DeepEqual(foreign, unknown):
			t.Errorf("%s: a member reading the owner's row gets %+v, an unknown row %+v; want the same", c.pattern, foreign, unknown)
		}
		if c.denied == http.StatusNotFound { // the routes that read
			if own := get(owner, path(c.id)); own.status != http.StatusOK {
				t.Errorf("%s, owner: status %d %+v, want 200", c.pattern, own.status, own.body)
			}
		}
	}

	// A deleted template is gone by ID and by name.
	if err := srv.DB.UpdateTemplateDeletedByID(ctx, database.UpdateTemplateDeletedByIDParams{ID: tmpl.ID, Deleted: true, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tmpl.ID.String(), tmpl.Name} {
		if a := get(owner, "/api/v2/templates/"+p); a.status != http.StatusNotFound {
			t.Errorf("deleted template %s: status %d, want 404", p, a.status)
		}
	}
}
