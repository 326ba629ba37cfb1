package tunnel_test

import (
	"context"
	"github.com/google/uuid"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"tailscale.com/tailcfg"

	"github.com/wgmesh/coder/tunnel"
	"github.com/wgmesh/coder/tunnel/tunneltest"
)

const benchChunk = 128 << 10

// BenchmarkTCPThroughput measures one TCP stream A→B: over the direct UDP
// path, DERP only (BlockEndpoints on both sides), and plain loopback TCP as
// the reference. MB/s is the figure of interest.
func BenchmarkTCPThroughput(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		a, z := tunneltest.Pair(b)
		awaitDirect(b, a, z)
		benchTunnel(b, a, z)
	})
	b.Run("derp", func(b *testing.B) {
		a, z := tunneltest.PairWithOptions(b, tunneltest.PairOptions{BlockEndpointsA: true, BlockEndpointsB: true})
		benchTunnel(b, a, z)
	})
	b.Run("loopback", func(b *testing.B) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		benchStream(b, ln, func() (net.Conn, error) { return net.Dial("tcp4", ln.Addr().String()) })
	})
}

func awaitDirect(b *testing.B, a, z *tunnel.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		r, err := a.Ping(ctx, z.Addresses()[0].Addr())
		if err != nil {
			b.Fatalf("ping: %v", err)
		}
		if r.Direct {
			return
		}
	}
}

func benchTunnel(b *testing.B, a, z *tunnel.Conn) {
	ln, err := z.Listen("tcp", ":5201")
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.AddrPortFrom(z.Addresses()[0].Addr(), 5201).String()
	benchStream(b, ln, func() (net.Conn, error) { return a.DialContext(context.Background(), "tcp", addr) })
}

// benchStream sends b.N chunks through one connection to a sink that
// acknowledges with one byte after reading everything.
func benchStream(b *testing.B, ln net.Listener, dial func() (net.Conn, error)) {
	defer ln.Close()
	sinkDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sinkDone <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(io.Discard, c)
		if err == nil {
			_, err = c.Write([]byte{1})
		}
		sinkDone <- err
	}()
	conn, err := dial()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			b.Fatal(err)
		}
	} else {
		b.Fatalf("%T cannot half-close", conn)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		b.Fatalf("wait for sink: %v", err)
	}
	b.StopTimer()
	if err := <-sinkDone; err != nil {
		b.Fatalf("sink: %v", err)
	}
}

// BenchmarkColdStart measures the time from creating two Conns to the first
// echoed byte over the tailnet (the DERP relay already runs). ms/op is the
// figure of interest.
func BenchmarkColdStart(b *testing.B) {
	dm := tunneltest.RunDERP(b)
	b.ResetTimer()
	for range b.N {
		coldStartOnce(b, dm)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
}

func coldStartOnce(b *testing.B, dm *tailcfg.DERPMap) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	newConn := func(id uuid.UUID) *tunnel.Conn {
		c, err := tunnel.NewConn(tunnel.Options{Addresses: []netip.Prefix{tunnel.PrefixFromUUID(id)}, DERPMap: dm, Logger: tunneltest.Logger()})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	aID, zID := uuid.New(), uuid.New()
	a, z := newConn(aID), newConn(zID)
	defer func() {
		b.StopTimer()
		_ = a.Close()
		_ = z.Close()
		b.StartTimer()
	}()
	ln, err := z.Listen("tcp", ":7")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	tunneltest.Link(a, aID, z, zID)
	if !a.AwaitReachable(ctx, z.Addresses()[0].Addr()) {
		b.Fatal("not reachable")
	}
	conn, err := a.DialContext(ctx, "tcp", netip.AddrPortFrom(z.Addresses()[0].Addr(), 7).String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{42}); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
}
