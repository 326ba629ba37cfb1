package cli_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// stopWorkspace records a completed stop build for a workspace made by
// addWorkspace (as a provisioner would after terraform ran).
func (e *reachEnv) stopWorkspace(name string) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	ws, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, name)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	prevJob, err := e.srv.DB.GetProvisionerJobByID(ctx, prev.JobID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	err = e.srv.DB.InTx(ctx, func(q *database.Queries) error {
		job, err := q.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: e.owner, Provisioner: database.ProvisionerTypeTerraform,
			StorageMethod: database.ProvisionerStorageMethodFile, Type: database.ProvisionerJobTypeWorkspaceBuild, Input: []byte("{}"),
			FileID: prevJob.FileID, Tags: []byte("{}"),
		})
		if err != nil {
			return err
		}
		if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{ID: job.ID, CompletedAt: now}); err != nil {
			return err
		}
		_, err = q.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: ws.ID, TemplateVersionID: prev.TemplateVersionID,
			BuildNumber: prev.BuildNumber + 1, Transition: database.WorkspaceTransitionStop, InitiatorID: e.owner,
			JobID: job.ID, Reason: database.BuildReasonInitiator,
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// memberEnv logs a new member in through its own CLI config.
func (e *reachEnv) memberEnv() ([]string, *codersdk.Client, codersdk.User) {
	t := e.t
	t.Helper()
	client, user := coderdtest.CreateAnotherUser(t, e.client)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"url": client.URL.String(), "session": client.SessionToken()} {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"HOME=" + dir, "CODER_CONFIG_DIR=" + cfg}, client, user
}

func wantFail(t *testing.T, res result, what, want string) {
	t.Helper()
	if res.code == 0 || !strings.Contains(res.stderr, want) {
		t.Fatalf("%s: exit %d, stdout %q, stderr %q; want an error containing %q", what, res.code, res.stdout, res.stderr, want)
	}
}

// TestRename: another user cannot rename (or learn of) the workspace; a
// running workspace is refused with the reason; the confirmation must
// name the workspace; a taken or invalid name is refused.
func TestRename(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	e.addWorkspace("old")
	memberEnv, _, _ := e.memberEnv()
	me, err := e.client.User(ctx, codersdk.Me)
	if err != nil {
		t.Fatal(err)
	}

	wantFail(t, runCLI(t, memberEnv, nil, "rename", me.Username+"/old", "mine", "-y"), "member renames the owner's workspace", "not found")
	wantFail(t, runCLI(t, e.env, nil, "rename", "old", "new", "-y"), "rename while running", `"old" is running and cannot be renamed`)
	e.stopWorkspace("old")
	wantFail(t, runCLI(t, e.env, strings.NewReader("nope\n"), "rename", "old", "new"), "wrong confirmation", "canceled")
	wantFail(t, runCLI(t, e.env, nil, "rename", "old", "new"), "no confirmation", "pass -y")
	wantFail(t, runCLI(t, e.env, nil, "rename", "old", "../x", "-y"), "invalid name", `invalid new name "../x"`)
	if _, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "old"); err != nil {
		t.Fatalf("refused renames changed the workspace: %v", err)
	}

	res := runCLI(t, e.env, strings.NewReader("old\n"), "rename", "old", "new")
	if res.code != 0 || !strings.Contains(res.stdout, `Workspace "old" renamed to "new"`) {
		t.Fatalf("rename: %+v", res)
	}
	if _, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "new"); err != nil {
		t.Fatalf("renamed workspace: %v", err)
	}
	if _, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "old"); err == nil {
		t.Fatal("the old name still resolves")
	}

	e.addWorkspace("taken")
	wantFail(t, runCLI(t, e.env, nil, "rename", "new", "TAKEN", "-y"), "taken name", `Workspace "TAKEN" already exists`)
}

