package tunnel

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Node is what a peer publishes through the coordinator (JSON on the wire).
type Node struct {
	// ID is the peer's tailscale node ID; non-zero and stable for a key.
	ID tailcfg.NodeID `json:"id"`
	// AsOf is when the node was produced.
	AsOf time.Time `json:"as_of"`
	// Key is the WireGuard public key.
	Key key.NodePublic `json:"key"`
	// DiscoKey is the magicsock discovery public key.
	DiscoKey key.DiscoPublic `json:"disco"`
	// PreferredDERP is the home DERP region ID (0 = unknown).
	PreferredDERP int `json:"preferred_derp"`
	// DERPLatency maps "<regionID>-v4"/"-v6" to latency in seconds.
	DERPLatency map[string]float64 `json:"derp_latency"`
	// Addresses are the node's own tailnet addresses.
	Addresses []netip.Prefix `json:"addresses"`
	// AllowedIPs are the prefixes routed to this node (usually = Addresses).
	AllowedIPs []netip.Prefix `json:"allowed_ips"`
	// Endpoints are "ip:port" UDP endpoints where the node may be reached directly.
	Endpoints []string `json:"endpoints"`
}

// Clone returns a deep copy of n.
func (n *Node) Clone() *Node {
	if n == nil {
		return nil
	}
	c := *n
	c.DERPLatency = maps.Clone(n.DERPLatency)
	c.Addresses = slices.Clone(n.Addresses)
	c.AllowedIPs = slices.Clone(n.AllowedIPs)
	c.Endpoints = slices.Clone(n.Endpoints)
	return &c
}

// equalIgnoringTime reports whether a and b are equal, ignoring AsOf.
func (n *Node) equalIgnoringTime(o *Node) bool {
	if n == nil || o == nil {
		return n == o
	}
	return n.ID == o.ID && n.Key == o.Key && n.DiscoKey == o.DiscoKey &&
		n.PreferredDERP == o.PreferredDERP &&
		maps.Equal(n.DERPLatency, o.DERPLatency) &&
		slices.Equal(n.Addresses, o.Addresses) &&
		slices.Equal(n.AllowedIPs, o.AllowedIPs) &&
		slices.Equal(n.Endpoints, o.Endpoints)
}

// PeerUpdateKind says what happened to a peer.
type PeerUpdateKind int

const (
	// PeerNode carries a new or changed node for the peer.
	PeerNode PeerUpdateKind = iota + 1
	// PeerDisconnected means the peer left cleanly: remove it now.
	PeerDisconnected
	// PeerLost means the peer's coordinator connection dropped: keep it for a
	// grace period (Options.LostPeerTimeout), it may come back with the same key.
	PeerLost
)

// String implements fmt.Stringer.
func (k PeerUpdateKind) String() string {
	switch k {
	case PeerNode:
		return "node"
	case PeerDisconnected:
		return "disconnected"
	case PeerLost:
		return "lost"
	default:
		return "unknown"
	}
}

// PeerUpdate is one change to the set of peers, as delivered by the coordinator.
type PeerUpdate struct {
	// PeerID identifies the peer (e.g. agent ID or client ID).
	PeerID uuid.UUID
	// Kind says what happened.
	Kind PeerUpdateKind
	// Node is the peer's node; required for PeerNode, ignored otherwise.
	Node *Node
}
