package coderd_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/coordinator/pgcoord"
	"github.com/wgmesh/coder/database"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/database/pubsub"
	"github.com/wgmesh/coder/tunnel"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// TestRevocationReachesOfflineAgent: the agent's own coordinator connection
// is down at the moment a client is revoked, so the coordinator cannot tell
// it to drop the client. The client is an attacker's build that ignores the
// coordinator's removals and keeps its WireGuard peer and SSH session. When
// the agent's coordinator connection comes back, the coordinator's snapshot
// no longer lists the client: the agent drops the peer, the attacker's live
// session ends and a new connection to the agent fails. Both coordinators
// (in-memory and PostgreSQL) must do it.
func TestRevocationReachesOfflineAgent(t *testing.T) {
	t.Parallel()
	for _, impl := range []string{"inmemory", "postgres"} {
		t.Run(impl, func(t *testing.T) {
			t.Parallel()
			e := &agentEnv{t: t, dbURL: dbtestutil.NewDB(t), derpMap: tunneltest.RunDERP(t)}
			e.pool = dbtestutil.NewPoolFor(t, e.dbURL)
			e.store = database.NewStore(e.pool)
			ps, err := pubsub.New(context.Background(), nil, e.pool, pubsub.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ps.Close() })
			e.ps = ps
			var inner coordinator.Coordinator
			if impl == "postgres" {
				pc, err := pgcoord.New(context.Background(), e.pool, ps, pgcoord.Options{})
				if err != nil {
					t.Fatal(err)
				}
				inner = pc
			} else {
				inner = coordinator.NewInMemory(nil)
			}
			coord := newWatchedCoordinator(inner)
			t.Cleanup(func() { _ = coord.Close() }) // after coderd's close
			e.tweak = func(o *coderd.AgentOptions) { o.Coordinator = coord }
			e.start()
			t.Cleanup(e.stop)

			owner := e.client()
			coderdtest.CreateFirstUser(t, owner)
			victim, victimUser := coderdtest.CreateAnotherUser(t, owner)
			agentID, token := insertAgent(t, e.store, victimUser.ID)
			// The agent reaches coderd through a link the test can cut;
			// its DERP relay is elsewhere, so only the API and the
			// coordinator connection go down.
			link := newCuttableLink(t, e.addr)
			agentURL, _ := url.Parse("http://" + link.addr())
			ag := runAgent(t, agentURL, token)
			waitAgent(t, owner, agentID, "agent connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })

			s := startAttackerSSH(t, e, victim, agentID)
			eventually(t, revocationWait, "agent has the client's peer", func() bool {
				c := ag.TunnelConn()
				return c != nil && slices.Contains(c.PeerIDs(), s.peerID)
			})

			// The agent's coordinator connection drops and stays down.
			agentRegs := coord.registrations(agentID)
			link.cut()
			awaitEvent(t, agentRegs.ended, "the agent's coordinator registration ends")

			// The victim's key is deleted while the agent cannot hear it.
			goodbyes := coord.goodbyes(s.peerID)
			ctx, cancel := context.WithTimeout(context.Background(), setupWait)
			defer cancel()
			if err := owner.DeleteAPIKey(ctx, victimUser.ID.String(), keyID(victim.SessionToken())); err != nil {
				t.Fatal(err)
			}
			awaitEvent(t, goodbyes, "the coordinator removes the revoked client")
			// The agent still holds the revoked peer and the attacker's
			// session runs on, peer to peer.
			if c := ag.TunnelConn(); c == nil || !slices.Contains(c.PeerIDs(), s.peerID) {
				t.Fatal("the agent dropped the peer while it was offline (test setup broken)")
			}
			s.next(t)

			// The agent's connection comes back.
			link.restore()
			awaitEvent(t, agentRegs.started, "the agent registers again")
			awaitPeerGone(t, ag, s.peerID)
			// The agent ended the session (its TCP connection went with the
			// peer): the command it ran is gone. The attacker, who never
			// drops the peer, hears nothing more.
			awaitNoProcess(t, s.marker)
			dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer dcancel()
			if c, err := s.conn.DialContext(dctx, "tcp", netip.AddrPortFrom(tunnel.IPFromUUID(agentID), 22).String()); err == nil {
				_ = c.Close()
				t.Fatal("the revoked client can still open a connection to the agent")
			}
		})
	}
}

// attackerSSH is a live SSH session of a client whose tunnel never drops a
// peer the coordinator removes (a modified client).
type attackerSSH struct {
	*liveSSH
	conn   *tunnel.Conn
	marker string // in the command line of the session's command
}

// keepPeers is a TunnelConn that ignores every removal: peers stay.
type keepPeers struct{ *tunnel.Conn }

func (k keepPeers) UpdatePeers(updates []*tunnel.PeerUpdate) error {
	kept := make([]*tunnel.PeerUpdate, 0, len(updates))
	for _, u := range updates {
		if u.Kind == tunnel.PeerNode {
			kept = append(kept, u)
		}
	}
	return k.Conn.UpdatePeers(kept)
}