// TestWhoami prints the deployment and the session's user.
func TestWhoami(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	memberEnv, _, member := e.memberEnv()
	out := mustRun(t, memberEnv, "whoami")
	if want := "Coder is running at " + e.client.URL.String() + ", You're authenticated as " + member.Username + " !"; !strings.Contains(out, want) {
		t.Fatalf("whoami: %q, want %q", out, want)
	}
	var js struct{ URL, Username, ID string }
	if err := json.Unmarshal([]byte(mustRun(t, memberEnv, "whoami", "-o", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Username != member.Username || js.ID != member.ID.String() || js.URL != e.client.URL.String() {
		t.Fatalf("whoami json %+v", js)
	}
	wantFail(t, runCLI(t, memberEnv, nil, "whoami", "--token", "bad-token"), "bad token", "error")
}

// listRows returns the first column of coder list's table rows.
func listRows(t *testing.T, env []string, args ...string) []string {
	t.Helper()
	out := mustRun(t, env, append([]string{"list"}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rows []string
	for _, l := range lines[1:] {
		rows = append(rows, strings.Fields(l)[0])
	}
	return rows
}

// TestFavoritesAndListSearch: favorites come first in coder list; only the
// owner may mark them; --search filters by owner, name, template and
// status; -c picks columns; bad filters and columns are refused.
func TestFavoritesAndListSearch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	for _, n := range []string{"alpha", "beta", "gamma"} {
		e.addWorkspace(n)
	}
	e.stopWorkspace("gamma")
	me, err := e.client.User(ctx, codersdk.Me)
	if err != nil {
		t.Fatal(err)
	}
	u := me.Username
	memberEnv, member, memberUser := e.memberEnv()
	memberName := memberUser.Username
	gamma, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "gamma")
	if err != nil {
		t.Fatal(err)
	}

	// A member can neither favorite the owner's workspace nor see it.
	wantFail(t, runCLI(t, memberEnv, nil, "favorite", u+"/gamma"), "member favorites another's workspace", "not found")
	if err := member.FavoriteWorkspace(ctx, gamma.ID); err == nil {
		t.Fatal("member favorited another user's workspace through the API")
	} else if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusNotFound {
		t.Fatalf("member favorite: %v", err)
	}
	// An owner (who can read and update it) still cannot mark a member's workspace.
	memberWS := e.addWorkspaceOwnedBy("theirs", member)
	if err := e.client.FavoriteWorkspace(ctx, memberWS); err == nil {
		t.Fatal("admin favorited a member's workspace")
	} else if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusForbidden || !strings.Contains(apiErr.Message, "own") {
		t.Fatalf("admin favorite: %v", err)
	}

	if got := strings.Join(listRows(t, e.env), " "); got != u+"/alpha "+u+"/beta "+u+"/gamma" {
		t.Fatalf("default order: %s", got)
	}
	if out := mustRun(t, e.env, "favorite", "gamma"); !strings.Contains(out, `Workspace "gamma" added to favorites.`) {
		t.Fatalf("favorite: %q", out)
	}
	if got := strings.Join(listRows(t, e.env), " "); got != u+"/gamma "+u+"/alpha "+u+"/beta" {
		t.Fatalf("favorites first: %s", got)
	}
	out := mustRun(t, e.env, "list", "-c", "name,favorite,status")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "FAVORITE") || strings.Fields(lines[1])[0] != "gamma" || !strings.Contains(lines[1], "★") || strings.Contains(lines[2], "★") {
		t.Fatalf("list -c:\n%s", out)
	}
	mustRun(t, e.env, "unfavorite", "gamma")
	if got := strings.Join(listRows(t, e.env), " "); got != u+"/alpha "+u+"/beta "+u+"/gamma" {
		t.Fatalf("after unfavorite: %s", got)
	}

	for _, tc := range []struct {
		search string
		want   string
	}{
		{"status:stopped", u + "/gamma"},
		// A search without owner: covers every workspace the caller may see.
		{"status:running", u + "/alpha " + u + "/beta " + memberName + "/theirs"},
		{"owner:me status:running", u + "/alpha " + u + "/beta"},
		{"template:tpl-beta", u + "/beta"},
		{"name:ALP", u + "/alpha"},
		{"owner:me status:running name:bet", u + "/beta"},
		{"owner:" + u + " gam", u + "/gamma"},
	} {
		if got := strings.Join(listRows(t, e.env, "--search", tc.search), " "); got != tc.want {
			t.Errorf("--search %q: %q, want %q", tc.search, got, tc.want)
		}
	}
	// -a lists every workspace the caller may see (the member's too).
	if got := listRows(t, e.env, "-a"); len(got) != 4 {
		t.Errorf("list -a: %v", got)
	}
	wantFail(t, runCLI(t, e.env, nil, "list", "--search", "colour:red"), "unknown filter", `unknown filter "colour"`)
	wantFail(t, runCLI(t, e.env, nil, "list", "--search", "status:sleeping"), "unknown status", `unknown status "sleeping"`)
	wantFail(t, runCLI(t, e.env, nil, "list", "-c", "workspace,nope"), "unknown column", `unknown column "nope"`)
}

// addWorkspaceOwnedBy is addWorkspace for another user; it returns the
// workspace's ID.
func (e *reachEnv) addWorkspaceOwnedBy(name string, owner *codersdk.Client) uuid.UUID {
	t := e.t
	t.Helper()
	ctx := context.Background()
	e.addWorkspace(name)
	ws, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, name)
	if err != nil {
		t.Fatal(err)
	}
	u, err := owner.User(ctx, codersdk.Me)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.DB.Pool().Exec(ctx, "UPDATE workspaces SET owner_id = $1 WHERE id = $2", u.ID, ws.ID); err != nil {
		t.Fatal(err)
	}
	return ws.ID
}

// TestStopAndDeleteConfirm: stop and delete (alias rm) ask first and queue
// nothing unless confirmed.
func TestStopAndDeleteConfirm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	e.addWorkspace("ws")
	ws, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "ws")
	if err != nil {
		t.Fatal(err)
	}
	builds := func() int {
		bs, err := e.srv.DB.GetWorkspaceBuildsByWorkspaceID(ctx, ws.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(bs)
	}
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"stop", "ws"}, "", "pass -y"},
		{[]string{"stop", "ws"}, "n\n", "canceled"},
		{[]string{"rm", "ws"}, "", "pass -y"},
		{[]string{"rm", "ws"}, "no\n", "canceled"},
	} {
		res := runCLI(t, e.env, strings.NewReader(tc.stdin), tc.args...)
		wantFail(t, res, strings.Join(tc.args, " "), tc.want)
		if !strings.Contains(res.stderr, "?") {
			t.Errorf("%v did not ask: %q", tc.args, res.stderr)
		}
	}
	if n := builds(); n != 1 {
		t.Fatalf("refused confirmations queued builds: %d", n)
	}
	// Confirmed, the stop is queued (no provisioner runs here: the CLI
	// follows the build until its context ends). A build needs the
	// version attached to the template.
	prev, err := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.DB.UpdateTemplateVersionTemplateID(ctx, database.UpdateTemplateVersionTemplateIDParams{
		ID: prev.TemplateVersionID, TemplateID: uuid.NullUUID{UUID: ws.TemplateID, Valid: true}, UpdatedAt: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_ = runCLIContext(cctx, e.env, "stop", "ws", "-y")
	if n := builds(); n != 2 {
		t.Fatalf("stop -y queued %d builds, want 2", n)
	}
	if b, _ := e.srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID); b.Transition != database.WorkspaceTransitionStop {
		t.Fatalf("latest build %s", b.Transition)
	}
}

