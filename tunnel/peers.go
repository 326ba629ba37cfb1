package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/wgengine"
)

// peerTables is an immutable snapshot of the peers, used on the packet path
// without locks. It is replaced wholesale on every change.
type peerTables struct {
	// keyByIP maps a single peer address to its node key.
	keyByIP map[netip.Addr]key.NodePublic
	// wide holds allowed prefixes that are not single addresses.
	wide []widePrefix
	// allowed maps a node key to its allowed IPs.
	allowed map[key.NodePublic][]netip.Prefix
	// nodeByKey maps a node key to its tailscale node.
	nodeByKey map[key.NodePublic]tailcfg.NodeView
}

type widePrefix struct {
	prefix netip.Prefix
	key    key.NodePublic
}

type peerTablesPtr = atomic.Pointer[peerTables]

func (t *peerTables) lookup(ip netip.Addr) (key.NodePublic, bool) {
	if k, ok := t.keyByIP[ip]; ok {
		return k, true
	}
	for _, w := range t.wide {
		if w.prefix.Contains(ip) {
			return w.key, true
		}
	}
	return key.NodePublic{}, false
}

// peerAllowedIPs is the engine's peer configuration source.
func (c *Conn) peerAllowedIPs(k key.NodePublic) ([]netip.Prefix, bool) {
	ips, ok := c.tables.Load().allowed[k]
	return ips, ok
}

// peerKeyForIP maps an outbound packet's destination to a peer; per packet.
func (c *Conn) peerKeyForIP(ip netip.Addr) (key.NodePublic, bool) {
	return c.tables.Load().lookup(ip)
}

// peerForIP serves engine.Ping and TSMP.
func (c *Conn) peerForIP(ip netip.Addr) (wgengine.PeerForIP, bool) {
	for _, p := range c.addresses {
		if p.Contains(ip) {
			return wgengine.PeerForIP{Node: c.selfView, IsSelf: true, Route: p}, true
		}
	}
	t := c.tables.Load()
	k, ok := t.lookup(ip)
	if !ok {
		return wgengine.PeerForIP{}, false
	}
	n, ok := t.nodeByKey[k]
	if !ok {
		return wgengine.PeerForIP{}, false
	}
	return wgengine.PeerForIP{Node: n, Route: netip.PrefixFrom(ip, ip.BitLen())}, true
}

// rebuildTablesLocked publishes a new snapshot of c.peers. peerMu must be held.
func (c *Conn) rebuildTablesLocked() {
	t := &peerTables{
		keyByIP:   map[netip.Addr]key.NodePublic{},
		allowed:   map[key.NodePublic][]netip.Prefix{},
		nodeByKey: map[key.NodePublic]tailcfg.NodeView{},
	}
	for _, p := range c.peers {
		k := p.tnode.Key()
		allowed := p.tnode.AllowedIPs().AsSlice()
		t.allowed[k] = allowed
		t.nodeByKey[k] = p.tnode
		for _, pfx := range allowed {
			if pfx.IsSingleIP() {
				t.keyByIP[pfx.Addr()] = k
			} else {
				t.wide = append(t.wide, widePrefix{prefix: pfx, key: k})
			}
		}
	}
	c.tables.Store(t)
}

