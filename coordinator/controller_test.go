package coordinator_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/tunnel"
)

// runDERP starts the embedded relay over TLS plus STUN on loopback, and
// returns the DERP map coderd would build for it.
func runDERP(t *testing.T) *tailcfg.DERPMap {
	t.Helper()
	srv := derp.NewServer(nil, key.NodePrivate{})
	hs := httptest.NewUnstartedServer(srv)
	hs.StartTLS()
	ctx, cancel := context.WithCancel(context.Background())
	stunAddr, stunCloser, err := derp.ListenSTUN(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = stunCloser.Close()
		hs.CloseClientConnections()
		_ = srv.Close()
		hs.Close()
	})
	u, err := url.Parse(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	m, err := derp.BuildMap(context.Background(), derp.MapOptions{
		EnableEmbedded: true,
		AccessURL:      u,
		CertName:       fmt.Sprintf("sha256-raw:%x", sha256.Sum256(hs.Certificate().Raw)),
		STUNAddresses:  []string{stunAddr.String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// restartableCoordinator is a coordinator served over httptest that the
// test can replace by a fresh one (a coderd restart: new process, new state).
type restartableCoordinator struct {
	t    *testing.T
	maps *coordinator.DERPMapPublisher
	auth func(id uuid.UUID) coordinator.TunnelAuth

	mu    sync.Mutex
	coord *coordinator.InMemory
	hs    *httptest.Server
	url   atomic.Pointer[string]
}

func (r *restartableCoordinator) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	coord := coordinator.NewInMemory(nil)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id, err := uuid.Parse(req.URL.Query().Get("id"))
		if err != nil {
			http.Error(w, "bad id", http.StatusBadRequest)
			return
		}
		ws, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		_ = coordinator.ServeWebsocket(req.Context(), ws, coordinator.ServeOptions{
			Coordinator: coord, ID: id, Auth: r.auth(id), DERPMaps: r.maps,
		})
	}))
	r.coord, r.hs = coord, hs
	u := "ws" + strings.TrimPrefix(hs.URL, "http")
	r.url.Store(&u)
}

func (r *restartableCoordinator) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hs == nil {
		return
	}
	r.hs.CloseClientConnections()
	r.hs.Close()
	_ = r.coord.Close()
	r.hs, r.coord = nil, nil
}

func (r *restartableCoordinator) dialer(id uuid.UUID) coordinator.Dialer {
	return func(ctx context.Context) (*websocket.Conn, error) {
		ws, _, err := websocket.Dial(ctx, *r.url.Load()+"/?id="+id.String(), nil)
		return ws, err
	}
}

func newConn(t *testing.T, m *tailcfg.DERPMap, addr netip.Prefix) *tunnel.Conn {
	t.Helper()
	c, err := tunnel.NewConn(tunnel.Options{Addresses: []netip.Prefix{addr}, DERPMap: m})
	if err != nil {
		t.Fatalf("new tunnel conn: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newController(t *testing.T, conn *tunnel.Conn, dial coordinator.Dialer) *coordinator.Controller {
	t.Helper()
	ctl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn: conn, Dial: dial, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctl.Close() })
	return ctl
}

// echoServer accepts on l and echoes every connection. Cleanup closes the
// accepted connections too: the client's FIN may never arrive once the
// tunnel peers are gone.
func echoServer(t *testing.T, l net.Listener) {
	t.Helper()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			if closed {
				_ = c.Close()
			}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

// dialAgent waits until the agent is reachable through the tunnel and
// opens a TCP connection to its echo port.
func dialAgent(t *testing.T, client *tunnel.Conn, agent uuid.UUID) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ip := tunnel.IPFromUUID(agent)
	if !client.AwaitReachable(ctx, ip) {
		t.Fatalf("agent %s never reachable", ip)
	}
	c, err := client.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, 7).String())
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func awaitConnections(t *testing.T, ctl *coordinator.Controller, n uint64) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		connected, changed := ctl.Connected()
		if connected && ctl.Connections() >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("controller never reached %d connections (has %d)", n, ctl.Connections())
		}
	}
}

func TestControllerTunnelsAndCoordinatorRestart(t *testing.T) {
	derpMap := runDERP(t)
	client, agent, agent2 := uuid.New(), uuid.New(), uuid.New()
	rc := &restartableCoordinator{t: t, maps: coordinator.NewDERPMapPublisher(derpMap)}
	rc.auth = func(id uuid.UUID) coordinator.TunnelAuth {
		if id == client {
			return coordinator.AllowTunnelsTo(agent, agent2)
		}
		return nil // agents may not add tunnels
	}
	rc.start()
	t.Cleanup(rc.stop)

	clientConn := newConn(t, derpMap, tunnel.PrefixFromUUID(client))
	agentConn := newConn(t, derpMap, tunnel.AgentPrefix(agent))
	l, err := agentConn.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, l)

	clientCtl := newController(t, clientConn, rc.dialer(client))
	agentCtl := newController(t, agentConn, rc.dialer(agent))
	clientCtl.AddTunnel(agent)

	stream := dialAgent(t, clientConn, agent)
	echoOnce(t, stream, "hello agent")
	// And a second, fresh connection.
	echoOnce(t, dialAgent(t, clientConn, agent), "again")

	// coderd restarts: every websocket drops, the new coordinator knows
	// nothing. The open stream keeps working meanwhile (peer-to-peer).
	rc.stop()
	echoOnce(t, stream, "during restart")
	rc.start()
	awaitConnections(t, clientCtl, 2)
	awaitConnections(t, agentCtl, 2)

	// The client re-sent its node and tunnels: a brand-new agent that only
	// ever talked to the new coordinator is reachable.
	agent2Conn := newConn(t, derpMap, tunnel.AgentPrefix(agent2))
	l2, err := agent2Conn.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, l2)
	newController(t, agent2Conn, rc.dialer(agent2))
	clientCtl.AddTunnel(agent2)
	echoOnce(t, dialAgent(t, clientConn, agent2), "hello second agent")

	// The old agent is still reachable on the old stream and on a new one.
	echoOnce(t, stream, "after restart")
	echoOnce(t, dialAgent(t, clientConn, agent), "new stream after restart")
}

