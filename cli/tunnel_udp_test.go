package cli_test

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// udpEchoServer answers each datagram with "<payload>|<source address>" so
// tests see which relay socket in the workspace a datagram came from.
func udpEchoServer(t *testing.T, pc *net.UDPConn) int {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort([]byte(string(buf[:n])+"|"+from.String()), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func listenUDP(port int) (*net.UDPConn, error) {
	return net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
}

// udpPortPair returns two open sockets on adjacent UDP ports of 127.0.0.1.
func udpPortPair(t *testing.T) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	for range 100 {
		a, err := listenUDP(0)
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		if port < 65535 {
			if b, err := listenUDP(port + 1); err == nil {
				return a, b
			}
		}
		_ = a.Close()
	}
	t.Fatal("no two adjacent free UDP ports")
	return nil, nil
}

// freeUDPPorts returns the first of two adjacent UDP ports free right now.
func freeUDPPorts(t *testing.T) int {
	t.Helper()
	a, b := udpPortPair(t)
	port := a.LocalAddr().(*net.UDPAddr).Port
	_ = a.Close()
	_ = b.Close()
	return port
}

// udpExchange sends msg from c (connected to a tunnel's local port) until
// an answer to it arrives, and returns the workspace-side source address
// the echo server saw. Datagrams may be retried, so stale answers to
// earlier messages are skipped.
func udpExchange(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatalf("send %q: %v", msg, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Logf("no answer to %.20q yet; resending", msg)
					break
				}
				t.Fatalf("read answer to %q: %v", msg, err)
			}
			payload, from, ok := strings.Cut(string(buf[:n]), "|")
			if !ok {
				t.Fatalf("malformed answer %q", buf[:n])
			}
			if payload == msg {
				return from
			}
		}
	}
	t.Fatalf("no answer to %q through the tunnel", msg)
	return ""
}

func dialUDP(t *testing.T, port int) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestTunnelUDP forwards UDP through `coder tunnel --udp` to an echo server
// in the workspace, with real sockets, against a real coderd, PostgreSQL
// and agent.
func TestTunnelUDP(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token)
	e.waitConnected(agentID)

	t.Run("SessionsPerSource", func(t *testing.T) {
		pc, err := listenUDP(0)
		if err != nil {
			t.Fatal(err)
		}
		svc := udpEchoServer(t, pc)
		local := freeUDPPorts(t)
		lines, stop := startCLI(t, e.env, "tunnel", "ws1", "--udp", "127.0.0.1:"+strconv.Itoa(local)+":"+strconv.Itoa(svc))
		waitLine(t, lines, "Ready")
		a, b := dialUDP(t, local), dialUDP(t, local)
		if a.LocalAddr().String() == b.LocalAddr().String() {
			t.Fatalf("clients share a source address %s", a.LocalAddr())
		}
		fromA := udpExchange(t, a, "a1")
		fromB := udpExchange(t, b, "b1")
		if fromA == fromB {
			t.Fatalf("two local sources share one relay socket in the workspace (%s)", fromA)
		}
		for _, src := range []string{fromA, fromB} {
			ap, err := netip.ParseAddrPort(src)
			if err != nil || !ap.Addr().Unmap().IsLoopback() {
				t.Fatalf("echo server saw source %q, want a loopback address: %v", src, err)
			}
		}
		// Each source keeps its session and gets only its own answers.
		for i := 2; i <= 4; i++ {
			if got := udpExchange(t, a, "a"+strconv.Itoa(i)); got != fromA {
				t.Fatalf("source a moved from %s to %s", fromA, got)
			}
			if got := udpExchange(t, b, "b"+strconv.Itoa(i)); got != fromB {
				t.Fatalf("source b moved from %s to %s", fromB, got)
			}
		}
		big := strings.Repeat("z", 8000)
		if got := udpExchange(t, a, big); got != fromA {
			t.Fatalf("large datagram went through %s, want %s", got, fromA)
		}
		if res := stop(); res.code != 0 || !strings.Contains(res.stdout, "Forwarding udp 127.0.0.1:"+strconv.Itoa(local)+" -> ws1:127.0.0.1:"+strconv.Itoa(svc)) {
			t.Fatalf("tunnel: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("RangeWithTCP", func(t *testing.T) {
		pa, pb := udpPortPair(t)
		svc := udpEchoServer(t, pa)
		udpEchoServer(t, pb)
		tcpSvc := echoServer(t)
		tcpLocal := freePort(t)
		lo := freeUDPPorts(t)
		spec := strconv.Itoa(lo) + "-" + strconv.Itoa(lo+1) + ":" + strconv.Itoa(svc) + "-" + strconv.Itoa(svc+1)
		lines, stop := startCLI(t, e.env, "port-forward", "ws1", "--udp", spec, "--tcp", strconv.Itoa(tcpLocal)+":"+strconv.Itoa(tcpSvc), "--udp-idle-timeout", "30s")
		waitLine(t, lines, "Ready")
		for i := range 2 {
			c := dialUDP(t, lo+i)
			udpExchange(t, c, "range "+strconv.Itoa(i))
		}
		echoRoundTrip(t, "127.0.0.1:"+strconv.Itoa(tcpLocal), "tcp next to udp")
		res := stop()
		for i := range 2 {
			want := "Forwarding udp 127.0.0.1:" + strconv.Itoa(lo+i) + " -> ws1:127.0.0.1:" + strconv.Itoa(svc+i)
			if !strings.Contains(res.stdout, want) {
				t.Fatalf("stdout lacks %q: %q", want, res.stdout)
			}
		}
	})

	t.Run("BusyPort", func(t *testing.T) {
		pc, err := listenUDP(0)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		port := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		res := runCLI(t, e.env, nil, "tunnel", "ws1", "--udp", port+":53")
		if res.code != 1 || !strings.Contains(res.stderr, "local UDP port 127.0.0.1:"+port+" is already in use") {
			t.Fatalf("busy port: exit %d stderr %q", res.code, res.stderr)
		}
	})

	t.Run("BadIdleTimeout", func(t *testing.T) {
		res := runCLI(t, e.env, nil, "tunnel", "ws1", "--udp", "5353:53", "--udp-idle-timeout", "0s")
		if res.code == 0 || !strings.Contains(res.stderr, "--udp-idle-timeout") {
			t.Fatalf("bad idle timeout: exit %d stderr %q", res.code, res.stderr)
		}
	})
}
