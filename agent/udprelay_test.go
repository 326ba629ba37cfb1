package agent

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

// relayPair serves one relay stream over a real loopback TCP connection
// and returns the client end; the server goroutine ends with the test.
func relayPair(t *testing.T) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	u := &udpRelay{logger: slog.New(slog.DiscardHandler)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer sc.Close()
		u.serve(sc)
	}()
	t.Cleanup(func() { _ = c.Close(); wg.Wait() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// openRelay opens a relay on c with the client side of the handshake.
func openRelay(t *testing.T, c net.Conn, req agentproto.UDPRelayRequest) *agentproto.UDPFrameConn {
	t.Helper()
	fc, err := agentproto.OpenUDPRelay(c, req)
	if err != nil {
		t.Fatalf("open relay to %s: %v", req.Target, err)
	}
	return fc
}

func udpEcho(t *testing.T) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, agentproto.MaxUDPDatagram)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort([]byte("echo:"+string(buf[:n])), from)
		}
	}()
	return pc
}

func TestUDPRelayRejectsTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, target, want string
	}{
		{"PrivateAddress", "10.1.2.3:53", "only loopback"},
		{"PublicAddress", "192.0.2.1:53", "only loopback"},
		{"Unspecified", "0.0.0.0:53", "only loopback"},
		{"Hostname", "localhost:53", "want a loopback ip:port"},
		{"NoPort", "127.0.0.1", "want a loopback ip:port"},
		{"PortZero", "127.0.0.1:0", "port 0"},
		{"MappedPrivate", "[::ffff:10.0.0.1]:53", "only loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := relayPair(t)
			_, err := agentproto.OpenUDPRelay(c, agentproto.UDPRelayRequest{Target: tc.target})
			if err == nil || !strings.Contains(err.Error(), "agent refused") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open relay: %v, want the agent's refusal containing %q", err, tc.want)
			}
			// The agent closes the stream after refusing.
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Fatalf("after refusal: read %v, want EOF", err)
			}
		})
	}
}

func TestUDPRelayEcho(t *testing.T) {
	t.Parallel()
	echo := udpEcho(t)
	c := relayPair(t)
	fc := openRelay(t, c, agentproto.UDPRelayRequest{Target: echo.LocalAddr().String()})
	big := strings.Repeat("x", 60000)
	for _, msg := range []string{"one", "", "two", big} {
		if _, err := fc.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, agentproto.MaxUDPDatagram)
		n, err := fc.Read(buf)
		if err != nil {
			t.Fatalf("read echo of %d bytes: %v", len(msg), err)
		}
		if got := string(buf[:n]); got != "echo:"+msg {
			t.Fatalf("echo of %d bytes: got %d bytes", len(msg), len(got))
		}
	}
	// A short read buffer truncates the datagram like a UDP socket and
	// keeps the framing intact.
	if _, err := fc.Write([]byte("truncated")); err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 4)
	if n, err := fc.Read(small); err != nil || string(small[:n]) != "echo" {
		t.Fatalf("short read: %q %v", small[:n], err)
	}
	if _, err := fc.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := fc.Read(buf); err != nil || string(buf[:n]) != "echo:after" {
		t.Fatalf("after truncation: %q %v", buf[:n], err)
	}
}

func TestUDPRelayIdleTimeout(t *testing.T) {
	t.Parallel()
	echo := udpEcho(t)
	c := relayPair(t)
	fc := openRelay(t, c, agentproto.UDPRelayRequest{Target: echo.LocalAddr().String(), IdleTimeout: 200 * time.Millisecond})
	if _, err := fc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := fc.Read(buf); err != nil || string(buf[:n]) != "echo:ping" {
		t.Fatalf("echo: %q %v", buf[:n], err)
	}
	// Without traffic the agent closes the stream (the deadline of
	// relayPair bounds the wait).
	if _, err := fc.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("idle relay: read %v, want EOF", err)
	}
}

func TestUDPRelayTargetNotListening(t *testing.T) {
	t.Parallel()
	// A target that is not listening yet answers with ICMP port
	// unreachable; the relay keeps running and reaches the server once
	// it is up.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	_ = pc.Close()
	c := relayPair(t)
	fc := openRelay(t, c, agentproto.UDPRelayRequest{Target: addr.String()})
	if _, err := fc.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	pc, err = net.ListenUDP("udp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	defer pc.Close()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			// "lost" may still arrive when the relay sent it after the
			// listen; wait for the first "found".
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				got <- err.Error()
				return
			}
			if string(buf[:n]) == "found" {
				_, _ = pc.WriteToUDPAddrPort([]byte("back"), from)
				got <- "found"
				return
			}
		}
	}()
	// Send until the server receives one (the first went nowhere).
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for received := false; !received; {
		if _, err := fc.Write([]byte("found")); err != nil {
			t.Fatal(err)
		}
		select {
		case msg := <-got:
			if msg != "found" {
				t.Fatalf("server received %q", msg)
			}
			received = true
		case <-tick.C:
		case <-deadline:
			t.Fatal("server never received a datagram through the relay")
		}
	}
	buf := make([]byte, 64)
	if n, err := fc.Read(buf); err != nil || string(buf[:n]) != "back" {
		t.Fatalf("answer: %q %v", buf[:n], err)
	}
}
