// Package workspaceapps is the workspace apps proxy (dev URLs): it parses
// path-based (/@owner/workspace[.agent]/apps/slug/...) and subdomain-based
// (slug--agent--workspace--owner.apps.example.com) requests for an app or
// port inside a workspace, has them decided by an Authorizer (cached for a
// few seconds), and reverse-proxies HTTP, websockets and server-sent events
// to the workspace through an AgentDialer (coderd's own mesh connection,
// Mesh). It never touches the database: coderd implements its interfaces
// (Policy applies the share levels over an Identifier and an AppLookup),
// and a regional proxy can implement them with decisions signed by coderd.
package workspaceapps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"
	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/codersdk/agentproto"
	"github.com/wgmesh/coder/codersdk/workspacesdk"
	"github.com/wgmesh/coder/coordinator"
	"github.com/wgmesh/coder/tunnel"
)

// DefaultReachTimeout bounds the wait for an agent to answer over the mesh.
const DefaultReachTimeout = 20 * time.Second

// DefaultSSHConnsPerAgent is the default MeshOptions.SSHConnsPerAgent.
const DefaultSSHConnsPerAgent = 4

// ErrAgentUnreachable is returned when the agent does not answer over the
// mesh in time.
var ErrAgentUnreachable = errors.New("agent unreachable over the mesh")

// DERPMaps is where the mesh reads the deployment's DERP map.
type DERPMaps interface {
	coordinator.DERPMapSource
	// Current returns the latest map (nil when there is none).
	Current() *tailcfg.DERPMap
}

// MeshOptions configures NewMesh.
type MeshOptions struct {
	// Coordinator is coderd's in-process coordinator. Required.
	Coordinator coordinator.Coordinator
	// DERPMaps supplies the DERP map. Required.
	DERPMaps DERPMaps
	// BlockEndpoints makes the connection DERP-only.
	BlockEndpoints bool
	// DERPPlainHTTP and DERPWebsockets: how relays are reached (see
	// tunnel.Options; both are process-wide upstream switches).
	DERPPlainHTTP, DERPWebsockets bool
	// ReachTimeout bounds the wait for an agent (default 20s).
	ReachTimeout time.Duration
	// SSHConnsPerAgent is how many SSH connections to one agent requests
	// are spread over (default DefaultSSHConnsPerAgent). Each carries many
	// forwarded TCP streams; several let concurrent streams avoid queueing
	// behind each other in one connection's flow control.
	SSHConnsPerAgent int
	// HostKey returns the SSH host key (authorized_keys format) agentID
	// reported to coderd. Required: the mesh's SSH connections accept
	// only that key.
	HostKey func(ctx context.Context, agentID uuid.UUID) (string, error)
	// NodeKeys, when set, holds the mesh's node key while it exists, so
	// coderd's DERP relay (which admits only known keys) serves it.
	NodeKeys *coordinator.NodeKeys
	// Logger; nil discards.
	Logger *slog.Logger
}

// Mesh is coderd's single mesh peer: one tunnel.Conn per process (created
// on first use, with the address of its random peer ID), registered with the in-process
// coordinator, plus a small pool of SSH connections and one
// http.Transport per agent it talks to, so connections to an agent are
// reused.
type Mesh struct {
	opts   MeshOptions
	logger *slog.Logger
	id     uuid.UUID

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	tunnelSignal chan struct{}
	nodeSignal   chan struct{}

	mu     sync.Mutex
	closed bool
	conn   *tunnel.Conn
	// releaseKey drops the node key from MeshOptions.NodeKeys.
	releaseKey func()
	node       *tunnel.Node
	tunnels    map[uuid.UUID]struct{}
	// agents holds each agent's SSH connection slots (nil: not connected).
	agents map[uuid.UUID][]*agentClient
	// transports are per agent and outlive SSH reconnections.
	transports map[uuid.UUID]*http.Transport
}

// agentClient is one SSH connection to an agent, shared by many
// forwarded streams.
type agentClient struct {
	once  sync.Once
	ready chan struct{}
	ssh   *gossh.Client
	err   error
	// streams counts the streams picked for this connection and not yet
	// closed (guarded by Mesh.mu); new streams go to the least busy slot.
	streams int
}

