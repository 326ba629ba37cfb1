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
