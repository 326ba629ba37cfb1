package natlab_test

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wgmesh/coder/natlab"
)

func TestMain(m *testing.M) {
	if natlab.IsNode() {
		os.Exit(natlab.Main(roles()))
	}
	os.Exit(m.Run())
}

// roles are every role a node of these tests can run.
func roles() map[string]natlab.Role {
	r := natlab.ProbeRoles()
	maps.Copy(r, meshRoles())
	return r
}

func callCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestNATBehaviour proves each NAT kind behaves as claimed, with plain UDP
// and TCP sockets: a probe server in the internet namespace reports the
// public address it sees.
func TestNATBehaviour(t *testing.T) {
	lab := natlab.New(t, natlab.Options{Sites: []natlab.NAT{
		natlab.NATEasy, natlab.NATEasyAF, natlab.NATHard, natlab.NATUDPBlocked,
	}})
	natlab.StartTestNode(t, lab.Internet, natlab.NodeOptions{Role: natlab.RoleProbeServer})
	dst1 := netip.AddrPortFrom(natlab.InternetAddr, natlab.ProbePort).String()
	dst2 := netip.AddrPortFrom(natlab.InternetAltAddr, natlab.ProbePort).String()

	tests := []struct {
		nat natlab.NAT
		// udp: whether UDP gets through at all
		udp bool
		// samePort: both destinations see the same public port
		samePort bool
		// preserved: the public port is the host's own port
		preserved bool
		// altIn: an answer from another port of a contacted address gets in
		altIn bool
	}{
		{nat: natlab.NATEasy, udp: true, samePort: true, preserved: true, altIn: false},
		{nat: natlab.NATEasyAF, udp: true, samePort: true, preserved: true, altIn: true},
		{nat: natlab.NATHard, udp: true, samePort: false, preserved: false, altIn: false},
		{nat: natlab.NATUDPBlocked, udp: false},
	}
	for i, tt := range tests {
		site := lab.Sites[i]
		if site.NAT != tt.nat {
			t.Fatalf("site %d is %s, table says %s", i, site.NAT, tt.nat)
		}
		t.Run(string(tt.nat), func(t *testing.T) {
			client := natlab.StartTestNode(t, site.Host, natlab.NodeOptions{Role: natlab.RoleProbeClient})

			var tcp natlab.ProbeTCPResult
			if err := client.Call(callCtx(t, 20*time.Second), &tcp, "tcp", dst1); err != nil {
				t.Fatalf("TCP through the NAT: %v", err)
			}
			if !tcp.Echoed {
				t.Errorf("TCP echo came back wrong")
			}
			if got := netip.MustParseAddrPort(tcp.Mapped).Addr(); got != site.WANAddr {
				t.Errorf("TCP seen from %s, want the router's WAN address %s", got, site.WANAddr)
			}

			if !tt.udp {
				var res natlab.ProbeUDPResult
				// A negative result needs a deadline: probes are resent
				// every 200 ms for 3 s and none may be answered.
				if err := client.Call(callCtx(t, 3*time.Second), &res, "udp", dst1, dst2); err != nil {
					t.Fatal(err)
				}
				if len(res.Mapped) != 0 {
					t.Fatalf("UDP got through a UDP-blocking router: %v", res.Mapped)
				}
				return
			}

			var res natlab.ProbeUDPResult
			if err := client.Call(callCtx(t, 20*time.Second), &res, "udp", dst1, dst2); err != nil {
				t.Fatal(err)
			}
			if len(res.Missing) > 0 {
				t.Fatalf("no UDP answer from %v", res.Missing)
			}
			m1 := netip.MustParseAddrPort(res.Mapped[dst1])
			m2 := netip.MustParseAddrPort(res.Mapped[dst2])
			local := netip.MustParseAddrPort(res.Local)
			t.Logf("local port %d, seen by %s as %s, by %s as %s", local.Port(), dst1, m1, dst2, m2)
			for _, m := range []netip.AddrPort{m1, m2} {
				if m.Addr() != site.WANAddr {
					t.Errorf("UDP seen from %s, want the router's WAN address %s", m.Addr(), site.WANAddr)
				}
			}
			if got := m1.Port() == m2.Port(); got != tt.samePort {
				t.Errorf("same public port for both destinations = %v, want %v (%s vs %s)", got, tt.samePort, m1, m2)
			}
			if got := m1.Port() == local.Port(); got != tt.preserved {
				t.Errorf("public port is the host's port = %v, want %v (%d vs %d)", got, tt.preserved, m1.Port(), local.Port())
			}

			if _, err := site.Rebind(callCtx(t, 10*time.Second)); (err == nil) != (tt.nat == natlab.NATEasy) {
				t.Errorf("rebind on a %s site: err = %v", tt.nat, err)
			}

			var alt natlab.ProbeAltResult
			if err := client.Call(callCtx(t, 20*time.Second), &alt, "alt", dst1); err != nil {
				t.Fatal(err)
			}
			if alt.AltReceived != tt.altIn {
				t.Errorf("answer from another port of %s let in = %v, want %v", natlab.InternetAddr, alt.AltReceived, tt.altIn)
			}
		})
	}
}

