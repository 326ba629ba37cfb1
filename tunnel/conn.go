// Package tunnel implements tunnel.Conn: a userspace WireGuard peer built on
// upstream tailscale.com (wgengine + magicsock + gVisor netstack) without a
// LocalBackend or Tailscale control plane. Peers are introduced by a
// coordinator through UpdatePeers; our own node is published through the
// callback given to SetNodeCallback. Traffic flows directly over UDP when NAT
// traversal succeeds and through a DERP relay otherwise.
//
// Only ports opened with Listen/ListenPacket are reachable from peers: every
// other inbound TCP flow is reset and every other UDP flow dropped. Nothing is
// ever forwarded to the host's network stack.
package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"go4.org/netipx"
	"tailscale.com/control/controlknobs"
	"tailscale.com/health"
	"tailscale.com/net/dns"
	"tailscale.com/net/netmon"
	"tailscale.com/net/netns"
	"tailscale.com/net/tsdial"
	"tailscale.com/net/tstun"
	"tailscale.com/proxymap"
	"tailscale.com/tailcfg"
	"tailscale.com/types/ipproto"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/netmap"
	"tailscale.com/types/nettype"
	"tailscale.com/types/views"
	"tailscale.com/util/eventbus"
	"tailscale.com/util/usermetric"
	"tailscale.com/wgengine"
	"tailscale.com/wgengine/filter"
	"tailscale.com/wgengine/magicsock"
	"tailscale.com/wgengine/netstack"
	"tailscale.com/wgengine/router"
	"tailscale.com/wgengine/wgcfg"
)

// DefaultLostPeerTimeout is how long a lost peer (PeerLost) is kept before it
// is removed, when Options.LostPeerTimeout is zero.
const DefaultLostPeerTimeout = 15 * time.Minute

// ErrClosed is returned by operations on a closed Conn.
var ErrClosed = errors.New("tunnel: connection closed")

// Options configures NewConn.
type Options struct {
	// ID is our tailscale node ID. Zero means derive it from the node key.
	ID tailcfg.NodeID
	// NodePrivateKey is our WireGuard private key, persisted by the caller.
	// Zero means generate a new one.
	NodePrivateKey key.NodePrivate
	// Addresses are our tailnet addresses, e.g. AgentPrefix(agentID) or
	// RandomPrefix(). At least one is required.
	Addresses []netip.Prefix
	// DERPMap is required and validated; there is never a fallback map.
	DERPMap *tailcfg.DERPMap
	// Logger receives tailscale's logs; nil discards them.
	Logger *slog.Logger
	// ListenPort is the UDP port for magicsock; 0 picks a random port.
	ListenPort uint16
	// BlockEndpoints makes the connection DERP-only: our endpoints are never
	// published and peers' endpoints are ignored.
	BlockEndpoints bool
	// DERPPlainHTTP makes DERP clients speak plain HTTP instead of TLS, for a
	// relay served on an http:// URL (a laptop deployment). Upstream has only
	// a process-wide switch for it (TS_DEBUG_USE_DERP_HTTP), so setting it
	// affects every Conn in the process and is never switched back off.
	DERPPlainHTTP bool
	// DERPWebsockets makes DERP clients connect over websockets, for clients
	// behind proxies that break HTTP upgrades. Process-wide like
	// DERPPlainHTTP (TS_DEBUG_DERP_WS_CLIENT), and only available in binaries
	// built with the ts_debug_websockets tag (`make build` sets it); NewConn
	// fails when it is requested but not compiled in.
	DERPWebsockets bool
	// LostPeerTimeout is how long a lost peer is kept; 0 means
	// DefaultLostPeerTimeout.
	LostPeerTimeout time.Duration
}