// TestControllerPublishesNodeAndSaysGoodbye watches a Controller from the
// other end of the protocol: its real node arrives, and Close is a clean
// goodbye (disconnected, not lost).
func TestControllerPublishesNodeAndSaysGoodbye(t *testing.T) {
	derpMap := runDERP(t)
	s := newServer(t, coordinator.InMemoryOptions{})
	s.maps.Set(derpMap)
	client, agent := uuid.New(), uuid.New()
	s.setAuth(client, coordinator.AllowTunnelsTo(agent))

	pg := s.dial(t, agent) // the agent side, speaking raw protocol
	conn := newConn(t, derpMap, tunnel.PrefixFromUUID(client))
	ctl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn: conn, Dial: func(ctx context.Context) (*websocket.Conn, error) {
			ws, _, err := websocket.Dial(ctx, s.url(client), nil)
			return ws, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctl.AddTunnel(agent)

	env := pg.next()
	if env.Type != coordinator.TypePeerUpdate || len(env.Updates) != 1 || env.Updates[0].ID != client || env.Updates[0].Kind != coordinator.KindNode {
		t.Fatalf("got %s, want the client's node", describe(env))
	}
	var n tunnel.Node
	if err := json.Unmarshal(env.Updates[0].Node, &n); err != nil {
		t.Fatalf("decode node: %v", err)
	}
	if n.Key != conn.NodeKey() || n.PreferredDERP != derp.DefaultRegionID {
		t.Fatalf("node %+v: key %v / home DERP %d, want %v / %d", n, n.Key, n.PreferredDERP, conn.NodeKey(), derp.DefaultRegionID)
	}

	if err := ctl.Close(); err != nil {
		t.Fatal(err)
	}
	// Later node changes of the client may still be queued before the goodbye.
	for {
		env := pg.next()
		if env.Type != coordinator.TypePeerUpdate || len(env.Updates) != 1 || env.Updates[0].ID != client {
			t.Fatalf("got %s, want updates about the client", describe(env))
		}
		if k := env.Updates[0].Kind; k != coordinator.KindNode {
			if k != coordinator.KindDisconnected {
				t.Fatalf("client ended as %q, want disconnected", k)
			}
			return
		}
	}
}

// TestControllerDropsPeersARestartedCoordinatorForgot: coderd restarts (a
// new in-memory coordinator: another epoch, no tunnels). A client that comes
// back is listed again and its stream survives; one that never does (revoked
// or gone while coderd was down) is dropped by the agent after
// UnconfirmedPeerTimeout instead of being kept forever.
func TestControllerDropsPeersARestartedCoordinatorForgot(t *testing.T) {
	derpMap := runDERP(t)
	stays, leaves, agent := uuid.New(), uuid.New(), uuid.New()
	rc := &restartableCoordinator{t: t, maps: coordinator.NewDERPMapPublisher(derpMap)}
	rc.auth = func(id uuid.UUID) coordinator.TunnelAuth {
		if id == agent {
			return nil
		}
		return coordinator.AllowTunnelsTo(agent)
	}
	rc.start()
	t.Cleanup(rc.stop)

	agentConn := newConn(t, derpMap, tunnel.AgentPrefix(agent))
	l, err := agentConn.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, l)
	agentCtl, err := coordinator.NewController(coordinator.ControllerOptions{
		Conn: agentConn, Dial: rc.dialer(agent), BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		UnconfirmedPeerTimeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agentCtl.Close() })

	staysConn := newConn(t, derpMap, tunnel.PrefixFromUUID(stays))
	staysCtl := newController(t, staysConn, rc.dialer(stays))
	staysCtl.AddTunnel(agent)
	leavesConn := newConn(t, derpMap, tunnel.PrefixFromUUID(leaves))
	leavesCtl := newController(t, leavesConn, rc.dialer(leaves))
	leavesCtl.AddTunnel(agent)
	stream := dialAgent(t, staysConn, agent)
	echoOnce(t, stream, "before")
	echoOnce(t, dialAgent(t, leavesConn, agent), "before")

	// coderd goes down; one client goes away for good meanwhile.
	rc.stop()
	_ = leavesCtl.Close()
	rc.start()
	awaitConnections(t, agentCtl, 2)
	awaitConnections(t, staysCtl, 2)

	deadline := time.Now().Add(waitFor)
	for slices.Contains(agentConn.PeerIDs(), leaves) {
		if time.Now().After(deadline) {
			t.Fatal("the agent kept the peer the new coordinator never listed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !slices.Contains(agentConn.PeerIDs(), stays) {
		t.Fatal("the agent dropped the client that came back")
	}
	echoOnce(t, stream, "after")
}