// TestNATRebind proves Site.Rebind moves an easy NAT's public UDP port for
// the same host socket, while the mapping stays endpoint-independent.
func TestNATRebind(t *testing.T) {
	lab := natlab.New(t, natlab.Options{Sites: []natlab.NAT{natlab.NATEasy}})
	site := lab.Sites[0]
	natlab.StartTestNode(t, lab.Internet, natlab.NodeOptions{Role: natlab.RoleProbeServer})
	client := natlab.StartTestNode(t, site.Host, natlab.NodeOptions{Role: natlab.RoleProbeClient})
	dst1 := netip.AddrPortFrom(natlab.InternetAddr, natlab.ProbePort).String()
	dst2 := netip.AddrPortFrom(natlab.InternetAltAddr, natlab.ProbePort).String()

	probe := func() (uint16, uint16) {
		t.Helper()
		var res natlab.ProbeUDPResult
		if err := client.Call(callCtx(t, 20*time.Second), &res, "udp", dst1, dst2); err != nil {
			t.Fatal(err)
		}
		if len(res.Missing) > 0 {
			t.Fatalf("no UDP answer from %v", res.Missing)
		}
		return netip.MustParseAddrPort(res.Mapped[dst1]).Port(), netip.MustParseAddrPort(res.Mapped[dst2]).Port()
	}
	before, _ := probe()
	seen := map[uint16]bool{before: true}
	for i := range 2 {
		port, err := site.Rebind(callCtx(t, 20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		p1, p2 := probe()
		t.Logf("rebind %d: public port %d → %d / %d", i+1, before, p1, p2)
		if p1 != port || p2 != port {
			t.Errorf("after rebind %d public ports are %d and %d, want %d for both", i+1, p1, p2, port)
		}
		if seen[p1] {
			t.Errorf("rebind %d did not change the public port (%d)", i+1, p1)
		}
		seen[p1] = true
	}
}

// TestSweep proves stale lab namespaces of dead processes are removed while
// live labs stay.
func TestSweep(t *testing.T) {
	if err := natlab.Check(); err != nil {
		natlab.New(t, natlab.Options{}) // fails or skips with the reason
	}
	ctx := callCtx(t, 30*time.Second)
	live := natlab.New(t, natlab.Options{Sites: []natlab.NAT{natlab.NATEasy}})

	// A pid that is certainly dead: a process we started and waited for.
	dead := deadPID(t)
	stale := fmt.Sprintf("nlt%d-abcdef-inet", dead)
	if out, err := runCmd(ctx, "ip", "netns", "add", stale); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = runCmd(context.Background(), "ip", "netns", "del", stale) })

	if err := natlab.Sweep(ctx, nil); err != nil {
		t.Fatal(err)
	}
	names, err := natlab.ListNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	if have[stale] {
		t.Errorf("stale namespace %s survived the sweep", stale)
	}
	for _, ns := range live.Namespaces() {
		if !have[ns.Name] {
			t.Errorf("live namespace %s was swept", ns.Name)
		}
	}
}

func deadPID(t *testing.T) int {
	t.Helper()
	cmd := execCommand("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Fatalf("pid %d still exists", pid)
	}
	return pid
}
