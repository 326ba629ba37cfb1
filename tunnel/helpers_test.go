package tunnel_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wgmesh/coder/tunnel/tunneltest"

	"github.com/wgmesh/coder/tunnel"
)

// leakIgnores lists goroutines allowed to outlive a Conn: none are needed
// with tailscale v1.102.5, every goroutine stops on Close.
var leakIgnores = []goleak.Option{}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakIgnores...)
}

// testCtx returns a context that ends with the test or after a generous deadline.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func addrOf(c *tunnel.Conn) netip.Addr { return c.Addresses()[0].Addr() }

func hostPort(c *tunnel.Conn, port uint16) string {
	return netip.AddrPortFrom(addrOf(c), port).String()
}

// serveEcho accepts connections on ln and echoes them until ln closes. The
// returned function waits for the serving goroutines to end.
func serveEcho(t testing.TB, ln net.Listener) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
}

// echoOnce writes msg to c and reads the same bytes back.
func echoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// eventually polls fn until it returns true or the deadline passes.
func eventually(t testing.TB, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCloseLeaksNoGoroutines builds a full pair (relay included), moves
// traffic, closes everything and checks that no goroutine survives.
func TestCloseLeaksNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("pair", func(t *testing.T) {
		a, b := tunneltest.Pair(t)
		ln, err := b.Listen("tcp", ":7300")
		if err != nil {
			t.Fatal(err)
		}
		serveEcho(t, ln)
		conn, err := a.DialContext(testCtx(t), "tcp", hostPort(b, 7300))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		echoOnce(t, conn, "before close")
	})
	goleak.VerifyNone(t, append([]goleak.Option{ignore}, leakIgnores...)...)
}