// NewMesh returns a Mesh; nothing is created until the first dial. Close it
// when done.
func NewMesh(opts MeshOptions) (*Mesh, error) {
	if opts.Coordinator == nil {
		return nil, errors.New("new mesh: Coordinator is required")
	}
	if opts.DERPMaps == nil {
		return nil, errors.New("new mesh: DERPMaps is required")
	}
	if opts.HostKey == nil {
		return nil, errors.New("new mesh: HostKey is required")
	}
	if opts.ReachTimeout <= 0 {
		opts.ReachTimeout = DefaultReachTimeout
	}
	if opts.SSHConnsPerAgent <= 0 {
		opts.SSHConnsPerAgent = DefaultSSHConnsPerAgent
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Mesh{
		opts:         opts,
		logger:       logger.With("component", "apps-mesh"),
		id:           uuid.New(),
		ctx:          ctx,
		cancel:       cancel,
		tunnelSignal: make(chan struct{}, 1),
		nodeSignal:   make(chan struct{}, 1),
		tunnels:      map[uuid.UUID]struct{}{},
		agents:       map[uuid.UUID][]*agentClient{},
		transports:   map[uuid.UUID]*http.Transport{},
	}, nil
}

// Close says goodbye to the coordinator, closes every agent connection and
// the tunnel, and waits for the mesh's goroutines.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	agents := m.agents
	m.agents = map[uuid.UUID][]*agentClient{}
	transports := m.transports
	conn := m.conn
	releaseKey := m.releaseKey
	m.mu.Unlock()
	if releaseKey != nil {
		defer releaseKey()
	}
	m.cancel()
	for _, slots := range agents {
		for _, a := range slots {
			if a == nil {
				continue
			}
			<-a.ready
			if a.ssh != nil {
				_ = a.ssh.Close()
			}
		}
	}
	for _, t := range transports {
		t.CloseIdleConnections()
	}
	m.wg.Wait()
	if conn != nil {
		return conn.Close()
	}
	return nil
}

// tunnelConn returns the Conn, creating it (and starting coordination) on
// first use, and makes sure a tunnel to agentID is requested.
func (m *Mesh) tunnelConn(agentID uuid.UUID) (*tunnel.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("mesh closed")
	}
	if m.conn == nil {
		dm := m.opts.DERPMaps.Current()
		if dm == nil {
			return nil, errors.New("no DERP map configured: coderd cannot join the mesh")
		}
		conn, err := tunnel.NewConn(tunnel.Options{
			// The address assigned to the mesh's peer ID: agents ignore
			// nodes announcing any other.
			Addresses:      []netip.Prefix{tunnel.PrefixFromUUID(m.id)},
			DERPMap:        dm,
			BlockEndpoints: m.opts.BlockEndpoints,
			DERPPlainHTTP:  m.opts.DERPPlainHTTP,
			DERPWebsockets: m.opts.DERPWebsockets,
			Logger:         m.logger.With("component", "apps-tunnel"),
		})
		if err != nil {
			return nil, fmt.Errorf("create coderd tunnel: %w", err)
		}
		if m.opts.NodeKeys != nil {
			release, err := m.opts.NodeKeys.Register(m.id, conn.NodeKey())
			if err != nil {
				_ = conn.Close()
				return nil, fmt.Errorf("register coderd tunnel key: %w", err)
			}
			m.releaseKey = release
		}
		m.conn = conn
		conn.SetNodeCallback(func(n *tunnel.Node) {
			m.mu.Lock()
			m.node = n
			m.mu.Unlock()
			signal(m.nodeSignal)
		})
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.coordinate(conn)
		}()
	}
	if _, ok := m.tunnels[agentID]; !ok {
		m.tunnels[agentID] = struct{}{}
		signal(m.tunnelSignal)
	}
	return m.conn, nil
}

