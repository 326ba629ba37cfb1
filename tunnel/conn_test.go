package tunnel_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/tunnel"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

func TestTCPEchoBothWays(t *testing.T) {
	a, b := tunneltest.Pair(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name           string
		client, server *tunnel.Conn
	}{
		{"a to b", a, b},
		{"b to a", b, a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tc.server.Listen("tcp", ":7001")
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			serveEcho(t, ln)
			conn, err := tc.client.DialContext(ctx, "tcp", hostPort(tc.server, 7001))
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			echoOnce(t, conn, "hello over the tailnet")
			echoOnce(t, conn, "and again")
		})
	}
}

func TestUDPEcho(t *testing.T) {
	a, b := tunneltest.Pair(t)
	ctx := testCtx(t)
	pc, err := b.ListenPacket("udp", ":7002")
	if err != nil {
		t.Fatalf("listen packet: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})

	conn, err := a.DialContext(ctx, "udp", hostPort(b, 7002))
	if err != nil {
		t.Fatalf("dial udp: %v", err)
	}
	defer conn.Close()
	// UDP may lose a datagram while paths settle: resend until echoed.
	buf := make([]byte, 64)
	var got string
	eventually(t, "UDP echo", func() bool {
		if _, err := conn.Write([]byte("datagram")); err != nil {
			t.Fatalf("write udp: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := conn.Read(buf)
		if err != nil {
			return false
		}
		got = string(buf[:n])
		return true
	})
	if got != "datagram" {
		t.Fatalf("udp echo = %q", got)
	}
}

func TestPingDirect(t *testing.T) {
	a, b := tunneltest.Pair(t)
	ctx := testCtx(t)
	var res tunnel.PingResult
	eventually(t, "direct ping", func() bool {
		r, err := a.Ping(ctx, addrOf(b))
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
		res = r
		return r.Direct
	})
	if _, err := netip.ParseAddrPort(res.Endpoint); err != nil {
		t.Fatalf("direct ping endpoint %q: %v", res.Endpoint, err)
	}
	if res.DERPRegionID != 0 {
		t.Fatalf("direct ping reports DERP region %d", res.DERPRegionID)
	}
	// Status agrees once data has flowed.
	ln, err := b.Listen("tcp", ":7003")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln)
	conn, err := a.DialContext(ctx, "tcp", hostPort(b, 7003))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echoOnce(t, conn, "status")
	eventually(t, "status shows a direct peer", func() bool {
		st := a.Status()
		return len(st.Peers) == 1 && st.Peers[0].Direct && st.Peers[0].CurAddr != ""
	})
	st := a.Status()
	if st.HomeDERP != tunneltest.RegionID || !st.DERPConnected {
		t.Fatalf("status home DERP = %d connected=%v", st.HomeDERP, st.DERPConnected)
	}
	if st.Peers[0].RxBytes == 0 || st.Peers[0].TxBytes == 0 || st.Peers[0].LastHandshake.IsZero() {
		t.Fatalf("status counters not filled: %+v", st.Peers[0])
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatalf("status is not JSON-able: %v", err)
	}
	rep, ok := a.NetcheckReport(ctx)
	if !ok || !rep.UDP || rep.GlobalV4 == "" || rep.PreferredDERP != tunneltest.RegionID {
		t.Fatalf("netcheck report = %+v ok=%v", rep, ok)
	}
	if _, ok := a.DERPLatencies()[tunneltest.RegionID]; !ok {
		t.Fatalf("no DERP latency for the test region: %v", a.DERPLatencies())
	}
}

func TestBlockEndpointsUsesDERP(t *testing.T) {
	a, b := tunneltest.PairWithOptions(t, tunneltest.PairOptions{BlockEndpointsA: true})
	ctx := testCtx(t)
	if eps := a.Node().Endpoints; len(eps) != 0 {
		t.Fatalf("blocked conn publishes endpoints %v", eps)
	}
	ln, err := b.Listen("tcp", ":7004")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln)
	conn, err := a.DialContext(ctx, "tcp", hostPort(b, 7004))
	if err != nil {
		t.Fatalf("dial over DERP: %v", err)
	}
	defer conn.Close()
	for i := range 5 {
		echoOnce(t, conn, fmt.Sprintf("relayed %d", i))
		for _, pair := range [][2]*tunnel.Conn{{a, b}, {b, a}} {
			r, err := pair[0].Ping(ctx, addrOf(pair[1]))
			if err != nil {
				t.Fatalf("ping: %v", err)
			}
			if r.Direct || r.DERPRegionID != tunneltest.RegionID || r.DERPRegionCode != "test" {
				t.Fatalf("ping with blocked endpoints = %+v, want DERP region %d", r, tunneltest.RegionID)
			}
		}
	}
	for _, p := range a.Status().Peers {
		if p.Direct {
			t.Fatalf("peer reported direct with endpoints blocked: %+v", p)
		}
	}
}

func TestStreamSurvivesDERPToDirectUpgrade(t *testing.T) {
	a, b := tunneltest.PairWithOptions(t, tunneltest.PairOptions{BlockEndpointsA: true, BlockEndpointsB: true})
	ctx := testCtx(t)
	ln, err := b.Listen("tcp", ":7005")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln)
	conn, err := a.DialContext(ctx, "tcp", hostPort(b, 7005))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echoOnce(t, conn, "via DERP")
	r, err := a.Ping(ctx, addrOf(b))
	if err != nil || r.Direct {
		t.Fatalf("before upgrade: ping = %+v, %v; want DERP", r, err)
	}

	// Unblock: both publish endpoints again through the node callbacks.
	a.SetBlockEndpoints(false)
	b.SetBlockEndpoints(false)
	i := 0
	eventually(t, "direct path after unblocking", func() bool {
		i++
		echoOnce(t, conn, fmt.Sprintf("message %d", i))
		r, err := a.Ping(ctx, addrOf(b))
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
		return r.Direct
	})
	echoOnce(t, conn, "still the same stream, now direct")
	eventually(t, "status shows direct", func() bool {
		echoOnce(t, conn, "x")
		st := a.Status()
		return len(st.Peers) == 1 && st.Peers[0].Direct
	})
}

func TestHostLoopbackNotReachable(t *testing.T) {
	a, b := tunneltest.Pair(t)
	ctx := testCtx(t)

	// A host-only service on 127.0.0.1 of b's host.
	hostLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hostAccepted atomic.Int32
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			hostAccepted.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = hostLn.Close() })
	port := uint16(hostLn.Addr().(*net.TCPAddr).Port)

	conn, err := a.DialContext(ctx, "tcp", hostPort(b, port))
	if err == nil {
		_ = conn.Close()
		t.Fatalf("dial to b's tailnet IP reached a host-only port %d", port)
	}
	if ctx.Err() != nil {
		t.Fatalf("dial was not rejected, it timed out: %v", err)
	}
	// UDP: a datagram to an unlistened port gets no answer, nothing is forwarded.
	if hostAccepted.Load() != 0 {
		t.Fatalf("host service accepted %d connections from the tailnet", hostAccepted.Load())
	}

	// The same port becomes reachable once b listens on its tunnel.
	ln, err := b.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln)
	conn, err = a.DialContext(ctx, "tcp", hostPort(b, port))
	if err != nil {
		t.Fatalf("dial tunnel listener: %v", err)
	}
	defer conn.Close()
	echoOnce(t, conn, "tunnel only")
	if hostAccepted.Load() != 0 {
		t.Fatalf("host service accepted %d connections from the tailnet", hostAccepted.Load())
	}
}

