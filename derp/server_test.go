package derp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	tsderp "tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/envknob"
	"tailscale.com/net/netmon"
	"tailscale.com/net/wsconn"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/derp"
)

// relay starts a DERP server behind an httptest server (TLS or plain) and
// returns the server and its URL.
func relay(t *testing.T, tlsOn bool) (*httptest.Server, *derp.Server) {
	t.Helper()
	srv := derp.NewServer(nil, key.NodePrivate{})
	hs := httptest.NewUnstartedServer(srv)
	if tlsOn {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(func() {
		hs.CloseClientConnections()
		_ = srv.Close()
		hs.Close()
	})
	return hs, srv
}

// embeddedRegion builds the DERP map for the relay behind hs the way coderd
// does and returns its embedded region.
func embeddedRegion(t *testing.T, hs *httptest.Server) *tailcfg.DERPRegion {
	t.Helper()
	u, err := url.Parse(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts := derp.MapOptions{EnableEmbedded: true, AccessURL: u}
	if hs.TLS != nil {
		opts.CertName = fmt.Sprintf("sha256-raw:%x", sha256.Sum256(hs.Certificate().Raw))
	}
	m, err := derp.BuildMap(context.Background(), opts)
	if err != nil {
		t.Fatalf("BuildMap: %v", err)
	}
	return m.Regions[derp.DefaultRegionID]
}

// regionClient connects to the region like magicsock does.
func regionClient(t *testing.T, region *tailcfg.DERPRegion) (*derphttp.Client, key.NodePrivate) {
	t.Helper()
	priv := key.NewNode()
	c := derphttp.NewRegionClient(priv, t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion { return region })
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect to DERP region: %v", err)
	}
	return c, priv
}

type recver interface {
	Recv() (tsderp.ReceivedMessage, error)
}

// recvPacket reads messages until a packet arrives.
func recvPacket(t *testing.T, c recver) tsderp.ReceivedPacket {
	t.Helper()
	for {
		m, err := c.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if p, ok := m.(tsderp.ReceivedPacket); ok {
			return p
		}
	}
}

func exchange(t *testing.T, a, b *derphttp.Client, aPriv, bPriv key.NodePrivate) {
	t.Helper()
	msg := []byte("hello through the relay")
	// b must be registered with the relay before a sends: Recv on b
	// happens after its Connect, and the relay drops packets to unknown
	// keys, so retry the send until b sees it.
	got := make(chan tsderp.ReceivedPacket, 1)
	go func() { got <- recvPacket(t, b) }()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := a.Send(bPriv.Public(), msg); err != nil {
			t.Fatalf("send: %v", err)
		}
		select {
		case p := <-got:
			if !bytes.Equal(p.Data, msg) || p.Source != aPriv.Public() {
				t.Fatalf("got %q from %v, want %q from %v", p.Data, p.Source, msg, aPriv.Public())
			}
			// and back
			if err := b.Send(aPriv.Public(), []byte("pong")); err != nil {
				t.Fatalf("send back: %v", err)
			}
			back := recvPacket(t, a)
			if string(back.Data) != "pong" || back.Source != bPriv.Public() {
				t.Fatalf("reply %q from %v", back.Data, back.Source)
			}
			return
		case <-tick.C:
		case <-deadline:
			t.Fatal("packet never relayed")
		}
	}
}

func TestRelayTLSRegionClients(t *testing.T) {
	hs, _ := relay(t, true)
	region := embeddedRegion(t, hs)
	a, aPriv := regionClient(t, region)
	b, bPriv := regionClient(t, region)
	exchange(t, a, b, aPriv, bPriv)
}

// TestRelayPlainHTTP checks both ways a plain-HTTP relay is reachable: URL
// clients (http:// URL) and, with the process-wide upstream knob, region
// clients using the map BuildMap produced for an http:// access URL.
func TestRelayPlainHTTP(t *testing.T) {
	hs, _ := relay(t, false)

	t.Run("URLClients", func(t *testing.T) {
		mk := func() (*derphttp.Client, key.NodePrivate) {
			priv := key.NewNode()
			c, err := derphttp.NewClient(priv, hs.URL+"/derp", t.Logf, netmon.NewStatic())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.Connect(ctx); err != nil {
				t.Fatalf("connect: %v", err)
			}
			return c, priv
		}
		a, aPriv := mk()
		b, bPriv := mk()
		exchange(t, a, b, aPriv, bPriv)
	})

	t.Run("RegionClientsWithKnob", func(t *testing.T) {
		envknob.SetenvForTest(t, derp.PlainHTTPEnvKnob, "true")
		region := embeddedRegion(t, hs)
		a, aPriv := regionClient(t, region)
		b, bPriv := regionClient(t, region)
		exchange(t, a, b, aPriv, bPriv)
	})
}

// TestRelayWebsocket connects one client with "Upgrade: websocket" (derp
// subprotocol) and one with the native DERP upgrade.
func TestRelayWebsocket(t *testing.T) {
	hs, _ := relay(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wsURL := "wss" + hs.URL[len("https"):] + "/derp"
	ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
		HTTPClient:   hs.Client(),
		Subprotocols: []string{"derp"},
	})
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	nc := wsconn.NetConn(context.Background(), ws, websocket.MessageBinary, wsURL)
	t.Cleanup(func() { _ = nc.Close() })
	wsPriv := key.NewNode()
	wsClient, err := tsderp.NewClient(wsPriv, nc, bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc)), t.Logf)
	if err != nil {
		t.Fatalf("derp over websocket: %v", err)
	}

	native, nativePriv := regionClient(t, embeddedRegion(t, hs))
	msg := []byte("via websocket")
	got := make(chan tsderp.ReceivedPacket, 1)
	go func() { got <- recvPacket(t, native) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := wsClient.Send(nativePriv.Public(), msg); err != nil {
			t.Fatalf("send: %v", err)
		}
		select {
		case p := <-got:
			if !bytes.Equal(p.Data, msg) || p.Source != wsPriv.Public() {
				t.Fatalf("got %q from %v", p.Data, p.Source)
			}
			if err := native.Send(wsPriv.Public(), []byte("back")); err != nil {
				t.Fatal(err)
			}
			if back := recvPacket(t, wsClient); string(back.Data) != "back" {
				t.Fatalf("reply %q", back.Data)
			}
			return
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("packet never relayed")
		}
	}
}

func TestLatencyCheckAndPaths(t *testing.T) {
	hs, _ := relay(t, true)
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/derp/latency-check", http.StatusOK},
		{http.MethodHead, "/derp/latency-check", http.StatusOK},
		{http.MethodGet, "/derp/probe", http.StatusOK},
		{http.MethodPost, "/derp/latency-check", http.StatusMethodNotAllowed},
		{http.MethodGet, "/derp", http.StatusUpgradeRequired},
		{http.MethodGet, "/elsewhere", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, hs.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}