func startAttackerSSH(t *testing.T, e *agentEnv, client *codersdk.Client, agentID uuid.UUID) *attackerSSH {
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
		Conn: keepPeers{conn},
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
	marker := "attacker-" + uuid.NewString()
	if err := sess.Start(": " + marker + "; while :; do echo tick; sleep 0.2; done"); err != nil {
		t.Fatal(err)
	}
	s := &liveSSH{peerID: identity.PeerID, lines: make(chan string, 1024)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case s.lines <- sc.Text():
			default:
			}
		}
	}()
	s.next(t)
	if !processRunning(marker) {
		t.Fatal("the session's command is not visible in the process table")
	}
	return &attackerSSH{liveSSH: s, conn: conn, marker: marker}
}

// processRunning reports whether a process has marker in its command line.
func processRunning(marker string) bool {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			return true
		}
	}
	return false
}

func awaitNoProcess(t *testing.T, marker string) {
	t.Helper()
	eventually(t, revocationWait, "the revoked session's command ends", func() bool { return !processRunning(marker) })
}

func awaitEvent(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(revocationWait):
		t.Fatalf("timed out waiting until %s", what)
	}
}

// watchedCoordinator wraps a Coordinator and reports, per peer ID, when a
// registration starts and ends and when a goodbye was processed (the
// coordinator closed the responses after a TypeDisconnect).
type watchedCoordinator struct {
	coordinator.Coordinator
	mu       sync.Mutex
	regs     map[uuid.UUID]*regEvents
	goodbyeW map[uuid.UUID]chan struct{}
	wg       sync.WaitGroup
}

type regEvents struct{ started, ended chan struct{} }

func newWatchedCoordinator(inner coordinator.Coordinator) *watchedCoordinator {
	return &watchedCoordinator{Coordinator: inner, regs: map[uuid.UUID]*regEvents{}, goodbyeW: map[uuid.UUID]chan struct{}{}}
}

// registrations returns the channels on which every start and end of a
// registration of id is signalled.
func (w *watchedCoordinator) registrations(id uuid.UUID) *regEvents {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := &regEvents{started: make(chan struct{}, 16), ended: make(chan struct{}, 16)}
	w.regs[id] = r
	return r
}

// goodbyes returns a channel closed once a goodbye of id was processed.
func (w *watchedCoordinator) goodbyes(id uuid.UUID) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	w.goodbyeW[id] = ch
	return ch
}

// Close closes the wrapped coordinator and waits for the forwarders.
func (w *watchedCoordinator) Close() error {
	err := w.Coordinator.Close()
	w.wg.Wait()
	return err
}

func (w *watchedCoordinator) Coordinate(ctx context.Context, id uuid.UUID, name string, auth coordinator.TunnelAuth) (chan<- *coordinator.Request, <-chan *coordinator.Response) {
	innerReqs, innerResps := w.Coordinator.Coordinate(ctx, id, name, auth)
	reqs := make(chan *coordinator.Request, 16)
	resps := make(chan *coordinator.Response, cap(innerResps))
	w.mu.Lock()
	r := w.regs[id]
	w.mu.Unlock()
	if r != nil {
		r.started <- struct{}{}
	}
	var mu sync.Mutex
	sawGoodbye := false
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		defer close(innerReqs)
		for {
			select {
			case req, ok := <-reqs:
				if !ok {
					return
				}
				if req != nil && req.Type == coordinator.TypeDisconnect {
					mu.Lock()
					sawGoodbye = true
					mu.Unlock()
				}
				select {
				case innerReqs <- req:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer w.wg.Done()
		defer close(resps)
		for resp := range innerResps {
			resps <- resp
		}
		w.mu.Lock()
		r := w.regs[id]
		w.mu.Unlock()
		if r != nil {
			r.ended <- struct{}{}
		}
		mu.Lock()
		bye := sawGoodbye
		mu.Unlock()
		if bye {
			w.mu.Lock()
			if ch := w.goodbyeW[id]; ch != nil {
				close(ch)
				delete(w.goodbyeW, id)
			}
			w.mu.Unlock()
		}
	}()
	return reqs, resps
}

// cuttableLink is a TCP forwarder to addr that the test can cut (every
// connection closed, new ones refused at once) and restore.
type cuttableLink struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newCuttableLink(t *testing.T, target string) *cuttableLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &cuttableLink{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		l.cut()
		l.wg.Wait()
	})
	return l
}

func (l *cuttableLink) addr() string { return l.ln.Addr().String() }

func (l *cuttableLink) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.down {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.mu.Unlock()
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l.mu.Lock()
		if l.down {
			l.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		l.conns[c], l.conns[up] = struct{}{}, struct{}{}
		l.mu.Unlock()
		l.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer l.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			l.mu.Lock()
			delete(l.conns, dst)
			delete(l.conns, src)
			l.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// cut closes every forwarded connection and refuses new ones.
func (l *cuttableLink) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for c := range l.conns {
		_ = c.Close()
	}
}

// restore accepts connections again.
func (l *cuttableLink) restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = false
}