func TestListenAddressRules(t *testing.T) {
	a, _ := tunneltest.Pair(t)
	tests := []struct {
		name, network, addr string
		ok                  bool
	}{
		{"all addresses", "tcp", ":7100", true},
		{"our address", "tcp", hostPort(a, 7101), true},
		{"not our address", "tcp", "[fd7a:115c:a1e0::1]:7102", false},
		{"port zero", "tcp", ":0", false},
		{"unsupported network", "unix", ":7103", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := a.Listen(tc.network, tc.addr)
			if (err == nil) != tc.ok {
				t.Fatalf("Listen(%q, %q) err = %v, want ok=%v", tc.network, tc.addr, err, tc.ok)
			}
			if ln != nil {
				_ = ln.Close()
			}
		})
	}
	ln, err := a.Listen("tcp", ":7104")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := a.Listen("tcp", ":7104"); err == nil {
		t.Fatal("second listener on the same port succeeded")
	}
}

func TestPeerLostAndDisconnected(t *testing.T) {
	dm := tunneltest.RunDERP(t)
	newConn := func(id uuid.UUID, lost time.Duration) *tunnel.Conn {
		c, err := tunnel.NewConn(tunnel.Options{
			Addresses:       []netip.Prefix{tunnel.PrefixFromUUID(id)},
			DERPMap:         dm,
			Logger:          tunneltest.Logger(),
			LostPeerTimeout: lost,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	aID, bID := uuid.New(), uuid.New()
	a := newConn(aID, 200*time.Millisecond)
	b := newConn(bID, 0)
	tunneltest.Link(a, aID, b, bID)
	ctx := testCtx(t)
	if !a.AwaitReachable(ctx, addrOf(b)) {
		t.Fatal("not reachable")
	}
	b.SetNodeCallback(nil) // the "coordinator" stops relaying b's updates

	// Lost: kept for the grace period, then removed.
	if err := a.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: bID, Kind: tunnel.PeerLost}}); err != nil {
		t.Fatal(err)
	}
	if ids := a.PeerIDs(); len(ids) != 1 || ids[0] != bID {
		t.Fatalf("lost peer removed at once: %v", ids)
	}
	if st := a.Status(); len(st.Peers) != 1 || !st.Peers[0].Lost {
		t.Fatalf("status does not show the lost peer: %+v", st.Peers)
	}
	eventually(t, "lost peer expiry", func() bool { return len(a.PeerIDs()) == 0 })
	if _, err := a.DialContext(ctx, "tcp", hostPort(b, 1)); err == nil {
		t.Fatal("dial to an expired peer succeeded")
	}

	// Back again, then disconnected: removed at once.
	if err := a.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: bID, Kind: tunnel.PeerNode, Node: b.Node()}}); err != nil {
		t.Fatal(err)
	}
	if !a.AwaitReachable(ctx, addrOf(b)) {
		t.Fatal("not reachable after coming back")
	}
	if err := a.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: bID, Kind: tunnel.PeerDisconnected}}); err != nil {
		t.Fatal(err)
	}
	if ids := a.PeerIDs(); len(ids) != 0 {
		t.Fatalf("disconnected peer kept: %v", ids)
	}
	if _, err := a.Ping(ctx, addrOf(b)); err == nil {
		t.Fatal("ping to a disconnected peer succeeded")
	}
}