// coordinate keeps a registration with the coordinator until the mesh
// closes, re-registering when the coordinator drops it.
func (m *Mesh) coordinate(conn *tunnel.Conn) {
	derpMaps := m.opts.DERPMaps.Subscribe(m.ctx)
	for m.ctx.Err() == nil {
		m.session(conn, derpMaps)
		if m.ctx.Err() != nil {
			return
		}
		conn.SetCoordinatorConnected(false)
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// allowAll authorizes every tunnel: coderd authorizes each request itself
// before dialing an agent.
var allowAll = coordinator.TunnelAuthFunc(func(context.Context, uuid.UUID, uuid.UUID) error { return nil })

// session runs one registration.
func (m *Mesh) session(conn *tunnel.Conn, derpMaps <-chan *tailcfg.DERPMap) {
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	reqs, resps := m.opts.Coordinator.Coordinate(ctx, m.id, "coderd apps proxy", allowAll)
	defer close(reqs)
	conn.SetCoordinatorConnected(true)

	gone := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		defer close(gone)
		for resp := range resps {
			if resp.Error != "" {
				m.logger.Warn("coordinator refused a request", "message", resp.Error)
			}
			if ups := convertUpdates(m.logger, resp.Updates); len(ups) > 0 {
				if err := conn.UpdatePeers(ups); err != nil {
					m.logger.Warn("apply peer updates", "error", err)
				}
			}
		}
	}()
	defer rwg.Wait()

	send := func(r *coordinator.Request) bool {
		select {
		case reqs <- r:
			return true
		case <-gone:
		case <-ctx.Done():
		}
		return false
	}
	sent := map[uuid.UUID]struct{}{}
	var sentNode *tunnel.Node
	syncState := func() bool {
		m.mu.Lock()
		n := m.node
		var want []uuid.UUID
		for d := range m.tunnels {
			if _, ok := sent[d]; !ok {
				want = append(want, d)
			}
		}
		m.mu.Unlock()
		if n != nil && n != sentNode {
			raw, err := json.Marshal(n)
			if err != nil {
				m.logger.Error("encode node", "error", err)
				return false
			}
			if !send(&coordinator.Request{Type: coordinator.TypeUpdateSelf, Node: raw}) {
				return false
			}
			sentNode = n
		}
		for _, d := range want {
			if !send(&coordinator.Request{Type: coordinator.TypeAddTunnel, Dst: d}) {
				return false
			}
			sent[d] = struct{}{}
		}
		return true
	}
	if !syncState() {
		return
	}
	for {
		select {
		case <-m.ctx.Done():
			select {
			case reqs <- &coordinator.Request{Type: coordinator.TypeDisconnect}:
			case <-gone:
			case <-time.After(time.Second):
			}
			return
		case <-gone:
			m.logger.Warn("coordinator dropped the apps proxy registration; re-registering")
			return
		case dm, ok := <-derpMaps:
			if ok && dm != nil {
				if err := conn.SetDERPMap(dm); err != nil {
					m.logger.Warn("apply DERP map", "error", err)
				}
			}
			continue
		case <-m.nodeSignal:
		case <-m.tunnelSignal:
		}
		if !syncState() {
			return
		}
	}
}

func convertUpdates(logger *slog.Logger, in []coordinator.PeerUpdate) []*tunnel.PeerUpdate {
	out := make([]*tunnel.PeerUpdate, 0, len(in))
	for _, u := range in {
		pu := &tunnel.PeerUpdate{PeerID: u.ID}
		switch u.Kind {
		case coordinator.KindNode:
			var n tunnel.Node
			if err := json.Unmarshal(u.Node, &n); err != nil {
				logger.Warn("ignoring undecodable peer node", "peer", u.ID, "error", err)
				continue
			}
			pu.Kind, pu.Node = tunnel.PeerNode, &n
		case coordinator.KindDisconnected:
			pu.Kind = tunnel.PeerDisconnected
		case coordinator.KindLost:
			pu.Kind = tunnel.PeerLost
		default:
			continue
		}
		out = append(out, pu)
	}
	return out
}

// DialTailnet opens a TCP connection to one of the agent's own tailnet
// services (for example agentproto.ReconnectingPTYPort).
func (m *Mesh) DialTailnet(ctx context.Context, agentID uuid.UUID, port uint16) (net.Conn, error) {
	conn, err := m.tunnelConn(agentID)
	if err != nil {
		return nil, err
	}
	ip := tunnel.IPFromUUID(agentID)
	rctx, cancel := context.WithTimeout(ctx, m.opts.ReachTimeout)
	defer cancel()
	if !conn.AwaitReachable(rctx, ip) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ErrAgentUnreachable
	}
	c, err := conn.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, port).String())
	if err != nil {
		return nil, fmt.Errorf("dial agent port %d over the mesh: %w", port, err)
	}
	return c, nil
}