// TestOpenVSCode: the printed URI carries owner, workspace, deployment URL
// and folder as the VS Code extension reads them; a token only with
// --generate-token, and it authenticates.
func TestOpenVSCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	e.addWorkspace("code")
	me, err := e.client.User(ctx, codersdk.Me)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(out string) url.Values {
		t.Helper()
		u, err := url.Parse(strings.TrimSpace(out))
		if err != nil || u.Scheme != "vscode" || u.Host != "coder.coder-remote" || u.Path != "/open" {
			t.Fatalf("uri %q: %v", out, err)
		}
		return u.Query()
	}
	q := parse(mustRun(t, e.env, "open", "vscode", "code", "/home/coder/project"))
	if q.Get("owner") != me.Username || q.Get("workspace") != "code" || q.Get("url") != e.client.URL.String() ||
		q.Get("folder") != "/home/coder/project" || q.Has("token") || q.Has("agent") {
		t.Fatalf("query %v", q)
	}
	q = parse(mustRun(t, e.env, "open", "vscode", "code"))
	if q.Has("folder") {
		t.Fatalf("no folder given and the agent has no directory: %v", q)
	}
	wantFail(t, runCLI(t, e.env, nil, "open", "vscode", "code", "src"), "relative folder without agent dir", "no directory")

	q = parse(mustRun(t, e.env, "open", "vscode", "code", "/srv", "--generate-token"))
	tok := q.Get("token")
	if tok == "" {
		t.Fatalf("no token: %v", q)
	}
	c := codersdk.New(e.client.URL)
	c.SetSessionToken(tok)
	if u, err := c.User(ctx, codersdk.Me); err != nil || u.ID != me.ID {
		t.Fatalf("generated token: %v %v", u.Username, err)
	}
}

// TestPingFlags: -t and --wait are validated; a real agent answers with
// -n, --wait and -t as Coder names them.
func TestPingFlags(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	id, token := e.addWorkspace("pinged")
	e.runAgent(token)
	e.waitConnected(id)
	wantFail(t, runCLI(t, e.env, nil, "ping", "pinged", "-t", "0s"), "zero timeout", "--timeout must be positive")
	wantFail(t, runCLI(t, e.env, nil, "ping", "pinged", "--wait=-1s"), "negative wait", "--wait must be positive")
	res := runCLI(t, e.env, nil, "ping", "pinged", "-n", "3", "--wait", "100ms", "-t", "10s")
	if res.code != 0 || !strings.Contains(res.stdout, "pong from pinged") {
		t.Fatalf("ping: %+v", res)
	}
}

