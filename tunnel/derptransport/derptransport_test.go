// Package derptransport_test checks how tunnel.Conns reach DERP relays: over
// plain HTTP (a deployment served on http://) and over websockets (clients
// behind proxies that break HTTP upgrades). Both are process-wide upstream
// switches, so these tests live in their own test binary, apart from the
// TLS relays of the other tunnel tests.
package derptransport_test

import (
	"context"
	"errors"
	"github.com/google/uuid"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/tunnel"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

// plainRelay serves a DERP relay on plain HTTP and counts websocket upgrades.
func plainRelay(t *testing.T) (*tailcfg.DERPMap, *atomic.Int64) {
	t.Helper()
	srv := derp.NewServer(tunneltest.Logger(), key.NodePrivate{})
	t.Cleanup(func() { _ = srv.Close() })
	var websockets atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			websockets.Add(1)
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	u, err := url.Parse(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return &tailcfg.DERPMap{
		OmitDefaultRegions: true,
		Regions: map[int]*tailcfg.DERPRegion{
			900: {RegionID: 900, RegionCode: "plain", RegionName: "Plain HTTP", Nodes: []*tailcfg.DERPNode{{
				Name: "900a", RegionID: 900, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
				DERPPort: port, STUNPort: -1,
			}}},
		},
	}, &websockets
}

// relayedEcho connects two DERP-only Conns configured by opts and moves bytes
// between them, returning the region the ping went through.
func relayedEcho(t *testing.T, dm *tailcfg.DERPMap, plainHTTP, websockets bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	newConn := func(id uuid.UUID) *tunnel.Conn {
		c, err := tunnel.NewConn(tunnel.Options{
			Addresses:      []netip.Prefix{tunnel.PrefixFromUUID(id)},
			DERPMap:        dm,
			Logger:         tunneltest.Logger(),
			BlockEndpoints: true,
			DERPPlainHTTP:  plainHTTP,
			DERPWebsockets: websockets,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	aID, bID := uuid.New(), uuid.New()
	a, b := newConn(aID), newConn(bID)
	tunneltest.Link(a, aID, b, bID)
	bIP := b.Addresses()[0].Addr()
	if !a.AwaitReachable(ctx, bIP) {
		t.Fatal("peer never reachable through the relay")
	}
	pr, err := a.Ping(ctx, bIP)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Direct || pr.DERPRegionID != 900 {
		t.Fatalf("ping = %+v, want relayed through region 900", pr)
	}
	ln, err := b.Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := a.DialContext(ctx, "tcp", net.JoinHostPort(bIP.String(), "9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("through a plain relay")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

// TestDERPTransport runs in order: plain HTTP first (turning on that
// process-wide switch), then websockets over the same plain relay.
func TestDERPTransport(t *testing.T) {
	dm, websockets := plainRelay(t)

	t.Run("PlainHTTP", func(t *testing.T) {
		relayedEcho(t, dm, true, false)
		if n := websockets.Load(); n != 0 {
			t.Fatalf("%d websocket upgrades without DERPWebsockets", n)
		}
	})

	t.Run("Websockets", func(t *testing.T) {
		if !tunnel.DERPWebsocketsAvailable {
			_, err := tunnel.NewConn(tunnel.Options{
				Addresses: []netip.Prefix{tunnel.RandomPrefix()}, DERPMap: dm, DERPWebsockets: true,
			})
			if !errors.Is(err, tunnel.ErrDERPWebsocketsUnavailable) {
				t.Fatalf("NewConn without websocket support = %v, want ErrDERPWebsocketsUnavailable", err)
			}
			return
		}
		relayedEcho(t, dm, true, true)
		if websockets.Load() == 0 {
			t.Fatal("DERPWebsockets set but no client connected over a websocket")
		}
	})
}