// UpdatePeers applies updates from the coordinator, in order. Invalid updates
// are skipped and reported in the returned error; valid ones still apply.
func (c *Conn) UpdatePeers(updates []*PeerUpdate) error {
	if c.isClosed() {
		return ErrClosed
	}
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	var errs []error
	for _, u := range updates {
		if u == nil {
			continue
		}
		if err := c.applyUpdateLocked(u); err != nil {
			errs = append(errs, fmt.Errorf("peer %s (%s): %w", u.PeerID, u.Kind, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Conn) applyUpdateLocked(u *PeerUpdate) error {
	switch u.Kind {
	case PeerNode:
		if err := c.validatePeerNode(u.Node); err != nil {
			return err
		}
		// Never let a peer claim an address coderd did not assign to its
		// ID: it would divert traffic meant for another peer.
		if err := CheckAssignedAddresses(u.PeerID, u.Node); err != nil {
			c.logger.Warn("ignoring peer node with unassigned addresses", "peer", u.PeerID, "error", err)
			return err
		}
		p, ok := c.peers[u.PeerID]
		if !ok {
			p = &peer{id: u.PeerID}
		}
		if p.lostTimer != nil {
			p.lostTimer.Stop()
			p.lostTimer = nil
		}
		wasLost := p.lost
		p.lost = false
		// magicsock panics (in tests) if a key moves between node IDs:
		// evict whichever other peer holds this key or ID first.
		for id, other := range c.peers {
			if id == u.PeerID {
				continue
			}
			if other.node.Key == u.Node.Key || other.node.ID == u.Node.ID {
				c.removePeerLocked(other)
			}
		}
		if ok && p.node.ID != u.Node.ID {
			c.removePeerLocked(p)
			ok = false
		}
		var oldDisco key.DiscoPublic
		if ok {
			oldDisco = p.node.DiscoKey
		}
		if err := c.upsertPeerLocked(p, u.Node); err != nil {
			return err
		}
		if ok && (oldDisco != u.Node.DiscoKey || wasLost) {
			// The peer restarted (new disco key) or came back: drop the
			// old WireGuard session so a fresh handshake starts at once.
			c.engine.ResetDevicePeer(u.Node.Key)
		}
		return nil
	case PeerDisconnected:
		if p, ok := c.peers[u.PeerID]; ok {
			c.removePeerLocked(p)
		}
		return nil
	case PeerLost:
		p, ok := c.peers[u.PeerID]
		if !ok || p.lost {
			return nil
		}
		p.lost = true
		p.lostTimer = time.AfterFunc(c.lostTimeout, func() { c.expireLostPeer(p) })
		return nil
	default:
		return fmt.Errorf("unknown update kind %d", u.Kind)
	}
}

func (c *Conn) validatePeerNode(n *Node) error {
	switch {
	case n == nil:
		return errors.New("node update without a node")
	case n.ID == 0:
		return errors.New("node has ID 0")
	case n.Key.IsZero():
		return errors.New("node has a zero key")
	case n.DiscoKey.IsZero():
		return errors.New("node has a zero disco key")
	case n.Key == c.privateKey.Public() || n.ID == c.id:
		return errors.New("node has our own key or ID")
	case len(n.Addresses) == 0 && len(n.AllowedIPs) == 0:
		return errors.New("node has no addresses")
	}
	for _, p := range append(slices.Clone(n.Addresses), n.AllowedIPs...) {
		if !p.IsValid() {
			return fmt.Errorf("node has an invalid prefix %v", p)
		}
	}
	return nil
}

// upsertPeerLocked installs node n for peer p (which may be new). peerMu held.
func (c *Conn) upsertPeerLocked(p *peer, n *Node) error {
	tn, err := c.tailscaleNode(n)
	if err != nil {
		return err
	}
	p.node = n.Clone()
	p.tnode = tn.View()
	c.peers[p.id] = p
	c.rebuildTablesLocked()
	c.magicConn.UpsertPeer(p.tnode)
	c.engine.SyncDevicePeer(n.Key)
	return nil
}

// removePeerLocked forgets peer p everywhere. peerMu held.
func (c *Conn) removePeerLocked(p *peer) {
	if p.lostTimer != nil {
		p.lostTimer.Stop()
		p.lostTimer = nil
	}
	delete(c.peers, p.id)
	c.rebuildTablesLocked()
	c.magicConn.RemovePeer(p.node.ID)
	c.engine.SyncDevicePeer(p.node.Key)
	// No packet reaches the peer any more: end its connections now rather
	// than when TCP gives up retransmitting. (The closing FIN goes nowhere;
	// the peer's side ends the same way when it removes us.)
	prefixes := append(slices.Clone(p.node.Addresses), p.node.AllowedIPs...)
	if n := c.tcpConns.closeMatching(prefixes); n > 0 {
		c.logger.Info("closed connections of removed peer", "peer", p.id, "connections", n)
	}
}

func (c *Conn) expireLostPeer(p *peer) {
	if c.isClosed() {
		return
	}
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	if cur, ok := c.peers[p.id]; ok && cur == p && p.lost {
		c.logger.Info("removing lost peer after grace period", "peer", p.id)
		c.removePeerLocked(p)
	}
}

func (c *Conn) tailscaleNode(n *Node) (*tailcfg.Node, error) {
	allowed := n.AllowedIPs
	if len(allowed) == 0 {
		allowed = n.Addresses
	}
	tn := &tailcfg.Node{
		ID:         n.ID,
		StableID:   tailcfg.StableNodeID(fmt.Sprint(n.ID)),
		Name:       fmt.Sprintf("node-%d", n.ID),
		Key:        n.Key,
		DiscoKey:   n.DiscoKey,
		Addresses:  slices.Clone(n.Addresses),
		AllowedIPs: slices.Clone(allowed),
		HomeDERP:   n.PreferredDERP,
		Online:     new(true),
	}
	if !c.endpointsBlocked() {
		for _, ep := range n.Endpoints {
			ap, err := netip.ParseAddrPort(ep)
			if err != nil {
				return nil, fmt.Errorf("parse endpoint %q: %w", ep, err)
			}
			tn.Endpoints = append(tn.Endpoints, ap)
		}
	}
	return tn, nil
}

// PeerIDs returns the IDs of the peers currently known (including lost ones).
func (c *Conn) PeerIDs() []uuid.UUID {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	ids := make([]uuid.UUID, 0, len(c.peers))
	for id := range c.peers {
		ids = append(ids, id)
	}
	return ids
}