// Conn is a userspace WireGuard peer on the tailnet.
type Conn struct {
	logger      *slog.Logger
	logf        logger.Logf
	id          tailcfg.NodeID
	privateKey  key.NodePrivate
	addresses   []netip.Prefix
	lostTimeout time.Duration

	bus       *eventbus.Bus
	netMon    *netmon.Monitor
	dialer    *tsdial.Dialer
	health    *health.Tracker
	engine    wgengine.Engine
	magicConn *magicsock.Conn
	tun       *tstun.Wrapper
	netStack  *netstack.Impl
	selfView  tailcfg.NodeView

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines owned by the Conn

	// nodeDirty is signalled whenever our node may have changed.
	nodeDirty chan struct{}

	tables peerTablesPtr // lock-free peer lookups, rebuilt on every change

	mu             sync.Mutex
	closed         bool
	nodeCallback   func(*Node)
	preferredDERP  int
	derpLatency    map[string]float64
	endpoints      []string
	derpConns      int
	blockEndpoints bool
	derpMap        *tailcfg.DERPMap
	tcpListeners   map[uint16][]*listener
	packetConns    map[net.PacketConn]struct{}

	// tcpConns are the live TCP connections by remote address; a removed
	// peer's are closed (peerconns.go).
	tcpConns peerConns

	// peerMu serialises peer changes (magicsock requires UpsertPeer/RemovePeer
	// calls to be serialised) and guards peers.
	peerMu sync.Mutex
	peers  map[uuid.UUID]*peer
}

type peer struct {
	id        uuid.UUID
	node      *Node
	tnode     tailcfg.NodeView
	lost      bool
	lostTimer *time.Timer
}

