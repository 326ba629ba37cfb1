package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// TestListApps checks the APPS column of `coder list`: the number of apps
// across the agents of each workspace's latest build.
func TestListApps(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	agentID, _ := e.addWorkspace("withapps")
	e.addWorkspace("noapps")
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, slug := range []string{"code", "files", "hello"} {
		_, err := e.srv.DB.InsertWorkspaceApp(context.Background(), database.InsertWorkspaceAppParams{
			ID: uuid.New(), CreatedAt: now, AgentID: agentID, Slug: slug, DisplayName: slug,
			Url: pgtype.Text{String: "http://127.0.0.1:8080", Valid: true}, SharingLevel: database.AppSharingLevelOwner,
			Health: database.WorkspaceAppHealthDisabled, DisplayOrder: int32(i), OpenIn: "slim-window",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	out := mustRun(t, e.env, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "APPS") {
		t.Fatalf("list:\n%s", out)
	}
	apps := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		apps[f[0]] = f[len(f)-1]
	}
	if apps["owner/withapps"] != "3" || apps["owner/noapps"] != "0" {
		t.Fatalf("APPS column: %v\n%s", apps, out)
	}
	// JSON carries the apps inside resources → agents.
	var ws []codersdk.Workspace
	if err := json.Unmarshal([]byte(mustRun(t, e.env, "list", "-o", "json")), &ws); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		n := 0
		for _, r := range w.LatestBuild.Resources {
			for _, a := range r.Agents {
				n += len(a.Apps)
			}
		}
		if want := map[string]int{"withapps": 3, "noapps": 0}[w.Name]; n != want {
			t.Fatalf("json: %s has %d apps, want %d", w.Name, n, want)
		}
	}
}

// TestListAgentHealth checks the AGENT column of `coder list`: build status
// alone said "running" for a workspace whose agent was gone or whose
// startup script failed.
func TestListAgentHealth(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	now := time.Now().UTC()
	tests := []struct {
		name, want        string
		first, last, disc *time.Time
		lifecycle         string
	}{
		{name: "never", want: "connecting", lifecycle: "created"},
		{name: "ready", want: "connected", first: &now, last: &now, lifecycle: "ready"},
		{name: "failed", want: "start_error", first: &now, last: &now, lifecycle: "start_error"},
		{name: "slow", want: "start_timeout", first: &now, last: &now, lifecycle: "start_timeout"},
		{name: "gone", want: "disconnected", first: &now, last: &now, disc: &now, lifecycle: "ready"},
	}
	for _, tc := range tests {
		agentID, _ := e.addWorkspace("health-" + tc.name)
		if _, err := e.srv.DB.Pool().Exec(context.Background(), `UPDATE workspace_agents SET first_connected_at = $1,
			last_connected_at = $2, disconnected_at = $3, lifecycle_state = $4 WHERE id = $5`,
			tc.first, tc.last, tc.disc, tc.lifecycle, agentID); err != nil {
			t.Fatal(err)
		}
	}
	out := mustRun(t, e.env, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.Contains(lines[0], "AGENT") {
		t.Fatalf("list header: %s", lines[0])
	}
	got := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		got[f[0]] = f[len(f)-2]
	}
	for _, tc := range tests {
		if g := got["owner/health-"+tc.name]; g != tc.want {
			t.Errorf("%s: AGENT %q, want %q\n%s", tc.name, g, tc.want, out)
		}
	}
}