// client picks the least busy of the agent's SSH connections for one new
// stream, connecting a slot on first use; a connection that died is
// replaced by a later pick. The caller must call m.release(agentID, a)
// when the stream ends (or could not be opened).
func (m *Mesh) client(ctx context.Context, agentID uuid.UUID) (*agentClient, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errors.New("mesh closed")
	}
	slots := m.agents[agentID]
	if slots == nil {
		slots = make([]*agentClient, m.opts.SSHConnsPerAgent)
		m.agents[agentID] = slots
	}
	// An empty slot counts as idle, so a new connection is opened only
	// when every existing one already carries a stream.
	best, bestStreams := -1, 0
	for i, a := range slots {
		n := 0
		if a != nil {
			n = a.streams
		}
		if best < 0 || n < bestStreams {
			best, bestStreams = i, n
		}
	}
	a := slots[best]
	if a == nil {
		a = &agentClient{ready: make(chan struct{})}
		slots[best] = a
	}
	a.streams++
	m.mu.Unlock()
	a.once.Do(func() {
		defer close(a.ready)
		a.ssh, a.err = m.connectSSH(ctx, agentID)
		if a.err != nil {
			m.forget(agentID, a)
			return
		}
		m.mu.Lock()
		closed := m.closed
		if !closed {
			m.wg.Add(1)
		}
		m.mu.Unlock()
		if closed {
			_ = a.ssh.Close()
			a.ssh, a.err = nil, errors.New("mesh closed")
			return
		}
		go func() {
			defer m.wg.Done()
			_ = a.ssh.Wait()
			m.forget(agentID, a)
		}()
	})
	<-a.ready
	if a.err != nil {
		m.release(a)
		return nil, a.err
	}
	return a, nil
}

// release ends one stream of a connection picked by client.
func (m *Mesh) release(a *agentClient) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a.streams--
}

// forget empties the slot holding a (its connection failed or died).
func (m *Mesh) forget(agentID uuid.UUID, a *agentClient) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, s := range m.agents[agentID] {
		if s == a {
			m.agents[agentID][i] = nil
		}
	}
}

func (m *Mesh) connectSSH(ctx context.Context, agentID uuid.UUID) (*gossh.Client, error) {
	// Only the SSH server holding the host key the agent reported at
	// startup is the agent.
	reported, err := m.opts.HostKey(ctx, agentID)
	if err != nil {
		return nil, fmt.Errorf("agent SSH host key: %w", err)
	}
	hostKeyCallback, err := workspacesdk.PinnedHostKey(reported)
	if err != nil {
		return nil, err
	}
	nc, err := m.DialTailnet(ctx, agentID, agentproto.SSHPort)
	if err != nil {
		return nil, err
	}
	cfg := &gossh.ClientConfig{User: "coder", HostKeyCallback: hostKeyCallback, Timeout: m.opts.ReachTimeout}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	c, chans, reqs, err := gossh.NewClientConn(nc, "agent", cfg)
	stop()
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("ssh handshake with agent: %w", err)
	}
	return gossh.NewClient(c, chans, reqs), nil
}

// DialWorkspace opens a TCP connection from inside the workspace to addr
// (host:port as seen by the agent, e.g. 127.0.0.1:8080), through the
// agent's SSH server (direct-tcpip) over one of the agent's pooled SSH
// connections.
func (m *Mesh) DialWorkspace(ctx context.Context, agentID uuid.UUID, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial workspace %q: %w", addr, err)
	}
	if _, err := strconv.ParseUint(portStr, 10, 16); err != nil {
		return nil, fmt.Errorf("dial workspace %q: bad port", addr)
	}
	for attempt := 0; ; attempt++ {
		a, err := m.client(ctx, agentID)
		if err != nil {
			return nil, err
		}
		nc, err := a.ssh.DialContext(ctx, "tcp", net.JoinHostPort(host, portStr))
		if err == nil {
			return &streamConn{Conn: nc, release: func() { m.release(a) }}, nil
		}
		m.release(a)
		var openErr *gossh.OpenChannelError
		if errors.As(err, &openErr) {
			return nil, &PortError{Addr: addr, Err: err}
		}
		if attempt > 0 || ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s in workspace: %w", addr, err)
		}
		// The SSH connection broke (agent restarted): reconnect once.
		_ = a.ssh.Close()
		m.forget(agentID, a)
	}
}

// streamConn is a forwarded stream; closing it releases its slot.
type streamConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the stream and releases its SSH connection slot.
func (c *streamConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// PortError means the agent answered but nothing accepted the connection
// at Addr inside the workspace.
type PortError struct {
	Addr string
	Err  error
}

func (e *PortError) Error() string {
	return fmt.Sprintf("nothing listening at %s in the workspace: %v", e.Addr, e.Err)
}
func (e *PortError) Unwrap() error { return e.Err }

// Transport returns the agent's shared HTTP transport: requests to
// http://HOST:PORT are carried to HOST:PORT as seen from inside the
// workspace, with keep-alive connections reused between requests.
func (m *Mesh) Transport(agentID uuid.UUID) http.RoundTripper {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.transports[agentID]; t != nil {
		return t
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.DialWorkspace(ctx, agentID, addr)
		},
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	m.transports[agentID] = t
	return t
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

var _ io.Closer = (*Mesh)(nil)
