package coderd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	gossh "golang.org/x/crypto/ssh"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/agent"
	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentproto"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/codersdk/workspacesdk"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
	"github.com/wgmesh/coder/tunnel"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// agentEnv is a coderd on a fresh database with a DERP relay, which can be
// restarted on the same address and database.
type agentEnv struct {
	t       testing.TB
	dbURL   string
	derpMap *tailcfg.DERPMap
	addr    string
	srv     *httptest.Server
	api     *coderd.API
	store   *database.Store
	pool    *pgxpool.Pool
	url     *url.URL
	// tweak adjusts the agent options of every coderd this env starts.
	tweak func(*coderd.AgentOptions)
	// ps, when set, is the pubsub every coderd this env starts uses.
	ps *pubsub.Pubsub
}

func newAgentEnv(t testing.TB) *agentEnv {
	t.Helper()
	return newAgentEnvWith(t, nil)
}

// newAgentEnvWith is newAgentEnv with adjusted agent options.
func newAgentEnvWith(t testing.TB, tweak func(*coderd.AgentOptions)) *agentEnv {
	t.Helper()
	e := &agentEnv{t: t, dbURL: dbtestutil.NewDB(t), derpMap: tunneltest.RunDERP(t), tweak: tweak}
	e.pool = dbtestutil.NewPoolFor(t, e.dbURL)
	e.store = database.NewStore(e.pool)
	e.start()
	t.Cleanup(e.stop)
	return e
}