func TestUpdatePeersRejectsInvalidNodes(t *testing.T) {
	dm := tunneltest.RunDERP(t)
	c, err := tunnel.NewConn(tunnel.Options{Addresses: []netip.Prefix{tunnel.RandomPrefix()}, DERPMap: dm, Logger: tunneltest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peerID := uuid.New()
	good := func() *tunnel.Node {
		k := key.NewNode().Public()
		return &tunnel.Node{
			ID:        tunnel.NodeIDFromKey(k),
			Key:       k,
			DiscoKey:  key.NewDisco().Public(),
			Addresses: []netip.Prefix{tunnel.PrefixFromUUID(peerID)},
		}
	}
	victim := tunnel.AgentPrefix(uuid.New())
	tests := []struct {
		name   string
		mutate func(n *tunnel.Node)
	}{
		// Spoofing: addresses other than the one assigned to the peer ID.
		{"another peer's address", func(n *tunnel.Node) { n.Addresses = []netip.Prefix{victim} }},
		{"extra address", func(n *tunnel.Node) { n.Addresses = append(n.Addresses, victim) }},
		{"allowed IP of another peer", func(n *tunnel.Node) { n.AllowedIPs = []netip.Prefix{victim} }},
		{"allowed IPs wider than the address", func(n *tunnel.Node) { n.AllowedIPs = []netip.Prefix{tunnel.TailnetPrefix} }},
		{"zero ID", func(n *tunnel.Node) { n.ID = 0 }},
		{"zero key", func(n *tunnel.Node) { n.Key = key.NodePublic{} }},
		{"zero disco key", func(n *tunnel.Node) { n.DiscoKey = key.DiscoPublic{} }},
		{"our own key", func(n *tunnel.Node) { n.Key = c.NodeKey() }},
		{"no addresses", func(n *tunnel.Node) { n.Addresses = nil }},
		{"bad endpoint", func(n *tunnel.Node) { n.Endpoints = []string{"not-an-endpoint"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := good()
			tc.mutate(n)
			if err := c.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: peerID, Kind: tunnel.PeerNode, Node: n}}); err == nil {
				t.Fatal("invalid node accepted")
			}
			if ids := c.PeerIDs(); len(ids) != 0 {
				t.Fatalf("invalid node installed as peer %v", ids)
			}
		})
	}
	if err := c.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: uuid.New(), Kind: tunnel.PeerNode}}); err == nil {
		t.Fatal("node update without node accepted")
	}
	// A key moving to another peer ID replaces the old peer instead of panicking.
	n := good()
	first, second := peerID, uuid.New()
	if err := c.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: first, Kind: tunnel.PeerNode, Node: n}}); err != nil {
		t.Fatal(err)
	}
	n = n.Clone()
	n.Addresses = []netip.Prefix{tunnel.PrefixFromUUID(second)}
	if err := c.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: second, Kind: tunnel.PeerNode, Node: n}}); err != nil {
		t.Fatal(err)
	}
	if ids := c.PeerIDs(); len(ids) != 1 || ids[0] != second {
		t.Fatalf("peers = %v, want only %v", ids, second)
	}
}