// NewConn creates a Conn, connects it to the home DERP and starts discovering
// endpoints. Close it when done.
func NewConn(opts Options) (_ *Conn, err error) {
	if len(opts.Addresses) == 0 {
		return nil, errors.New("tunnel: at least one address is required")
	}
	for _, p := range opts.Addresses {
		if !p.IsValid() || !p.IsSingleIP() {
			return nil, fmt.Errorf("tunnel: address %v must be a single IP (/32 or /128)", p)
		}
	}
	if err := ValidateDERPMap(opts.DERPMap); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	privateKey := opts.NodePrivateKey
	if privateKey.IsZero() {
		privateKey = key.NewNode()
	}
	id := opts.ID
	if id == 0 {
		id = NodeIDFromKey(privateKey.Public())
	}
	lostTimeout := opts.LostPeerTimeout
	if lostTimeout <= 0 {
		lostTimeout = DefaultLostPeerTimeout
	}

	// Binding sockets to a specific interface needs privileges we may not
	// have, and buys nothing without an OS tun device. Process-wide, idempotent.
	netns.SetEnabled(false)
	if err := configureDERPTransport(opts.DERPPlainHTTP, opts.DERPWebsockets); err != nil {
		return nil, err
	}

	logf := slogLogf(log)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		logger:         log,
		logf:           logf,
		id:             id,
		privateKey:     privateKey,
		addresses:      slices.Clone(opts.Addresses),
		lostTimeout:    lostTimeout,
		ctx:            ctx,
		cancel:         cancel,
		nodeDirty:      make(chan struct{}, 1),
		blockEndpoints: opts.BlockEndpoints,
		derpMap:        opts.DERPMap.Clone(),
		tcpListeners:   map[uint16][]*listener{},
		packetConns:    map[net.PacketConn]struct{}{},
		peers:          map[uuid.UUID]*peer{},
	}
	c.tables.Store(&peerTables{})
	defer func() {
		if err != nil {
			c.teardown()
		}
	}()

	c.bus = eventbus.New()
	c.health = health.NewTracker(c.bus)
	var metrics usermetric.Registry
	c.netMon, err = netmon.New(c.bus, logf)
	if err != nil {
		return nil, fmt.Errorf("tunnel: create network monitor: %w", err)
	}
	c.dialer = &tsdial.Dialer{Logf: logf}
	c.dialer.SetBus(c.bus)

	var dnsManager *dns.Manager
	c.engine, err = wgengine.NewUserspaceEngine(logf, wgengine.Config{
		NetMon:        c.netMon,
		Dialer:        c.dialer,
		HealthTracker: c.health,
		Metrics:       &metrics,
		EventBus:      c.bus,
		ControlKnobs:  new(controlknobs.Knobs),
		ListenPort:    opts.ListenPort,
		SetSubsystem: func(v any) {
			switch v := v.(type) {
			case *tstun.Wrapper:
				c.tun = v
			case *magicsock.Conn:
				c.magicConn = v
			case *dns.Manager:
				dnsManager = v
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("tunnel: create wireguard engine: %w", err)
	}
	if c.tun == nil || c.magicConn == nil || dnsManager == nil {
		return nil, errors.New("tunnel: wireguard engine did not expose its subsystems")
	}

	c.netStack, err = netstack.Create(logf, c.tun, c.engine, c.magicConn, c.dialer, dnsManager, new(proxymap.Mapper))
	if err != nil {
		return nil, fmt.Errorf("tunnel: create netstack: %w", err)
	}
	c.netStack.ProcessLocalIPs = true
	c.netStack.ProcessSubnets = false
	c.netStack.GetTCPHandlerForFlow = c.tcpHandlerForFlow
	c.netStack.GetUDPHandlerForFlow = func(src, dst netip.AddrPort) (func(nettype.ConnPacketConn), bool) {
		// Only ports opened with ListenPacket (gVisor endpoints, matched
		// before this fallback) receive UDP; drop everything else.
		return nil, true
	}
	c.tun.Start()
	if err := c.netStack.Start(nil); err != nil {
		return nil, fmt.Errorf("tunnel: start netstack: %w", err)
	}

	c.engine.SetPeerConfigFunc(c.peerAllowedIPs)
	c.engine.SetPeerByIPPacketFunc(c.peerKeyForIP)
	c.engine.SetPeerForIPFunc(c.peerForIP)
	c.engine.SetStatusCallback(c.onEngineStatus)
	c.magicConn.SetNetInfoCallback(c.onNetInfo)
	// We have no control plane: the coordinator plays that role. Tell the
	// health tracker we are "in map poll" so magicsock may pick a home DERP.
	c.health.GotStreamedMapResponse()

	self := &tailcfg.Node{
		ID:         c.id,
		StableID:   tailcfg.StableNodeID(fmt.Sprint(c.id)),
		Name:       fmt.Sprintf("node-%d", c.id),
		Key:        c.privateKey.Public(),
		DiscoKey:   c.magicConn.DiscoPublicKey(),
		Addresses:  slices.Clone(c.addresses),
		AllowedIPs: slices.Clone(c.addresses),
	}
	c.selfView = self.View()
	c.engine.SetSelfNode(c.selfView)
	c.engine.SetFilter(newFilter(c.addresses, logf))

	// The DERP map must be in place before Reconfig hands the private key to
	// magicsock, which then dials DERP and runs netcheck.
	c.magicConn.SetDERPMap(c.derpMap)
	err = c.engine.Reconfig(
		&wgcfg.Config{PrivateKey: c.privateKey, Addresses: slices.Clone(c.addresses)},
		&router.Config{LocalAddrs: slices.Clone(c.addresses)},
		&dns.Config{},
	)
	if err != nil && !errors.Is(err, wgengine.ErrNoChanges) {
		return nil, fmt.Errorf("tunnel: configure wireguard engine: %w", err)
	}
	c.netStack.UpdateNetstackIPs(&netmap.NetworkMap{SelfNode: c.selfView})
	c.magicConn.SetNetworkMap(c.selfView, nil)
	if id, ok := soleDERPRegion(c.derpMap); ok {
		// With a single relay region there is nothing for netcheck to
		// choose: make it home now so DERP connects (and our node can be
		// published) without waiting for the first netcheck report.
		if got := c.magicConn.ForceSetNearestDERP(id); got == id {
			c.mu.Lock()
			if c.preferredDERP == 0 {
				c.preferredDERP = id
			}
			c.mu.Unlock()
		}
	}

	c.wg.Add(1)
	go c.nodeLoop()
	return c, nil
}

// NodeIDFromKey derives a stable, positive, non-zero node ID from a public key.
func NodeIDFromKey(k key.NodePublic) tailcfg.NodeID {
	raw := k.Raw32()
	id := int64(binary.BigEndian.Uint64(raw[:8]) & (1<<63 - 1))
	if id == 0 {
		id = 1
	}
	return tailcfg.NodeID(id)
}

// ValidateDERPMap checks that m is usable: non-nil, at least one region, every
// region keyed by its ID and holding at least one node with a host name.
func ValidateDERPMap(m *tailcfg.DERPMap) error {
	if m == nil {
		return errors.New("tunnel: DERP map is required")
	}
	if len(m.Regions) == 0 {
		return errors.New("tunnel: DERP map has no regions")
	}
	for id, r := range m.Regions {
		if r == nil {
			return fmt.Errorf("tunnel: DERP region %d is nil", id)
		}
		if id <= 0 || r.RegionID != id {
			return fmt.Errorf("tunnel: DERP region keyed %d has RegionID %d", id, r.RegionID)
		}
		if len(r.Nodes) == 0 {
			return fmt.Errorf("tunnel: DERP region %d has no nodes", id)
		}
		for _, n := range r.Nodes {
			if n == nil || n.HostName == "" {
				return fmt.Errorf("tunnel: DERP region %d has a node without a host name", id)
			}
			if n.RegionID != id {
				return fmt.Errorf("tunnel: DERP node %q has RegionID %d, want %d", n.Name, n.RegionID, id)
			}
		}
	}
	return nil
}

// soleDERPRegion returns the ID of the only region with relay (non STUN-only)
// nodes, if there is exactly one.
func soleDERPRegion(m *tailcfg.DERPMap) (int, bool) {
	found := 0
	for id, r := range m.Regions {
		if r.Avoid || !slices.ContainsFunc(r.Nodes, func(n *tailcfg.DERPNode) bool { return !n.STUNOnly }) {
			continue
		}
		if found != 0 {
			return 0, false
		}
		found = id
	}
	return found, found != 0
}

// newFilter accepts TCP, UDP and ICMP from anyone on the tailnet to our own
// addresses. Which ports are actually open is decided by the flow handlers.
func newFilter(addrs []netip.Prefix, logf logger.Logf) *filter.Filter {
	var local netipx.IPSetBuilder
	var dsts []filter.NetPortRange
	for _, p := range addrs {
		local.AddPrefix(p)
		dsts = append(dsts, filter.NetPortRange{Net: p, Ports: filter.PortRange{First: 0, Last: 65535}})
	}
	localSet, _ := local.IPSet()
	any4 := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	any6 := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	matches := []filter.Match{{
		IPProto: views.SliceOf([]ipproto.Proto{ipproto.TCP, ipproto.UDP, ipproto.ICMPv4, ipproto.ICMPv6}),
		Srcs:    []netip.Prefix{any4, any6},
		Dsts:    dsts,
	}}
	return filter.New(matches, nil, localSet, nil, nil, logf)
}

// Close shuts the Conn down: listeners are closed, pending dials fail, and all
// goroutines it owns have returned when Close returns.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var lns []*listener
	for _, ls := range c.tcpListeners {
		lns = append(lns, ls...)
	}
	pcs := make([]net.PacketConn, 0, len(c.packetConns))
	for pc := range c.packetConns {
		pcs = append(pcs, pc)
	}
	c.mu.Unlock()

	c.cancel()
	for _, l := range lns {
		_ = l.Close()
	}
	for _, pc := range pcs {
		_ = pc.Close()
	}
	c.peerMu.Lock()
	for _, p := range c.peers {
		if p.lostTimer != nil {
			p.lostTimer.Stop()
		}
	}
	c.peerMu.Unlock()
	c.teardown()
	return nil
}

// teardown stops every subsystem that was created, in reverse dependency
// order. It is used by Close and by a failing NewConn.
func (c *Conn) teardown() {
	c.cancel()
	c.wg.Wait()
	if c.netStack != nil {
		_ = c.netStack.Close()
	}
	if c.engine != nil {
		c.engine.Close()
		<-c.engine.Done()
	}
	if c.netMon != nil {
		_ = c.netMon.Close()
	}
	if c.dialer != nil {
		_ = c.dialer.Close()
	}
	if c.bus != nil {
		c.bus.Close()
	}
}

// ID returns our node ID.
func (c *Conn) ID() tailcfg.NodeID { return c.id }

// Addresses returns our tailnet addresses.
func (c *Conn) Addresses() []netip.Prefix { return slices.Clone(c.addresses) }

// NodeKey returns our WireGuard public key.
func (c *Conn) NodeKey() key.NodePublic { return c.privateKey.Public() }

// SetNodeCallback sets the function that receives our node whenever it
// changes. Calls come in order from one goroutine, and only once a DERP
// connection is up and a home DERP region is chosen; the latest node wins if
// several changes happen while a call is running. Setting a callback delivers
// the current node (when ready).
func (c *Conn) SetNodeCallback(fn func(*Node)) {
	c.mu.Lock()
	c.nodeCallback = fn
	c.mu.Unlock()
	c.markNodeDirty()
}

// SetCoordinatorConnected tells the Conn whether the coordinator connection is
// up. While it is down, magicsock keeps its home DERP (peers could not learn
// about a change). A new Conn assumes it is connected.
func (c *Conn) SetCoordinatorConnected(connected bool) {
	if connected {
		c.health.GotStreamedMapResponse()
	} else {
		c.health.SetOutOfPollNetMap()
	}
}

// Node returns our current node.
func (c *Conn) Node() *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeLocked()
}