// start serves a new coderd (on the previous address after a restart).
func (e *agentEnv) start() {
	t := e.t
	addr := "127.0.0.1:0"
	if e.addr != "" {
		addr = e.addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e.addr = ln.Addr().String()
	e.url, _ = url.Parse("http://" + e.addr)
	agentOpts := coderd.AgentOptions{
		DERPMap:           e.derpMap,
		HeartbeatInterval: 500 * time.Millisecond,
		LogsPollInterval:  50 * time.Millisecond,
	}
	if e.tweak != nil {
		e.tweak(&agentOpts)
	}
	api, err := coderd.New(coderd.Options{
		Database:  e.store,
		Pubsub:    e.ps,
		AccessURL: e.url,
		Agents:    agentOpts,
	})
	if err != nil {
		t.Fatalf("coderd: %v", err)
	}
	srv := httptest.NewUnstartedServer(api.Handler())
	srv.Listener = ln
	srv.Start()
	e.srv, e.api = srv, api
}

// stop closes coderd: every websocket (coordination included) drops.
func (e *agentEnv) stop() {
	if e.srv == nil {
		return
	}
	_ = e.api.Close()
	e.srv.CloseClientConnections()
	e.srv.Close()
	e.srv = nil
}

func (e *agentEnv) client() *codersdk.Client { return codersdk.New(e.url) }

// insertAgent registers a workspace of owner with one agent (directly in
// the database, as a provisioner would) and returns the agent ID and token.
func insertAgent(t testing.TB, db *database.Store, ownerID uuid.UUID, scripts ...agentsdk.Script) (uuid.UUID, string) {
	t.Helper()
	return insertAgentSpec(t, db, ownerID, agentSpec{scripts: scripts})
}

// agentSpec is what a template declares for an agent.
type agentSpec struct {
	scripts  []agentsdk.Script
	metadata []agentsdk.MetadataDescription
	apps     []agentsdk.App
}

// insertAgentSpec is insertAgent with metadata items and apps (inserted
// with health "initializing" when they have a health check, as the
// provisioner does).
func insertAgentSpec(t testing.TB, db *database.Store, ownerID uuid.UUID, spec agentSpec) (uuid.UUID, string) {
	t.Helper()
	scripts := spec.scripts
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file, err := db.InsertFile(ctx, database.InsertFileParams{ID: uuid.New(), Hash: uuid.NewString(), CreatedAt: now, CreatedBy: ownerID, Mimetype: "application/x-tar", Data: []byte{}})
	must(err)
	newJob := func(typ database.ProvisionerJobType) database.ProvisionerJob {
		job, err := db.InsertProvisionerJob(ctx, database.InsertProvisionerJobParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, InitiatorID: ownerID, Provisioner: database.ProvisionerTypeTerraform,
			StorageMethod: database.ProvisionerStorageMethodFile, Type: typ, Input: []byte("{}"), FileID: file.ID, Tags: []byte("{}"),
		})
		must(err)
		return job
	}
	importJob := newJob(database.ProvisionerJobTypeTemplateVersionImport)
	buildJob := newJob(database.ProvisionerJobTypeWorkspaceBuild)
	var agentID uuid.UUID
	token := uuid.NewString()
	err = db.InTx(ctx, func(q *database.Queries) error {
		tv, err := q.InsertTemplateVersion(ctx, database.InsertTemplateVersionParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "v1", JobID: importJob.ID, CreatedBy: ownerID})
		if err != nil {
			return err
		}
		tpl, err := q.InsertTemplate(ctx, database.InsertTemplateParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "tpl-" + uuid.NewString()[:8], Provisioner: database.ProvisionerTypeTerraform, ActiveVersionID: tv.ID, CreatedBy: ownerID})
		if err != nil {
			return err
		}
		ws, err := q.InsertWorkspace(ctx, database.InsertWorkspaceParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, OwnerID: ownerID, TemplateID: tpl.ID, Name: "ws-" + uuid.NewString()[:8], AutomaticUpdates: "never"})
		if err != nil {
			return err
		}
		if _, err := q.InsertWorkspaceBuild(ctx, database.InsertWorkspaceBuildParams{ID: uuid.New(), CreatedAt: now, UpdatedAt: now, WorkspaceID: ws.ID, TemplateVersionID: tv.ID, BuildNumber: 1, Transition: database.WorkspaceTransitionStart, InitiatorID: ownerID, JobID: buildJob.ID, Reason: database.BuildReasonInitiator}); err != nil {
			return err
		}
		res, err := q.InsertWorkspaceResource(ctx, database.InsertWorkspaceResourceParams{ID: uuid.New(), CreatedAt: now, JobID: buildJob.ID, Transition: database.WorkspaceTransitionStart, Type: "null_resource", Name: "dev"})
		if err != nil {
			return err
		}
		env, _ := json.Marshal(map[string]string{"MY_VAR": "from-manifest"})
		ag, err := q.InsertWorkspaceAgent(ctx, database.InsertWorkspaceAgentParams{
			ID: uuid.New(), CreatedAt: now, UpdatedAt: now, Name: "main", ResourceID: res.ID, AuthTokenHash: coderd.HashAgentToken(token),
			Architecture: "amd64", OperatingSystem: "linux", EnvironmentVariables: env, ConnectionTimeoutSeconds: 120, DisplayApps: []byte("{}"),
		})
		if err != nil {
			return err
		}
		agentID = ag.ID
		for i, md := range spec.metadata {
			if err := q.InsertWorkspaceAgentMetadata(ctx, database.InsertWorkspaceAgentMetadataParams{
				WorkspaceAgentID: ag.ID, DisplayName: md.DisplayName, Key: md.Key, Script: md.Script,
				Timeout: md.Timeout, Interval: md.Interval, DisplayOrder: int32(i),
			}); err != nil {
				return err
			}
		}
		for i, app := range spec.apps {
			health := database.WorkspaceAppHealthDisabled
			if app.Healthcheck.URL != "" {
				health = database.WorkspaceAppHealthInitializing
			}
			if _, err := q.InsertWorkspaceApp(ctx, database.InsertWorkspaceAppParams{
				ID: app.ID, CreatedAt: now, AgentID: ag.ID, Slug: app.Slug, DisplayName: app.DisplayName,
				Url: pgtype.Text{String: app.URL, Valid: app.URL != ""}, SharingLevel: database.AppSharingLevelOwner,
				HealthcheckUrl: app.Healthcheck.URL, HealthcheckInterval: app.Healthcheck.Interval,
				HealthcheckThreshold: app.Healthcheck.Threshold, Health: health, DisplayOrder: int32(i), OpenIn: "slim-window",
			}); err != nil {
				return err
			}
		}
		if len(scripts) == 0 {
			return nil
		}
		src := database.InsertWorkspaceAgentLogSourcesParams{WorkspaceAgentID: ag.ID, CreatedAt: now}
		sp := database.InsertWorkspaceAgentScriptsParams{WorkspaceAgentID: ag.ID, CreatedAt: now}
		for _, s := range scripts {
			src.ID = append(src.ID, s.LogSourceID)
			src.DisplayName = append(src.DisplayName, s.DisplayName)
			src.Icon = append(src.Icon, "")
			sp.ID = append(sp.ID, uuid.New())
			sp.LogSourceID = append(sp.LogSourceID, s.LogSourceID)
			sp.LogPath = append(sp.LogPath, "")
			sp.Script = append(sp.Script, s.Script)
			sp.Cron = append(sp.Cron, "")
			sp.StartBlocksLogin = append(sp.StartBlocksLogin, s.StartBlocksLogin)
			sp.RunOnStart = append(sp.RunOnStart, s.RunOnStart)
			sp.RunOnStop = append(sp.RunOnStop, s.RunOnStop)
			sp.TimeoutSeconds = append(sp.TimeoutSeconds, s.TimeoutSeconds)
			sp.DisplayName = append(sp.DisplayName, s.DisplayName)
		}
		if _, err := q.InsertWorkspaceAgentLogSources(ctx, src); err != nil {
			return err
		}
		_, err = q.InsertWorkspaceAgentScripts(ctx, sp)
		return err
	})
	must(err)
	return agentID, token
}

