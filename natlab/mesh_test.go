package natlab_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/natlab"
	"github.com/wgmesh/coder/tunnel"
)

// echoPort is where peer A listens on its tailnet address.
const echoPort = "7"

// Generous deadlines: the lab runs on 2 shared cores.
const (
	setupTimeout = 30 * time.Second
	pathTimeout  = 40 * time.Second
	echoTimeout  = 30 * time.Second
)

// mesh is two peers on two NATed sites, the coordinator, DERP and STUN on the
// lab internet, and an open TCP stream from B to A's echo listener.
type mesh struct {
	lab      *natlab.Lab
	a, b     *natlab.Node
	aIP, bIP netip.Addr
}

func newMesh(t *testing.T, natA, natB natlab.NAT) *mesh {
	t.Helper()
	lab := natlab.New(t, natlab.Options{Sites: []natlab.NAT{natA, natB}})
	idA, idB := uuid.New(), uuid.New()
	server := natlab.StartTestNode(t, lab.Internet, natlab.NodeOptions{
		Role: roleMeshServer,
		Env:  []string{envPeers + "=" + idA.String() + "," + idB.String()},
	})
	var sr meshServerReady
	if err := server.ReadyInto(&sr); err != nil {
		t.Fatal(err)
	}
	dm, err := json.Marshal(sr.DERPMap)
	if err != nil {
		t.Fatal(err)
	}
	peer := func(site *natlab.Site, id uuid.UUID) *natlab.Node {
		return natlab.StartTestNode(t, site.Host, natlab.NodeOptions{
			Role: roleMeshPeer,
			Env: []string{
				envPeerID + "=" + id.String(),
				envCoordURL + "=" + sr.CoordURL,
				envDERPMap + "=" + string(dm),
			},
		})
	}
	m := &mesh{lab: lab, a: peer(lab.Sites[0], idA), b: peer(lab.Sites[1], idB)}
	m.aIP, m.bIP = tunnel.IPFromUUID(idA), tunnel.IPFromUUID(idB)

	m.call(t, m.a, setupTimeout, nil, "listen", echoPort)
	m.call(t, m.b, setupTimeout, nil, "add-tunnel", idA.String())
	m.call(t, m.b, setupTimeout, nil, "await", m.aIP.String())
	m.call(t, m.b, setupTimeout, nil, "open", netip.AddrPortFrom(m.aIP, 7).String())
	m.echo(t)
	return m
}

func (m *mesh) call(t *testing.T, n *natlab.Node, d time.Duration, result any, cmd string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := n.Call(ctx, result, cmd, args...); err != nil {
		t.Fatal(err)
	}
}

// echo sends a few KiB over the open stream and reads them back.
func (m *mesh) echo(t *testing.T) {
	t.Helper()
	m.call(t, m.b, echoTimeout, nil, "echo", "4096")
}

// ping is one disco ping from B to A; errors (no pong in time) are returned.
func (m *mesh) ping(ctx context.Context) (tunnel.PingResult, error) {
	var res tunnel.PingResult
	err := m.b.Call(ctx, &res, "ping", m.aIP.String())
	return res, err
}

// awaitPath pings A from B until the pong arrives over the wanted path
// (direct UDP or DERP), echoing on the open stream between pings so that
// traffic keeps flowing, and fails the test at the deadline.
func (m *mesh) awaitPath(t *testing.T, direct bool) tunnel.PingResult {
	t.Helper()
	want := map[bool]string{true: "direct", false: "DERP"}[direct]
	return m.awaitPing(t, want, func(res tunnel.PingResult) bool { return res.Direct == direct })
}

// awaitPing pings A from B until a pong satisfies ok (see awaitPath).
func (m *mesh) awaitPing(t *testing.T, want string, ok func(tunnel.PingResult) bool) tunnel.PingResult {
	t.Helper()
	deadline := time.Now().Add(pathTimeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last tunnel.PingResult
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := m.ping(ctx)
		cancel()
		if err == nil && ok(res) {
			t.Logf("path is %s: %+v", want, res)
			return res
		}
		last, lastErr = res, err
		m.echo(t)
		<-tick.C
	}
	t.Fatalf("path did not become %s within %v; last ping %+v, err %v", want, pathTimeout, last, lastErr)
	return last
}

// TestMeshVariants connects two peers across each pair of NATs and checks
// the path they settle on and that TCP flows.
func TestMeshVariants(t *testing.T) {
	tests := []struct {
		name       string
		natA, natB natlab.NAT
		// path: "direct", "derp", or "" when either is acceptable.
		path string
	}{
		{name: "easy-easy", natA: natlab.NATEasy, natB: natlab.NATEasy, path: "direct"},
		{name: "easyaf-hard", natA: natlab.NATEasyAF, natB: natlab.NATHard, path: "direct"},
		{name: "hard-easyaf", natA: natlab.NATHard, natB: natlab.NATEasyAF, path: "direct"},
		{name: "easy-hard", natA: natlab.NATEasy, natB: natlab.NATHard, path: ""},
		{name: "easy-udpblocked", natA: natlab.NATEasy, natB: natlab.NATUDPBlocked, path: "derp"},
		{name: "hard-udpblocked", natA: natlab.NATHard, natB: natlab.NATUDPBlocked, path: "derp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t, tt.natA, tt.natB)
			switch tt.path {
			case "direct":
				res := m.awaitPath(t, true)
				if res.Endpoint == "" {
					t.Errorf("direct ping without an endpoint: %+v", res)
				}
			case "derp":
				res := m.awaitPath(t, false)
				if res.DERPRegionID == 0 {
					t.Errorf("relayed ping without a DERP region: %+v", res)
				}
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				res, err := m.ping(ctx)
				cancel()
				t.Logf("path: %+v (err %v)", res, err)
			}
			m.echo(t)
		})
	}
}

// TestMeshPathChange keeps one TCP stream open while the path goes direct →
// DERP (UDP blocked on B's router mid-stream) → direct (unblocked).
func TestMeshPathChange(t *testing.T) {
	m := newMesh(t, natlab.NATEasy, natlab.NATEasy)
	m.awaitPath(t, true)
	m.echo(t)

	siteB := m.lab.Sites[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := siteB.BlockUDP(ctx); err != nil {
		t.Fatal(err)
	}
	m.awaitPath(t, false)
	m.echo(t)

	if err := siteB.UnblockUDP(ctx); err != nil {
		t.Fatal(err)
	}
	m.awaitPath(t, true)
	m.echo(t)
}

// TestMeshRebind changes A's public UDP port mid-stream (NAT rebinding): the
// same TCP stream keeps working and the peers find a direct path again.
func TestMeshRebind(t *testing.T) {
	m := newMesh(t, natlab.NATEasy, natlab.NATEasy)
	m.awaitPath(t, true)
	m.echo(t)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	port, err := m.lab.Sites[0].Rebind(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("site A's public UDP port is now %d", port)
	m.echo(t)
	newEndpoint := netip.AddrPortFrom(m.lab.Sites[0].WANAddr, port).String()
	m.awaitPing(t, "direct via "+newEndpoint, func(res tunnel.PingResult) bool {
		return res.Direct && res.Endpoint == newEndpoint
	})
	m.echo(t)
}
