package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wgmesh/coder/internal/hatest"
	"github.com/wgmesh/coder/natlab"
)

// labReplicaPort is where replica i answers on the NAT lab's internet
// (natlab.InternetAddr:labReplicaPort+i).
const labReplicaPort = 3001

// TestHANATLabUDPBlocked: the agent and the client sit on two NAT lab sites
// whose routers drop all UDP, so the only path between them is DERP over
// TCP. Each reaches "its" replica on the lab internet (the agent replica
// A, the client replica B; each replica's access URL, hence the relay its
// DERP map names, is its lab address), so the client's relay is B's and
// the agent's is A's: the session crosses the relay mesh. The replicas run
// on the host with HAProxy and one PostgreSQL as in the other HA tests;
// the lab reaches them through an HAProxy in the lab's internet namespace
// that forwards each lab address to a Unix socket the test bridges to the
// replica (the lab stays closed: no veth to the host). Without the mesh
// (replicas started without relay URLs) the session cannot come up, while
// the client pointed at replica A (the agent's relay) still connects.
func TestHANATLabUDPBlocked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mesh bool
	}{{"mesh", true}, {"no-mesh", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lab := natlab.New(t, natlab.Options{Sites: []natlab.NAT{natlab.NATUDPBlocked, natlab.NATUDPBlocked}})
			labURL := func(i int) string { return fmt.Sprintf("http://%s:%d", natlab.InternetAddr, labReplicaPort+i) }
			h := newHAEnvWith(t, hatest.Options{Replicas: 2, AccessURL: labURL, NoMesh: !tc.mesh})
			bridgeIntoLab(t, lab, h.cluster)
			e := h.reach
			agentID, token := e.addWorkspace("ws1")
			agentHome := t.TempDir()
			agent := labCommand(lab.Sites[0].Host, h.bin, "agent")
			agent.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + agentHome, "CODER_AGENT_URL=" + labURL(0),
				"CODER_AGENT_TOKEN=" + token, "CODER_AGENT_DATA_DIR=" + filepath.Join(agentHome, "data")}
			startLabProcess(t, agent, "agent")
			e.waitConnected(agentID)

			ssh := func(replica int, timeout time.Duration) (string, error) {
				e.pointCLI(labURL(replica))
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				cmd := labCommand(lab.Sites[1].Host, h.bin, "--global-config", e.cfgDir, "ssh", "ws1", "--", "echo", "over-derp")
				cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home}
				cmd.WaitDelay = 5 * time.Second
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			if tc.mesh {
				out, err := ssh(1, 3*time.Minute)
				if err != nil || !strings.Contains(out, "over-derp") {
					t.Fatalf("ssh via replica B across the mesh, UDP blocked: %v\n%s", err, out)
				}
				return
			}
			// A bound for the negative check, many times what the mesh
			// case takes.
			if out, err := ssh(1, 45*time.Second); err == nil || strings.Contains(out, "over-derp") {
				t.Fatalf("ssh via replica B without a mesh worked (%v): the test does not force the mesh path\n%s", err, out)
			}
			if out, err := ssh(0, 3*time.Minute); err != nil || !strings.Contains(out, "over-derp") {
				t.Fatalf("control: ssh via replica A (the agent's relay) without a mesh: %v\n%s", err, out)
			}
		})
	}
}

// labCommand runs name inside the lab namespace ns.
func labCommand(ns *natlab.Namespace, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// startLabProcess starts cmd and stops it (SIGTERM, then SIGKILL) when the
// test ends, logging its output if the test failed.
func startLabProcess(t *testing.T, cmd *exec.Cmd, what string) {
	t.Helper()
	var out lockedBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", what, out.String())
		}
	})
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// bridgeIntoLab makes replica i answer at natlab.InternetAddr:labReplicaPort+i
// inside the lab: an HAProxy in the internet namespace (TCP mode, so
// websockets and DERP pass untouched) forwards to a Unix socket per
// replica, which the test forwards to the replica's loopback address.
func bridgeIntoLab(t *testing.T, lab *natlab.Lab, c *hatest.Cluster) {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global\n\tmaxconn 4096\n\ndefaults\n\tmode tcp\n\ttimeout connect 5s\n\ttimeout client 1h\n\ttimeout server 1h\n\n")
	for i, r := range c.Replicas {
		sock := filepath.Join(dir, fmt.Sprintf("replica%d.sock", i))
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		target := strings.TrimPrefix(r.URL, "http://")
		var wg sync.WaitGroup
		t.Cleanup(func() {
			_ = ln.Close()
			wg.Wait()
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					forward(conn, target)
				}()
			}
		}()
		fmt.Fprintf(&cfg, "frontend replica%d\n\tbind %s:%d\n\tdefault_backend replica%d\n\nbackend replica%d\n\tserver r unix@%s\n\n",
			i, natlab.InternetAddr, labReplicaPort+i, i, i, sock)
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	startLabProcess(t, labCommand(lab.Internet, "haproxy", "-f", path, "-db"), "lab haproxy")
}

// forward copies between conn and a new TCP connection to target until
// either side closes; both are closed on return. A replica that stops
// (the test ends) closes its side, which ends the copies.
func forward(conn net.Conn, target string) {
	defer conn.Close()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // ends when either side closes
		done <- struct{}{}
	}
	go cp(up, conn)
	go cp(conn, up)
	<-done
}