func startScript(script string, timeoutSeconds int32) agentsdk.Script {
	return agentsdk.Script{LogSourceID: uuid.New(), DisplayName: "Startup Script", Script: script, RunOnStart: true, TimeoutSeconds: timeoutSeconds}
}

// runAgent runs an in-process agent until the test ends.
func runAgent(t testing.TB, u *url.URL, token string) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Options{
		Client:     agentsdk.New(u, token),
		DataDir:    t.TempDir(),
		Shell:      "/bin/sh",
		BackoffMin: 50 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond,
		Logger:     tunneltest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
	})
	return a
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitAgent(t testing.TB, client *codersdk.Client, id uuid.UUID, what string, cond func(codersdk.WorkspaceAgent) bool) codersdk.WorkspaceAgent {
	t.Helper()
	var last codersdk.WorkspaceAgent
	eventually(t, 60*time.Second, what, func() bool {
		a, err := client.WorkspaceAgent(context.Background(), id)
		if err != nil {
			return false
		}
		last = a
		return cond(a)
	})
	return last
}

func waitLog(t testing.TB, client *codersdk.Client, id uuid.UUID, substr string) []codersdk.WorkspaceAgentLog {
	t.Helper()
	var logs []codersdk.WorkspaceAgentLog
	eventually(t, 60*time.Second, "log "+substr, func() bool {
		var err error
		logs, err = client.WorkspaceAgentLogsAfter(context.Background(), id, 0)
		if err != nil {
			return false
		}
		for _, l := range logs {
			if strings.Contains(l.Output, substr) {
				return true
			}
		}
		return false
	})
	return logs
}

// dialAgentSSH connects a user's tunnel to the agent through coderd's
// coordinate endpoint and opens an SSH client over it.
func dialAgentSSH(t testing.TB, client *codersdk.Client, derpMap *tailcfg.DERPMap, agentID uuid.UUID) *gossh.Client {
	t.Helper()
	return sshOverTunnel(t, client, dialAgentTunnel(t, client, derpMap, agentID), agentID)
}

// sshOverTunnel opens an SSH client to the agent through an established
// tunnel, verifying the host key the agent registered with coderd (read
// through client), as coder ssh does.
func sshOverTunnel(t testing.TB, client *codersdk.Client, conn *tunnel.Conn, agentID uuid.UUID) *gossh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	registered := waitAgent(t, client, agentID, "agent reported its SSH host key", func(a codersdk.WorkspaceAgent) bool { return a.SSHHostKey != "" })
	hostKey, err := workspacesdk.PinnedHostKey(registered.SSHHostKey)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := conn.DialContext(ctx, "tcp", netip.AddrPortFrom(tunnel.IPFromUUID(agentID), agentproto.SSHPort).String())
	if err != nil {
		t.Fatalf("dial ssh: %v", err)
	}
	c, chans, reqs, err := gossh.NewClientConn(nc, "agent", &gossh.ClientConfig{
		User: "coder", HostKeyCallback: hostKey, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh handshake: %v", err)
	}
	sc := gossh.NewClient(c, chans, reqs)
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// dialAgentTunnel joins the mesh as the user and waits until the agent is
// reachable through it.
func dialAgentTunnel(t testing.TB, client *codersdk.Client, derpMap *tailcfg.DERPMap, agentID uuid.UUID) *tunnel.Conn {
	t.Helper()
	idCtx, idCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer idCancel()
	clientID := uuid.New()
	identity, err := client.TailnetClient(idCtx, clientID)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tunnel.NewConn(tunnel.Options{Addresses: []netip.Prefix{identity.Address}, DERPMap: derpMap, Logger: tunneltest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctrl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn: conn,
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			return client.DialClientCoordinator(ctx, agentID, clientID, conn.NodeKey())
		},
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.Close() })
	ctrl.AddTunnel(agentID)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ip := tunnel.IPFromUUID(agentID)
	if !conn.AwaitReachable(ctx, ip) {
		t.Fatal("agent not reachable over the tunnel")
	}
	return conn
}