func (c *Conn) nodeLocked() *Node {
	n := &Node{
		ID:            c.id,
		AsOf:          time.Now(),
		Key:           c.privateKey.Public(),
		DiscoKey:      c.selfView.DiscoKey(),
		PreferredDERP: c.preferredDERP,
		DERPLatency:   map[string]float64{},
		Addresses:     slices.Clone(c.addresses),
		AllowedIPs:    slices.Clone(c.addresses),
		Endpoints:     []string{},
	}
	for k, v := range c.derpLatency {
		n.DERPLatency[k] = v
	}
	if !c.blockEndpoints {
		n.Endpoints = slices.Clone(c.endpoints)
	}
	return n
}

func (c *Conn) markNodeDirty() {
	select {
	case c.nodeDirty <- struct{}{}:
	default:
	}
}

// nodeLoop delivers node updates in order, latest wins.
func (c *Conn) nodeLoop() {
	defer c.wg.Done()
	var last *Node
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.nodeDirty:
		}
		c.mu.Lock()
		cb := c.nodeCallback
		ready := c.preferredDERP != 0 && c.derpConns > 0
		n := c.nodeLocked()
		c.mu.Unlock()
		if cb == nil || !ready {
			continue
		}
		if n.equalIgnoringTime(last) {
			continue
		}
		last = n.Clone()
		cb(n)
	}
}

