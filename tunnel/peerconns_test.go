package tunnel_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/tunnel"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// TestRemovedPeerConnectionsEnd: when a peer is removed (disconnected, as
// coderd announces a revoked client), every TCP connection with it ends at
// once on this side, dialed or accepted, instead of hanging until TCP gives
// up; connections with other peers stay up.
func TestRemovedPeerConnectionsEnd(t *testing.T) {
	dm := tunneltest.RunDERP(t)
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	conns := make([]*tunnel.Conn, len(ids))
	for i, id := range ids {
		c, err := tunnel.NewConn(tunnel.Options{
			Addresses: []netip.Prefix{tunnel.PrefixFromUUID(id)},
			DERPMap:   dm,
			Logger:    tunneltest.Logger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	// A full mesh: every node update goes to both other peers.
	for i, c := range conns {
		c.SetNodeCallback(func(n *tunnel.Node) {
			for j, other := range conns {
				if j != i {
					_ = other.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: ids[i], Kind: tunnel.PeerNode, Node: n}})
				}
			}
		})
	}
	a, b, c := conns[0], conns[1], conns[2]
	ctx := testCtx(t)
	for _, peer := range []*tunnel.Conn{b, c} {
		if !a.AwaitReachable(ctx, addrOf(peer)) {
			t.Fatal("peer not reachable")
		}
	}

	// b serves an echo and keeps its accepted side for the test.
	lnB, err := b.Listen("tcp", ":7010")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lnB.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := lnB.Accept()
		if err != nil {
			return
		}
		accepted <- nc
		_, _ = io.Copy(nc, nc)
	}()
	lnC, err := c.Listen("tcp", ":7010")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, lnC)

	toB, err := a.DialContext(ctx, "tcp", hostPort(b, 7010))
	if err != nil {
		t.Fatal(err)
	}
	defer toB.Close()
	toC, err := a.DialContext(ctx, "tcp", hostPort(c, 7010))
	if err != nil {
		t.Fatal(err)
	}
	defer toC.Close()
	echoOnce(t, toB, "before")
	echoOnce(t, toC, "before")
	var atB net.Conn
	select {
	case atB = <-accepted:
	case <-ctx.Done():
		t.Fatal("b accepted nothing")
	}

	// a removes b: a's connection to b ends now (its read fails, not by a
	// deadline), a's connection to c is untouched.
	if err := a.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: ids[1], Kind: tunnel.PeerDisconnected}}); err != nil {
		t.Fatal(err)
	}
	assertEnded(t, toB)
	echoOnce(t, toC, "after")

	// b removes a: b's accepted side ends too.
	if err := b.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: ids[0], Kind: tunnel.PeerDisconnected}}); err != nil {
		t.Fatal(err)
	}
	assertEnded(t, atB)
}

// assertEnded reads from nc and requires an error other than a deadline
// (the generous deadline only keeps a broken test from hanging).
func assertEnded(t *testing.T, nc net.Conn) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 16)
	for {
		_, err := nc.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection of a removed peer stayed open")
		}
		return
	}
}