// TestSSHNetworkInfoAndUsage: coder ssh --network-info-dir writes
// <parent pid>.json with the fields the VS Code extension reads while the
// session lasts and removes it after; --usage-app=vscode records use;
// a bad --usage-app is refused before connecting.
func TestSSHNetworkInfoAndUsage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	id, token := e.addWorkspace("ide")
	e.runAgent(token)
	e.waitConnected(id)
	ws, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "ide")
	if err != nil {
		t.Fatal(err)
	}
	wantFail(t, runCLI(t, e.env, nil, "ssh", "ide", "--usage-app", "emacs", "--", "true"), "bad usage app", `--usage-app "emacs"`)

	dir := t.TempDir()
	file := filepath.Join(dir, strconv.Itoa(os.Getppid())+".json")
	_, stop := startCLI(t, e.env, "ssh", "ide", "--network-info-dir", dir, "--network-info-interval", "200ms", "--usage-app", "vscode", "--", "sleep", "60")
	var info map[string]any
	waitFor(t, time.Minute, "network info file with a latency", func() (bool, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return false, nil
		}
		info = nil
		if err := json.Unmarshal(data, &info); err != nil {
			return false, err
		}
		lat, _ := info["latency"].(float64)
		return lat > 0, nil
	})
	for _, k := range []string{"p2p", "latency", "preferred_derp", "derp_latency", "upload_bytes_sec", "download_bytes_sec"} {
		if _, ok := info[k]; !ok {
			t.Errorf("network info lacks %q: %v", k, info)
		}
	}
	if d, _ := info["preferred_derp"].(string); d == "" {
		t.Errorf("preferred_derp empty: %v", info)
	}
	waitFor(t, 30*time.Second, "usage report", func() (bool, error) {
		w, err := e.client.Workspace(ctx, ws.ID)
		return err == nil && w.LastUsedAt.After(ws.LastUsedAt), err
	})
	stop()
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("network info file left behind: %v", err)
	}
}

// TestWorkspaceUsageAPI: usage reports are refused for another user's
// workspace, an unknown app and an agent of another workspace; a valid
// one records the use.
func TestWorkspaceUsageAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newReachEnv(t)
	agentA, _ := e.addWorkspace("a")
	agentB, _ := e.addWorkspace("b")
	_, member, _ := e.memberEnv()
	ws, err := e.client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "a")
	if err != nil {
		t.Fatal(err)
	}
	status := func(err error) int {
		t.Helper()
		if err == nil {
			return http.StatusNoContent
		}
		apiErr, ok := codersdk.AsError(err)
		if !ok {
			t.Fatalf("not an API error: %v", err)
		}
		return apiErr.StatusCode()
	}
	for _, tc := range []struct {
		name   string
		client *codersdk.Client
		req    codersdk.PostWorkspaceUsageRequest
		want   int
	}{
		{"another user's workspace", member, codersdk.PostWorkspaceUsageRequest{AgentID: agentA, AppName: "vscode"}, http.StatusNotFound},
		{"unknown app", e.client, codersdk.PostWorkspaceUsageRequest{AgentID: agentA, AppName: "emacs"}, http.StatusBadRequest},
		{"agent of another workspace", e.client, codersdk.PostWorkspaceUsageRequest{AgentID: agentB, AppName: "vscode"}, http.StatusBadRequest},
	} {
		if got := status(tc.client.PostWorkspaceUsage(ctx, ws.ID, tc.req)); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	if w, _ := e.client.Workspace(ctx, ws.ID); !w.LastUsedAt.Equal(ws.LastUsedAt) {
		t.Fatalf("refused reports recorded use: %v -> %v", ws.LastUsedAt, w.LastUsedAt)
	}
	if err := e.client.PostWorkspaceUsage(ctx, ws.ID, codersdk.PostWorkspaceUsageRequest{AgentID: agentA, AppName: "jetbrains"}); err != nil {
		t.Fatal(err)
	}
	if w, _ := e.client.Workspace(ctx, ws.ID); !w.LastUsedAt.After(ws.LastUsedAt) {
		t.Fatalf("usage not recorded: %v -> %v", ws.LastUsedAt, w.LastUsedAt)
	}
}