func (c *Conn) onEngineStatus(s *wgengine.Status, err error) {
	if err != nil || s == nil {
		return
	}
	eps := make([]string, 0, len(s.LocalAddrs))
	for _, ep := range s.LocalAddrs {
		eps = append(eps, ep.Addr.String())
	}
	slices.Sort(eps)
	eps = slices.Compact(eps)
	c.mu.Lock()
	changed := !slices.Equal(eps, c.endpoints) || (c.derpConns > 0) != (s.DERPs > 0)
	c.endpoints = eps
	c.derpConns = s.DERPs
	c.mu.Unlock()
	if changed {
		c.markNodeDirty()
	}
}

func (c *Conn) onNetInfo(ni *tailcfg.NetInfo) {
	if ni == nil {
		return
	}
	c.mu.Lock()
	c.preferredDERP = ni.PreferredDERP
	c.derpLatency = make(map[string]float64, len(ni.DERPLatency))
	for k, v := range ni.DERPLatency {
		c.derpLatency[k] = v
	}
	c.mu.Unlock()
	c.markNodeDirty()
}

// SetDERPMap replaces the DERP map. The map is validated first.
func (c *Conn) SetDERPMap(m *tailcfg.DERPMap) error {
	if err := ValidateDERPMap(m); err != nil {
		return err
	}
	m = m.Clone()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.derpMap = m
	c.mu.Unlock()
	c.magicConn.SetDERPMap(m)
	return nil
}

// SetBlockEndpoints switches DERP-only mode on or off: when on, our endpoints
// are not published and peers' endpoints are ignored.
func (c *Conn) SetBlockEndpoints(block bool) {
	c.mu.Lock()
	changed := c.blockEndpoints != block
	c.blockEndpoints = block
	c.mu.Unlock()
	if !changed {
		return
	}
	c.markNodeDirty()
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	for _, p := range c.peers {
		if err := c.upsertPeerLocked(p, p.node); err != nil {
			c.logger.Warn("re-apply peer after endpoint blocking change", "peer", p.id, "error", err)
		}
	}
	c.rebuildTablesLocked()
}

func (c *Conn) endpointsBlocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blockEndpoints
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
