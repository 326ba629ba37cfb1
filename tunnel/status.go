package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// PingResult is the outcome of a disco ping to a peer.
type PingResult struct {
	// Latency is the round-trip time.
	Latency time.Duration `json:"latency"`
	// Direct is true when the pong came over a direct UDP path.
	Direct bool `json:"direct"`
	// Endpoint is the peer's "ip:port" on a direct path.
	Endpoint string `json:"endpoint,omitempty"`
	// DERPRegionID is the relaying region when not direct.
	DERPRegionID int `json:"derp_region_id,omitempty"`
	// DERPRegionCode is that region's code.
	DERPRegionCode string `json:"derp_region_code,omitempty"`
}

// Ping sends a disco ping to the peer owning ip and waits for the first pong
// or for ctx to end. The pong may come over DERP or a direct path.
func (c *Conn) Ping(ctx context.Context, ip netip.Addr) (PingResult, error) {
	if c.isClosed() {
		return PingResult{}, ErrClosed
	}
	pip, ok := c.peerForIP(ip)
	if !ok {
		return PingResult{}, fmt.Errorf("tunnel: ping %v: no peer for that address", ip)
	}
	if pip.IsSelf {
		return PingResult{}, fmt.Errorf("tunnel: ping %v: that is our own address", ip)
	}
	resCh := make(chan *ipnstate.PingResult, 1)
	c.magicConn.Ping(pip.Node, &ipnstate.PingResult{IP: ip.String()}, 0, func(r *ipnstate.PingResult) {
		select {
		case resCh <- r:
		default:
		}
	})
	select {
	case r := <-resCh:
		if r.Err != "" {
			return PingResult{}, fmt.Errorf("tunnel: ping %v: %s", ip, r.Err)
		}
		return PingResult{
			Latency:        time.Duration(r.LatencySeconds * float64(time.Second)),
			Direct:         r.Endpoint != "",
			Endpoint:       r.Endpoint,
			DERPRegionID:   r.DERPRegionID,
			DERPRegionCode: r.DERPRegionCode,
		}, nil
	case <-ctx.Done():
		return PingResult{}, fmt.Errorf("tunnel: ping %v: %w", ip, ctx.Err())
	case <-c.ctx.Done():
		return PingResult{}, fmt.Errorf("tunnel: ping %v: %w", ip, ErrClosed)
	}
}

// awaitPingInterval is how long one disco ping may stay unanswered before
// AwaitReachable sends another.
const awaitPingInterval = 250 * time.Millisecond

// AwaitReachable disco-pings the peer owning ip until a pong arrives (true) or
// ctx ends (false). Call it before the first dial to avoid losing the SYN
// while the path is set up.
func (c *Conn) AwaitReachable(ctx context.Context, ip netip.Addr) bool {
	for {
		pctx, cancel := context.WithTimeout(ctx, awaitPingInterval)
		_, err := c.Ping(pctx, ip)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil || c.ctx.Err() != nil {
			return false
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			// No peer yet or a transient failure: wait a little, then retry.
			t := time.NewTimer(awaitPingInterval / 5)
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-c.ctx.Done():
				t.Stop()
				return false
			case <-t.C:
			}
		}
	}
}

// Status is a JSON-able snapshot of the Conn.
type Status struct {
	// Self is our current node.
	Self *Node `json:"self"`
	// HomeDERP is our home DERP region ID (0 = not chosen yet).
	HomeDERP int `json:"home_derp"`
	// HomeDERPCode is its region code.
	HomeDERPCode string `json:"home_derp_code,omitempty"`
	// DERPConnected says whether at least one DERP connection is up.
	DERPConnected bool `json:"derp_connected"`
	// Endpoints are our discovered UDP endpoints (even when blocked).
	Endpoints []string `json:"endpoints"`
	// BlockEndpoints says whether DERP-only mode is on.
	BlockEndpoints bool `json:"block_endpoints"`
	// DERPLatency is the latest netcheck's per-region latency, by region ID.
	DERPLatency map[int]time.Duration `json:"derp_latency"`
	// Peers are the known peers, sorted by ID.
	Peers []PeerStatus `json:"peers"`
}

// PeerStatus describes one peer in Status.
type PeerStatus struct {
	// ID is the peer's coordinator ID.
	ID uuid.UUID `json:"id"`
	// NodeID is its tailscale node ID.
	NodeID tailcfg.NodeID `json:"node_id"`
	// Key is its WireGuard public key.
	Key key.NodePublic `json:"key"`
	// Addresses are its tailnet addresses.
	Addresses []netip.Prefix `json:"addresses"`
	// Lost is true while the peer's coordinator connection is down.
	Lost bool `json:"lost"`
	// PreferredDERP is its home DERP region.
	PreferredDERP int `json:"preferred_derp"`
	// CurAddr is the direct "ip:port" in use, empty when relayed.
	CurAddr string `json:"cur_addr,omitempty"`
	// Relay is the DERP region code used when relayed.
	Relay string `json:"relay,omitempty"`
	// Direct is true when traffic flows over a direct UDP path.
	Direct bool `json:"direct"`
	// LastHandshake is the last WireGuard handshake (zero if none).
	LastHandshake time.Time `json:"last_handshake"`
	// LastWrite is when we last sent to the peer.
	LastWrite time.Time `json:"last_write"`
	// RxBytes counts bytes received from the peer.
	RxBytes int64 `json:"rx_bytes"`
	// TxBytes counts bytes sent to the peer.
	TxBytes int64 `json:"tx_bytes"`
	// Active says whether the peer had recent traffic.
	Active bool `json:"active"`
}

