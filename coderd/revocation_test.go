package coderd_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/agent"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/revocation"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
	"github.com/wgmesh/coder/tunnel"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// setupWait bounds setting a session up on a loaded machine.
const setupWait = 2 * time.Minute

// revocationWait bounds every wait of the revocation tests. The spec's
// bound is 5 s; the waits are for events (a read failing, a peer gone),
// never for time, so a generous bound only keeps a broken test from
// hanging on a loaded machine.
const revocationWait = 30 * time.Second

// newAgentEnvWithPubsub is newAgentEnv whose coderd publishes on a
// PostgreSQL pubsub (e.dbURL reaches the same database for other
// subscribers: replicas).
func newAgentEnvWithPubsub(t *testing.T) *agentEnv {
	t.Helper()
	e := &agentEnv{t: t, dbURL: dbtestutil.NewDB(t), derpMap: tunneltest.RunDERP(t)}
	e.pool = dbtestutil.NewPoolFor(t, e.dbURL)
	e.store = database.NewStore(e.pool)
	ps, err := pubsub.New(context.Background(), nil, e.pool, pubsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Close() })
	e.ps = ps
	e.start()
	t.Cleanup(e.stop)
	return e
}

// liveSSH is an SSH session over a user's own tunnel, running a command
// that prints a line every 200 ms; lines arrive on lines, which is closed
// when the session's output ends (EOF or error).
type liveSSH struct {
	peerID uuid.UUID
	lines  chan string
}

// startLiveSSH joins the mesh as client's user (through coderd's
// coordinator, like coder ssh), opens an SSH session to the agent and
// waits for its first line.
func startLiveSSH(t *testing.T, e *agentEnv, client *codersdk.Client, agentID uuid.UUID) *liveSSH {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupWait)
	defer cancel()
	clientID := uuid.New()
	identity, err := client.TailnetClient(ctx, clientID)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tunnel.NewConn(tunnel.Options{Addresses: []netip.Prefix{identity.Address}, DERPMap: e.derpMap, Logger: tunneltest.Logger()})
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
	if !conn.AwaitReachable(ctx, tunnel.IPFromUUID(agentID)) {
		t.Fatal("agent not reachable over the tunnel")
	}
	sc := sshOverTunnel(t, client, conn, agentID)
	sess, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("while :; do echo tick; sleep 0.2; done"); err != nil {
		t.Fatal(err)
	}
	s := &liveSSH{peerID: identity.PeerID, lines: make(chan string, 1024)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case s.lines <- sc.Text():
			default: // nobody is reading: drop, only liveness matters
			}
		}
	}()
	s.next(t)
	return s
}

// next waits for the session's next line.
func (s *liveSSH) next(t *testing.T) {
	t.Helper()
	select {
	case _, ok := <-s.lines:
		if !ok {
			t.Fatal("live SSH session ended")
		}
	case <-time.After(revocationWait):
		t.Fatal("live SSH session printed nothing")
	}
}

// awaitEnded waits until the session's output ends.
func (s *liveSSH) awaitEnded(t *testing.T) {
	t.Helper()
	timeout := time.After(revocationWait)
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("SSH session still running after the revocation")
		}
	}
}

// livePTY is a web terminal streaming a line every 200 ms; done receives
// the error its read ended with.
type livePTY struct{ done chan error }

func startLivePTY(t *testing.T, e *agentEnv, client *codersdk.Client, agentID uuid.UUID) *livePTY {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupWait)
	defer cancel()
	u := fmt.Sprintf("ws://%s/api/v2/workspaceagents/%s/pty?reconnect=%s&height=24&width=80&command=%s",
		e.addr, agentID, uuid.New(), url.QueryEscape("sh -c 'while :; do echo tock; sleep 0.2; done'"))
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{codersdk.SessionTokenHeader: {client.SessionToken()}}})
	if err != nil {
		t.Fatalf("open terminal: %v", err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	var out strings.Builder
	for !strings.Contains(out.String(), "tock") {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read terminal: %v", err)
		}
		out.Write(data)
	}
	p := &livePTY{done: make(chan error, 1)}
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				p.done <- err
				return
			}
		}
	}()
	return p
}

func (p *livePTY) awaitEnded(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Logf("terminal ended with %v", err)
		}
	case <-time.After(revocationWait):
		t.Fatal("terminal still open after the revocation")
	}
}

// awaitPeerGone waits until the agent's tunnel no longer has peer.
func awaitPeerGone(t *testing.T, a *agent.Agent, peer uuid.UUID) {
	t.Helper()
	eventually(t, revocationWait, "agent drops the revoked peer", func() bool {
		conn := a.TunnelConn()
		return conn != nil && !slices.Contains(conn.PeerIDs(), peer)
	})
}