func TestNewConnValidation(t *testing.T) {
	dm := tunneltest.RunDERP(t)
	noNodes := dm.Clone()
	noNodes.Regions[tunneltest.RegionID].Nodes = nil
	wrongID := dm.Clone()
	wrongID.Regions[tunneltest.RegionID].RegionID = 5
	tests := []struct {
		name string
		opts tunnel.Options
	}{
		{"no DERP map", tunnel.Options{Addresses: []netip.Prefix{tunnel.RandomPrefix()}}},
		{"no addresses", tunnel.Options{DERPMap: dm}},
		{"not a single IP", tunnel.Options{DERPMap: dm, Addresses: []netip.Prefix{tunnel.TailnetPrefix}}},
		{"region without nodes", tunnel.Options{DERPMap: noNodes, Addresses: []netip.Prefix{tunnel.RandomPrefix()}}},
		{"region ID mismatch", tunnel.Options{DERPMap: wrongID, Addresses: []netip.Prefix{tunnel.RandomPrefix()}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tunnel.NewConn(tc.opts)
			if err == nil {
				_ = c.Close()
				t.Fatal("NewConn accepted invalid options")
			}
		})
	}
}

func TestNodeCallbackPublishesReadyNode(t *testing.T) {
	dm := tunneltest.RunDERP(t)
	priv := key.NewNode()
	c, err := tunnel.NewConn(tunnel.Options{
		ID:             42,
		NodePrivateKey: priv,
		Addresses:      []netip.Prefix{tunnel.RandomPrefix()},
		DERPMap:        dm,
		Logger:         tunneltest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nodes := make(chan *tunnel.Node, 16)
	c.SetNodeCallback(func(n *tunnel.Node) {
		select {
		case nodes <- n:
		default:
		}
	})
	ctx := testCtx(t)
	select {
	case n := <-nodes:
		if n.ID != 42 || n.Key != priv.Public() || n.DiscoKey.IsZero() {
			t.Fatalf("node identity = %d %v %v", n.ID, n.Key, n.DiscoKey)
		}
		if n.PreferredDERP != tunneltest.RegionID {
			t.Fatalf("node published before a home DERP: %+v", n)
		}
		if !c.Status().DERPConnected {
			t.Fatal("node published before DERP connected")
		}
		// Endpoints come from magicsock's own discovery and may arrive in a
		// later update than the first (DERP-ready) one; they must arrive.
		for len(n.Endpoints) == 0 {
			select {
			case n = <-nodes:
			case <-ctx.Done():
				t.Fatalf("no node with endpoints published; last: %+v", n)
			}
		}
		raw, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		var back tunnel.Node
		if err := json.Unmarshal(raw, &back); err != nil || back.Key != n.Key || back.DiscoKey != n.DiscoKey {
			t.Fatalf("node JSON round trip: %v %+v", err, back)
		}
	case <-ctx.Done():
		t.Fatal("no node published")
	}
}

func TestCloseFailsPendingWork(t *testing.T) {
	a, b := tunneltest.Pair(t)
	ctx := testCtx(t)
	ln, err := a.Listen("tcp", ":7200")
	if err != nil {
		t.Fatal(err)
	}
	acceptErr := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		acceptErr <- err
	}()
	// A peer that never answers: valid keys, no endpoints, nobody on DERP.
	k := key.NewNode().Public()
	ghostID := uuid.New()
	ghost := &tunnel.Node{
		ID: tunnel.NodeIDFromKey(k), Key: k, DiscoKey: key.NewDisco().Public(),
		PreferredDERP: tunneltest.RegionID,
		Addresses:     []netip.Prefix{tunnel.PrefixFromUUID(ghostID)},
	}
	if err := a.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: ghostID, Kind: tunnel.PeerNode, Node: ghost}}); err != nil {
		t.Fatal(err)
	}
	dialErr := make(chan error, 1)
	dialStarted := make(chan struct{})
	go func() {
		close(dialStarted)
		_, err := a.DialContext(ctx, "tcp", netip.AddrPortFrom(ghost.Addresses[0].Addr(), 22).String())
		dialErr <- err
	}()
	<-dialStarted
	_ = b // b stays up; only a closes.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if err := <-dialErr; err == nil {
		t.Fatal("pending dial succeeded after Close")
	}
	if _, err := a.DialContext(ctx, "tcp", hostPort(b, 1)); !errors.Is(err, tunnel.ErrClosed) {
		t.Fatalf("dial after Close = %v, want ErrClosed", err)
	}
	if _, err := a.Listen("tcp", ":7201"); !errors.Is(err, tunnel.ErrClosed) {
		t.Fatalf("listen after Close = %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSpoofedAddressDoesNotDivertTraffic is the mesh spoofing attack at the
// tunnel layer: a rogue peer announces the victim's address under its own
// peer ID. The update is refused and connections to the victim's address
// still reach the victim.
func TestSpoofedAddressDoesNotDivertTraffic(t *testing.T) {
	dm := tunneltest.RunDERP(t)
	newConn := func(id uuid.UUID) *tunnel.Conn {
		c, err := tunnel.NewConn(tunnel.Options{Addresses: []netip.Prefix{tunnel.PrefixFromUUID(id)}, DERPMap: dm, Logger: tunneltest.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	clientID, victimID, rogueID := uuid.New(), uuid.New(), uuid.New()
	client, victim, rogue := newConn(clientID), newConn(victimID), newConn(rogueID)
	tunneltest.Link(client, clientID, victim, victimID)
	ctx := testCtx(t)
	if !client.AwaitReachable(ctx, addrOf(victim)) {
		t.Fatal("victim not reachable")
	}
	// Both the victim and the rogue listen on the same port and say who
	// they are.
	serveName := func(c *tunnel.Conn, name string) {
		ln, err := c.Listen("tcp", ":7300")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = nc.Write([]byte(name))
				_ = nc.Close()
			}
		}()
	}
	serveName(victim, "victim")
	serveName(rogue, "rogue")

	spoof := rogue.Node()
	spoof.Addresses = []netip.Prefix{victim.Addresses()[0]}
	spoof.AllowedIPs = []netip.Prefix{victim.Addresses()[0]}
	if err := client.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: rogueID, Kind: tunnel.PeerNode, Node: spoof}}); err == nil {
		t.Fatal("spoofed node accepted")
	}
	for i := range 10 {
		nc, err := client.DialContext(ctx, "tcp", hostPort(victim, 7300))
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		got, err := io.ReadAll(nc)
		_ = nc.Close()
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if string(got) != "victim" {
			t.Fatalf("dial %d to the victim's address reached %q", i, got)
		}
	}
}