// Status returns a snapshot of our node, DERP state and peers.
func (c *Conn) Status() Status {
	c.mu.Lock()
	st := Status{
		Self:           c.nodeLocked(),
		HomeDERP:       c.preferredDERP,
		DERPConnected:  c.derpConns > 0,
		Endpoints:      slices.Clone(c.endpoints),
		BlockEndpoints: c.blockEndpoints,
	}
	if c.derpMap != nil {
		if r, ok := c.derpMap.Regions[c.preferredDERP]; ok {
			st.HomeDERPCode = r.RegionCode
		}
	}
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return st
	}
	st.DERPLatency = maps.Clone(c.magicConn.GetDERPRegionLatency())

	sb := &ipnstate.StatusBuilder{WantPeers: true}
	c.engine.UpdateStatus(sb)
	ist := sb.Status()

	c.peerMu.Lock()
	peers := make([]*peer, 0, len(c.peers))
	for _, p := range c.peers {
		peers = append(peers, p)
	}
	for _, p := range peers {
		ps := PeerStatus{
			ID:            p.id,
			NodeID:        p.node.ID,
			Key:           p.node.Key,
			Addresses:     slices.Clone(p.node.Addresses),
			Lost:          p.lost,
			PreferredDERP: p.node.PreferredDERP,
		}
		if is, ok := ist.Peer[p.node.Key]; ok && is != nil {
			ps.CurAddr = is.CurAddr
			ps.Relay = is.Relay
			ps.Direct = is.CurAddr != ""
			ps.LastHandshake = is.LastHandshake
			ps.LastWrite = is.LastWrite
			ps.RxBytes = is.RxBytes
			ps.TxBytes = is.TxBytes
			ps.Active = is.Active
		}
		st.Peers = append(st.Peers, ps)
	}
	c.peerMu.Unlock()
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return st
}

// NetcheckReport is what `coder netcheck` shows: the latest netcheck run by
// magicsock plus our home DERP.
type NetcheckReport struct {
	// When is when the netcheck ran (zero if none has completed).
	When time.Time `json:"when"`
	// UDP is true when a STUN round trip completed.
	UDP bool `json:"udp"`
	// IPv4 and IPv6 say whether STUN worked over each family.
	IPv4 bool `json:"ipv4"`
	// IPv6 is true when an IPv6 STUN round trip completed.
	IPv6 bool `json:"ipv6"`
	// GlobalV4 is our public IPv4 endpoint as seen by STUN.
	GlobalV4 string `json:"global_v4,omitempty"`
	// GlobalV6 is our public IPv6 endpoint as seen by STUN.
	GlobalV6 string `json:"global_v6,omitempty"`
	// MappingVariesByDestIP is set when the NAT is "hard" (nil = unknown).
	MappingVariesByDestIP *bool `json:"mapping_varies_by_dest_ip"`
	// PreferredDERP is the region netcheck found closest.
	PreferredDERP int `json:"preferred_derp"`
	// HomeDERP is the region magicsock uses as home.
	HomeDERP int `json:"home_derp"`
	// RegionLatency is the latency per DERP region ID.
	RegionLatency map[int]time.Duration `json:"region_latency"`
	// RegionV4Latency is the IPv4 latency per DERP region ID.
	RegionV4Latency map[int]time.Duration `json:"region_v4_latency"`
	// RegionV6Latency is the IPv6 latency per DERP region ID.
	RegionV6Latency map[int]time.Duration `json:"region_v6_latency"`
}

// NetcheckReport returns the latest netcheck report, or ok=false when none has
// completed yet.
func (c *Conn) NetcheckReport(ctx context.Context) (NetcheckReport, bool) {
	c.mu.Lock()
	home := c.preferredDERP
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return NetcheckReport{}, false
	}
	r := c.magicConn.GetLastNetcheckReport(ctx)
	if r == nil {
		return NetcheckReport{HomeDERP: home}, false
	}
	out := NetcheckReport{
		When:            r.Now,
		UDP:             r.UDP,
		IPv4:            r.IPv4,
		IPv6:            r.IPv6,
		PreferredDERP:   r.PreferredDERP,
		HomeDERP:        home,
		RegionLatency:   maps.Clone(r.RegionLatency),
		RegionV4Latency: maps.Clone(r.RegionV4Latency),
		RegionV6Latency: maps.Clone(r.RegionV6Latency),
	}
	if r.GlobalV4.IsValid() {
		out.GlobalV4 = r.GlobalV4.String()
	}
	if r.GlobalV6.IsValid() {
		out.GlobalV6 = r.GlobalV6.String()
	}
	if v, ok := r.MappingVariesByDestIP.Get(); ok {
		out.MappingVariesByDestIP = &v
	}
	return out, true
}

// DERPLatencies returns the lowest recent latency per DERP region ID.
func (c *Conn) DERPLatencies() map[int]time.Duration {
	if c.isClosed() {
		return nil
	}
	return maps.Clone(c.magicConn.GetDERPRegionLatency())
}