// keyID is the ID part of a session token ("<id>-<secret>").
func keyID(token string) string {
	id, _, _ := strings.Cut(token, "-")
	return id
}

// TestRevocationEndsLiveSessions: deleting a user's API key, suspending or
// deleting the user, or stopping the workspace ends the live SSH session
// (through the user's own tunnel) and web terminal that access opened,
// removes the tunnel from the coordinator (the agent drops the peer) and
// ends matching sessions on another replica (a second pubsub subscriber);
// the same credentials cannot connect again. Another user's SSH session
// stays up throughout.
func TestRevocationEndsLiveSessions(t *testing.T) {
	t.Parallel()
	e := newAgentEnvWithPubsub(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	ownerID := uuid.MustParse(first.UserID)

	// Another replica's registry on the same database.
	otherPS, err := pubsub.NewFromURL(context.Background(), nil, e.dbURL, pubsub.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = otherPS.Close() })
	otherReplica, err := revocation.New(revocation.Options{Pubsub: otherPS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(otherReplica.Close)

	// The bystander: a second user with a session of their own.
	bystander, bystanderUser := coderdtest.CreateAnotherUser(t, owner)
	byAgent, byToken := insertAgent(t, e.store, bystanderUser.ID)
	runAgent(t, e.url, byToken)
	waitAgent(t, owner, byAgent, "bystander agent connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	bySSH := startLiveSSH(t, e, bystander, byAgent)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name string
		// siteOwner: the victim is a site owner reaching the first
		// owner's workspace (so they own none and can be deleted).
		siteOwner bool
		revoke    func(t *testing.T, victim *codersdk.Client, victimUser codersdk.User, workspaceID uuid.UUID)
		// refused is the status of a new connection with the same
		// credentials afterwards.
		refused int
	}{
		{
			name: "delete api key",
			revoke: func(t *testing.T, victim *codersdk.Client, u codersdk.User, _ uuid.UUID) {
				if err := owner.DeleteAPIKey(ctx, u.ID.String(), keyID(victim.SessionToken())); err != nil {
					t.Fatal(err)
				}
			},
			refused: http.StatusUnauthorized,
		},
		{
			name: "suspend user",
			revoke: func(t *testing.T, _ *codersdk.Client, u codersdk.User, _ uuid.UUID) {
				if _, err := owner.UpdateUserStatus(ctx, u.ID.String(), codersdk.UserStatusSuspended); err != nil {
					t.Fatal(err)
				}
			},
			refused: http.StatusUnauthorized,
		},
		{
			name:      "delete user",
			siteOwner: true,
			revoke: func(t *testing.T, _ *codersdk.Client, u codersdk.User, _ uuid.UUID) {
				// A user who owns a workspace cannot be deleted.
				_, holder := coderdtest.CreateAnotherUser(t, owner)
				insertAgent(t, e.store, holder.ID)
				err := owner.DeleteUser(ctx, holder.ID.String())
				if ce, ok := codersdk.AsError(err); !ok || ce.StatusCode() != http.StatusConflict || !strings.Contains(ce.Message, "owns 1 workspace") {
					t.Fatalf("deleting a user who owns a workspace: %v", err)
				}
				if err := owner.DeleteUser(ctx, u.ID.String()); err != nil {
					t.Fatal(err)
				}
			},
			refused: http.StatusUnauthorized,
		},
		{
			name: "stop workspace",
			revoke: func(t *testing.T, victim *codersdk.Client, _ codersdk.User, workspaceID uuid.UUID) {
				// The test inserted the builds as a provisioner would;
				// finish their jobs so that a new build may be queued.
				if _, err := e.pool.Exec(ctx, `UPDATE provisioner_jobs SET started_at = now(), completed_at = now() WHERE completed_at IS NULL`); err != nil {
					t.Fatal(err)
				}
				if _, err := e.pool.Exec(ctx, `UPDATE template_versions v SET template_id = w.template_id
					FROM workspace_builds b JOIN workspaces w ON w.id = b.workspace_id
					WHERE b.workspace_id = $1 AND v.id = b.template_version_id`, workspaceID); err != nil {
					t.Fatal(err)
				}
				if _, err := victim.CreateWorkspaceBuild(ctx, workspaceID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop}); err != nil {
					t.Fatal(err)
				}
			},
			refused: http.StatusConflict,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				victim     *codersdk.Client
				victimUser codersdk.User
				wsOwner    uuid.UUID
			)
			if tc.siteOwner {
				victim, victimUser = coderdtest.CreateAnotherUser(t, owner, "owner")
				wsOwner = ownerID
			} else {
				victim, victimUser = coderdtest.CreateAnotherUser(t, owner)
				wsOwner = victimUser.ID
			}
			agentID, token := insertAgent(t, e.store, wsOwner)
			ag := runAgent(t, e.url, token)
			waitAgent(t, owner, agentID, "agent connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
			wsID := workspaceOfAgent(t, e.store, agentID).ID

			ssh := startLiveSSH(t, e, victim, agentID)
			pty := startLivePTY(t, e, victim, agentID)
			remoteEnded := make(chan struct{})
			var once sync.Once
			t.Cleanup(otherReplica.Register(revocation.Session{
				Kind: "terminal", APIKeyID: keyID(victim.SessionToken()), UserID: victimUser.ID, WorkspaceID: wsID,
			}, time.Now(), func() { once.Do(func() { close(remoteEnded) }) }))

			tc.revoke(t, victim, victimUser, wsID)

			ssh.awaitEnded(t)
			pty.awaitEnded(t)
			awaitPeerGone(t, ag, ssh.peerID)
			select {
			case <-remoteEnded:
			case <-time.After(revocationWait):
				t.Fatal("the other replica's session was not ended")
			}
			// The same credentials cannot connect again.
			_, err := victim.DialClientCoordinator(ctx, agentID, uuid.New(), key.NodePublic{})
			if ce, ok := codersdk.AsError(err); !ok || ce.StatusCode() != tc.refused {
				t.Fatalf("reconnecting after the revocation: %v, want status %d", err, tc.refused)
			}
			// The bystander never noticed.
			bySSH.next(t)
		})
	}
	// Still up after every case.
	bySSH.next(t)
	sc := dialAgentSSH(t, bystander, e.derpMap, byAgent)
	if out, _, _ := sshRun(t, sc, "echo still-here"); strings.TrimSpace(out) != "still-here" {
		t.Fatalf("bystander's new session: %q", out)
	}
}