func sshRun(t testing.TB, c *gossh.Client, cmd string) (string, string, int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	err = s.Run(cmd)
	code := 0
	var exitErr *gossh.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitStatus()
	} else if err != nil {
		t.Fatalf("run %q: %v", cmd, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestAgentConnectSSHAndLifecycle(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	ownerID := uuid.MustParse(first.UserID)
	agentID, token := insertAgent(t, e.store, ownerID, startScript("echo hello-from-startup; echo oops >&2", 0))

	a0, err := owner.WorkspaceAgent(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	if a0.Status != codersdk.WorkspaceAgentConnecting || a0.LifecycleState != codersdk.WorkspaceAgentLifecycleCreated {
		t.Fatalf("before start: status %s lifecycle %s", a0.Status, a0.LifecycleState)
	}

	runAgent(t, e.url, token)
	got := waitAgent(t, owner, agentID, "connected and ready", func(a codersdk.WorkspaceAgent) bool {
		return a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady
	})
	if got.StartedAt == nil || got.ReadyAt == nil || got.ReadyAt.Before(*got.StartedAt) {
		t.Fatalf("lifecycle timestamps: started %v ready %v", got.StartedAt, got.ReadyAt)
	}
	waitLog(t, owner, agentID, "hello-from-startup")
	logs := waitLog(t, owner, agentID, "oops")
	// stdout at info, stderr at warn (agentscripts reads them apart).
	levels := map[string]codersdk.LogLevel{}
	for _, l := range logs {
		levels[l.Output] = l.Level
	}
	if len(logs) != 2 || levels["hello-from-startup"] != codersdk.LogLevelInfo || levels["oops"] != codersdk.LogLevelWarn {
		t.Errorf("logs %+v", logs)
	}

	sc := dialAgentSSH(t, owner, e.derpMap, agentID)
	tests := []struct {
		cmd, stdout, stderr string
		code                int
	}{
		{cmd: "true", code: 0},
		{cmd: "exit 42", code: 42},
		{cmd: "echo err >&2; exit 3", stderr: "err\n", code: 3},
		{cmd: "echo $CODER", stdout: "true\n"},
		{cmd: "echo $CODER_WORKSPACE_NAME | cut -c1-3", stdout: "ws-\n"},
		{cmd: "echo $MY_VAR", stdout: "from-manifest\n"},
	}
	for _, tc := range tests {
		stdout, stderr, code := sshRun(t, sc, tc.cmd)
		if code != tc.code || stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("%q: got (%q, %q, %d), want (%q, %q, %d)", tc.cmd, stdout, stderr, code, tc.stdout, tc.stderr, tc.code)
		}
	}
}

func TestAgentStartupScriptOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		script  agentsdk.Script
		state   codersdk.WorkspaceAgentLifecycle
		wantLog string
	}{
		{name: "error", script: startScript("echo about-to-fail; exit 7", 0), state: codersdk.WorkspaceAgentLifecycleStartError, wantLog: "about-to-fail"},
		{name: "timeout", script: startScript("echo about-to-hang; sleep 60", 1), state: codersdk.WorkspaceAgentLifecycleStartTimeout, wantLog: "about-to-hang"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newAgentEnv(t)
			owner := e.client()
			first := coderdtest.CreateFirstUser(t, owner)
			agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID), tc.script)
			runAgent(t, e.url, token)
			waitAgent(t, owner, agentID, string(tc.state), func(a codersdk.WorkspaceAgent) bool { return a.LifecycleState == tc.state })
			waitLog(t, owner, agentID, tc.wantLog)
		})
	}
}

// countingTransport counts requests and their statuses.
type countingTransport struct {
	requests, unauthorized atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(r)
	c.requests.Add(1)
	if err == nil && res.StatusCode == http.StatusUnauthorized {
		c.unauthorized.Add(1)
	}
	return res, err
}

func TestAgentWrongTokenRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	agentID, _ := insertAgent(t, e.store, uuid.MustParse(first.UserID))

	// The API answers 401 to a wrong token.
	bad := agentsdk.New(e.url, uuid.NewString())
	_, err := bad.Manifest(context.Background())
	if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusUnauthorized {
		t.Fatalf("manifest with a wrong token: %v", err)
	}

	ct := &countingTransport{}
	bad.SDK.HTTPClient = &http.Client{Transport: ct}
	a, err := agent.New(agent.Options{Client: bad, DataDir: t.TempDir(), BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// It keeps retrying (several attempts, each refused)...
	eventually(t, 30*time.Second, "retries", func() bool { return ct.unauthorized.Load() >= 4 })
	// ...and stops cleanly without ever connecting.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if ct.requests.Load() != ct.unauthorized.Load() {
		t.Fatalf("%d requests, %d refused", ct.requests.Load(), ct.unauthorized.Load())
	}
	ag, err := owner.WorkspaceAgent(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	if ag.Status != codersdk.WorkspaceAgentConnecting {
		t.Fatalf("status %s", ag.Status)
	}
}

func TestAgentCoordinateAuthorization(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	member, memberUser := coderdtest.CreateAnotherUser(t, owner)
	// The owner's workspace: the member may not reach it.
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })

	ctx := context.Background()
	_, err := member.DialCoordinator(ctx, agentID)
	apiErr, ok := codersdk.AsError(err)
	if !ok || apiErr.StatusCode() != http.StatusForbidden {
		t.Fatalf("member coordinate: %v", err)
	}
	if body := apiErr.Message + apiErr.Detail; strings.Contains(body, agentID.String()) || strings.Contains(body, "node") {
		t.Fatalf("403 leaks agent information: %v", apiErr)
	}
	// An unknown agent looks the same.
	_, err = member.DialCoordinator(ctx, uuid.New())
	if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusForbidden {
		t.Fatalf("unknown agent coordinate: %v", err)
	}
	if _, err := member.WorkspaceAgent(ctx, agentID); err == nil {
		t.Fatal("member read another user's agent")
	}
	// Without a session: 401.
	_, err = e.client().DialCoordinator(ctx, agentID)
	if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusUnauthorized {
		t.Fatalf("anonymous coordinate: %v", err)
	}
	// The member's own agent is reachable by the member.
	ownID, ownToken := insertAgent(t, e.store, memberUser.ID)
	runAgent(t, e.url, ownToken)
	sc := dialAgentSSH(t, member, e.derpMap, ownID)
	if out, _, code := sshRun(t, sc, "echo mine"); out != "mine\n" || code != 0 {
		t.Fatalf("own agent: %q %d", out, code)
	}
}

func TestAgentSurvivesCoderdRestart(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	flag := filepath.Join(t.TempDir(), "go")
	script := fmt.Sprintf("echo before-outage; while [ ! -f %q ]; do sleep 0.05; done; echo during-outage", flag)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID), startScript(script, 0))
	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	waitLog(t, owner, agentID, "before-outage")

	// An interactive session: a shell reading lines and echoing them.
	sc := dialAgentSSH(t, owner, e.derpMap, agentID)
	sess, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("while read l; do echo got-$l; done"); err != nil {
		t.Fatal(err)
	}
	echo := func(word string) {
		t.Helper()
		if _, err := io.WriteString(stdin, word+"\n"); err != nil {
			t.Fatalf("write: %v", err)
		}
		want := "got-" + word + "\n"
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != want {
			t.Fatalf("echo %q: %q %v", word, buf, err)
		}
	}
	echo("one")

	// coderd goes away; the session keeps working and the script writes
	// logs during the outage.
	e.stop()
	echo("two")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	echo("three")

	// A new coderd on the same database and address.
	e.start()
	owner = e.client()
	owner.SetSessionToken(loginOwner(t, owner))
	waitLog(t, owner, agentID, "during-outage")
	waitAgent(t, owner, agentID, "reconnected and ready", func(a codersdk.WorkspaceAgent) bool {
		return a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady
	})
	echo("four")
	// Each line was stored once.
	logs, err := owner.WorkspaceAgentLogsAfter(context.Background(), agentID, 0)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, l := range logs {
		count[l.Output]++
	}
	if count["before-outage"] != 1 || count["during-outage"] != 1 {
		t.Fatalf("log lines stored %v", count)
	}
	// A new user connection works through the new coderd.
	sc2 := dialAgentSSH(t, owner, e.derpMap, agentID)
	if out, _, _ := sshRun(t, sc2, "echo again"); out != "again\n" {
		t.Fatalf("after restart: %q", out)
	}
}

func loginOwner(t *testing.T, c *codersdk.Client) string {
	t.Helper()
	res, err := c.LoginWithPassword(context.Background(), codersdk.LoginWithPasswordRequest{Email: "owner@coder.test", Password: coderdtest.FirstUserPassword})
	if err != nil {
		t.Fatal(err)
	}
	return res.SessionToken
}
