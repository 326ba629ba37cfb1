// Package tunneltest provides test helpers for packages that use tunnel.Conn:
// a real DERP relay and STUN server on loopback, and pairs of connected Conns.
package tunneltest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/tunnel"
)

// RegionID is the DERP region ID used by RunDERP.
const RegionID = 999

// Logger returns a logger for tests: discarded unless the environment variable
// TUNNEL_TEST_LOG is set (then Debug level to stderr).
func Logger() *slog.Logger {
	if os.Getenv("TUNNEL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// RunDERP starts a DERP relay (TLS, self-signed, pinned by CertName
// "sha256-raw:") and a STUN server, both on 127.0.0.1, and returns a DERP map
// with only that region. Everything is stopped with t.Cleanup.
func RunDERP(t testing.TB) *tailcfg.DERPMap {
	t.Helper()
	logf := func(format string, args ...any) {}

	srv := derpserver.New(key.NewNode(), logf)
	mux := http.NewServeMux()
	mux.Handle("/derp", derpserver.Handler(srv))
	mux.HandleFunc("/derp/probe", derpserver.ProbeHandler)
	mux.HandleFunc("/derp/latency-check", derpserver.ProbeHandler)
	hs := httptest.NewUnstartedServer(mux)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for DERP: %v", err)
	}
	hs.Listener = ln
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.StartTLS()
	cert := hs.TLS.Certificates[0]
	sum := sha256.Sum256(cert.Certificate[0])

	stunAddr, stopSTUN := serveSTUN(t)
	t.Cleanup(func() {
		stopSTUN()
		hs.CloseClientConnections()
		hs.Close()
		_ = srv.Close()
	})

	derpPort := ln.Addr().(*net.TCPAddr).Port
	return &tailcfg.DERPMap{
		OmitDefaultRegions: true,
		Regions: map[int]*tailcfg.DERPRegion{
			RegionID: {
				RegionID:   RegionID,
				RegionCode: "test",
				RegionName: "Test loopback",
				Nodes: []*tailcfg.DERPNode{{
					Name:     "999a",
					RegionID: RegionID,
					HostName: "127.0.0.1",
					CertName: "sha256-raw:" + hex.EncodeToString(sum[:]),
					IPv4:     "127.0.0.1",
					IPv6:     "none",
					DERPPort: derpPort,
					STUNPort: int(stunAddr.Port()),
				}},
			},
		},
	}
}

// serveSTUN runs a STUN binding server on 127.0.0.1 until the returned stop
// function is called.
func serveSTUN(t testing.TB) (netip.AddrPort, func()) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen for STUN: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, src, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			pkt := buf[:n]
			if !stun.Is(pkt) {
				continue
			}
			txID, err := stun.ParseBindingRequest(pkt)
			if err != nil {
				continue
			}
			src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
			_, _ = pc.WriteToUDPAddrPort(stun.Response(txID, src), src)
		}
	}()
	var once sync.Once
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), func() {
		once.Do(func() {
			_ = pc.Close()
			<-done
		})
	}
}

// PairOptions tunes Pair.
type PairOptions struct {
	// DERPMap to use; nil starts a new relay with RunDERP.
	DERPMap *tailcfg.DERPMap
	// BlockEndpointsA and BlockEndpointsB make the respective side DERP-only.
	BlockEndpointsA, BlockEndpointsB bool
	// Logger for both Conns; nil uses Logger().
	Logger *slog.Logger
}

// Pair returns two Conns connected through a fresh loopback DERP relay, each
// knowing the other and reachable (a disco ping got a pong both ways). They
// are closed with t.Cleanup.
func Pair(t testing.TB) (a, b *tunnel.Conn) {
	t.Helper()
	return PairWithOptions(t, PairOptions{})
}

// PairWithOptions is Pair with options.
func PairWithOptions(t testing.TB, opts PairOptions) (a, b *tunnel.Conn) {
	t.Helper()
	dm := opts.DERPMap
	if dm == nil {
		dm = RunDERP(t)
	}
	log := opts.Logger
	if log == nil {
		log = Logger()
	}
	aID, bID := uuid.New(), uuid.New()
	a, err := tunnel.NewConn(tunnel.Options{
		Addresses:      []netip.Prefix{tunnel.PrefixFromUUID(aID)},
		DERPMap:        dm,
		Logger:         log.With("conn", "a"),
		BlockEndpoints: opts.BlockEndpointsA,
	})
	if err != nil {
		t.Fatalf("create conn a: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, err = tunnel.NewConn(tunnel.Options{
		Addresses:      []netip.Prefix{tunnel.PrefixFromUUID(bID)},
		DERPMap:        dm,
		Logger:         log.With("conn", "b"),
		BlockEndpoints: opts.BlockEndpointsB,
	})
	if err != nil {
		t.Fatalf("create conn b: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	Link(a, aID, b, bID)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !a.AwaitReachable(ctx, b.Addresses()[0].Addr()) {
		t.Fatalf("conn b not reachable from a")
	}
	if !b.AwaitReachable(ctx, a.Addresses()[0].Addr()) {
		t.Fatalf("conn a not reachable from b")
	}
	return a, b
}

// Link plays a minimal coordinator between a (peer aID) and b (peer bID):
// each node update of one is passed to the other with UpdatePeers. Each
// Conn's address must be the one assigned to its ID (tunnel.PrefixFromUUID),
// or the other side ignores its node. Updates stop when a Conn closes.
func Link(a *tunnel.Conn, aID uuid.UUID, b *tunnel.Conn, bID uuid.UUID) {
	a.SetNodeCallback(func(n *tunnel.Node) {
		_ = b.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: aID, Kind: tunnel.PeerNode, Node: n}})
	})
	b.SetNodeCallback(func(n *tunnel.Node) {
		_ = a.UpdatePeers([]*tunnel.PeerUpdate{{PeerID: bID, Kind: tunnel.PeerNode, Node: n}})
	})
}
