package coderd_test

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// TestAgentDisconnectedAfterCoderdCrash: a coderd dies (its database
// sessions end and it records nothing more) while an agent is connected to
// it; a new coderd on the same database reports the agent disconnected
// from its first request, not connected until the heartbeat lapses (here
// five minutes, to make the difference plain), and connected again once the
// agent reconnects to it. A second live coderd's agent is left connected.
func TestAgentDisconnectedAfterCoderdCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := dbtestutil.NewDB(t)
	derpMap := tunneltest.RunDERP(t)
	agentOpts := coderd.AgentOptions{
		DERPMap: derpMap, HeartbeatInterval: 500 * time.Millisecond,
		InactiveDisconnectTimeout: 5 * time.Minute, ConnReconcileInterval: 200 * time.Millisecond,
	}
	serve := func(store *database.Store, ln net.Listener) (*coderd.API, *httptest.Server, *url.URL) {
		t.Helper()
		u, _ := url.Parse("http://" + ln.Addr().String())
		api, err := coderd.New(coderd.Options{Database: store, AccessURL: u, Agents: agentOpts})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(api.Handler())
		srv.Listener = ln
		srv.Start()
		return api, srv, u
	}
	listen := func(addr string) net.Listener {
		t.Helper()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}

	// The coderd that will crash, on a pool that can be cut off.
	var crashed atomic.Bool
	appName := "crashing-coderd-" + uuid.NewString()[:8]
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if crashed.Load() {
			return errors.New("this coderd was killed")
		}
		return nil
	}
	pool1, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	api1, srv1, url1 := serve(database.NewStore(pool1), listen("127.0.0.1:0"))
	t.Cleanup(func() {
		srv1.CloseClientConnections()
		srv1.Close()
		_ = api1.Close()
		pool1.Close()
	})
	pool := dbtestutil.NewPoolFor(t, dbURL)
	store := database.NewStore(pool)

	// A live coderd with an agent of its own.
	apiLive, srvLive, urlLive := serve(store, listen("127.0.0.1:0"))
	t.Cleanup(func() {
		srvLive.CloseClientConnections()
		srvLive.Close()
		_ = apiLive.Close()
	})

	owner := codersdk.New(url1)
	first := coderdtest.CreateFirstUser(t, owner)
	ownerID := uuid.MustParse(first.UserID)
	agentID, token := insertAgent(t, store, ownerID, startScript("echo crash-test", 0))
	liveID, liveToken := insertAgent(t, store, ownerID, startScript("echo live", 0))
	startAgentProcess(t, "CODER_AGENT_URL="+url1.String(), "CODER_AGENT_TOKEN="+token)
	startAgentProcess(t, "CODER_AGENT_URL="+urlLive.String(), "CODER_AGENT_TOKEN="+liveToken)
	for _, id := range []uuid.UUID{agentID, liveID} {
		waitAgent(t, owner, id, "connected", func(a codersdk.WorkspaceAgent) bool {
			return a.Status == codersdk.WorkspaceAgentConnected
		})
	}

	// kill -9, as the database sees it: the sessions end, nothing more is
	// written; the agent's connection drops.
	crashed.Store(true)
	if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", appName); err != nil {
		t.Fatal(err)
	}
	addr := srv1.Listener.Addr().String()
	srv1.CloseClientConnections()
	srv1.Listener.Close()
	// Its websockets end too (httptest does not track hijacked
	// connections); the disconnect it then tries to record cannot reach
	// the database.
	_ = api1.Close()

	// The new coderd, not yet reachable by the agent.
	api2, srvCheck, checkURL := serve(store, listen("127.0.0.1:0"))
	t.Cleanup(func() {
		srvCheck.CloseClientConnections()
		srvCheck.Close()
		_ = api2.Close()
	})
	check := codersdk.New(checkURL)
	check.SetSessionToken(owner.SessionToken())
	a, err := check.WorkspaceAgent(ctx, agentID)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != codersdk.WorkspaceAgentDisconnected {
		t.Fatalf("agent of the killed coderd: %s, want disconnected", a.Status)
	}
	if a, err := check.WorkspaceAgent(ctx, liveID); err != nil || a.Status != codersdk.WorkspaceAgentConnected {
		t.Fatalf("agent of the live coderd: %s %v, want connected", a.Status, err)
	}

	// The new coderd takes the old address: the agent reconnects.
	ln2 := listen(addr)
	srv2 := httptest.NewUnstartedServer(api2.Handler())
	srv2.Listener = ln2
	srv2.Start()
	t.Cleanup(func() {
		srv2.CloseClientConnections()
		srv2.Close()
	})
	waitAgent(t, check, agentID, "reconnected", func(a codersdk.WorkspaceAgent) bool {
		return a.Status == codersdk.WorkspaceAgentConnected
	})
	// The live coderd's agent was never touched.
	if a, err := check.WorkspaceAgent(ctx, liveID); err != nil || a.Status != codersdk.WorkspaceAgentConnected {
		t.Fatalf("agent of the live coderd after reconciliation: %s %v", a.Status, err)
	}
}