// TestRevocationReachesLostClient: a client whose coordination socket
// dropped without a goodbye (a network blip) is only lost, and the agent
// keeps its WireGuard peer for it to resume; revoking its key then must
// still make the agent drop it, at once rather than when the lost peer
// expires.
func TestRevocationReachesLostClient(t *testing.T) {
	t.Parallel()
	e := newAgentEnvWithPubsub(t)
	owner := e.client()
	coderdtest.CreateFirstUser(t, owner)
	victim, victimUser := coderdtest.CreateAnotherUser(t, owner)
	agentID, token := insertAgent(t, e.store, victimUser.ID)
	ag := runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "agent connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })

	ctx, cancel := context.WithTimeout(context.Background(), setupWait)
	defer cancel()
	clientID := uuid.New()
	identity, err := victim.TailnetClient(ctx, clientID)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tunnel.NewConn(tunnel.Options{Addresses: []netip.Prefix{identity.Address}, DERPMap: e.derpMap, Logger: tunneltest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	// The first dial succeeds; after the drop the client cannot reach
	// coderd any more (its socket stays down).
	sockets := make(chan *websocket.Conn, 1)
	var dials sync.Mutex
	dialed := false
	ctrl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn: conn,
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			dials.Lock()
			defer dials.Unlock()
			if dialed {
				return nil, fmt.Errorf("network down")
			}
			dialed = true
			ws, err := victim.DialClientCoordinator(ctx, agentID, clientID, conn.NodeKey())
			if err == nil {
				sockets <- ws
			}
			return ws, err
		},
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.Close() })
	ctrl.AddTunnel(agentID)
	if !conn.AwaitReachable(ctx, tunnel.IPFromUUID(agentID)) {
		t.Fatal("agent not reachable over the tunnel")
	}
	eventually(t, revocationWait, "agent has the client's peer", func() bool {
		c := ag.TunnelConn()
		return c != nil && slices.Contains(c.PeerIDs(), identity.PeerID)
	})
	// The socket drops without a goodbye: the agent keeps the (lost) peer.
	(<-sockets).CloseNow()
	eventually(t, revocationWait, "agent sees the client lost", func() bool {
		for _, p := range ag.TunnelConn().Status().Peers {
			if p.ID == identity.PeerID {
				return p.Lost
			}
		}
		return false
	})

	if err := owner.DeleteAPIKey(ctx, victimUser.ID.String(), keyID(victim.SessionToken())); err != nil {
		t.Fatal(err)
	}
	awaitPeerGone(t, ag, identity.PeerID)
}
