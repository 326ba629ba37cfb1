// Package hatest runs a high-availability deployment for tests: N `coder
// server` processes (the built binary, so one can be killed with SIGKILL)
// on one PostgreSQL database, behind a real HAProxy that checks /healthz
// and passes websockets. The load balancer's URL is the access URL.
// Everything it starts stops in t.Cleanup.
package hatest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configures Start.
type Options struct {
	// Binary is the built coder binary. Required.
	Binary string
	// PostgresURL is the shared database. Required.
	PostgresURL string
	// Replicas is how many servers to start (default 3).
	Replicas int
	// Env is added to every server's environment.
	Env []string
	// Args are added to every server's command line.
	Args []string
	// ReplicaArgs, when set, returns more arguments for replica i (after
	// Args), e.g. built-in provisioner daemons on one replica only.
	ReplicaArgs func(i int) []string
	// OwnAccessURL makes each replica's access URL its own address
	// instead of the load balancer's. Its DERP map then names its own
	// relay, so a peer pinned to replica A homes on A's relay and one
	// pinned to B on B's: relayed traffic between them must cross the mesh.
	OwnAccessURL bool
	// AccessURL, when set, returns replica i's access URL (overriding
	// OwnAccessURL), e.g. an address of a NAT lab that forwards to it.
	AccessURL func(i int) string
	// NoMesh starts the replicas without --derp-server-relay-url, so their
	// relays do not mesh (the negative case of the mesh tests).
	NoMesh bool
}

// Cluster is a running deployment.
type Cluster struct {
	// URL is the load balancer's URL (the access URL).
	URL      string
	Replicas []*Replica
	t        testing.TB
}

// Replica is one coder server process.
type Replica struct {
	// URL is the replica's own address (also its relay URL).
	URL  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start starts the replicas and HAProxy in front of them and waits until
// the load balancer answers /healthz.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Replicas <= 0 {
		opts.Replicas = 3
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy not found (scripts/deps.sh installs the Debian package): %v", err)
	}
	lbPort := FreePort(t)
	c := &Cluster{URL: fmt.Sprintf("http://127.0.0.1:%d", lbPort), t: t}
	dir := t.TempDir()
	// Every replica must decrypt the Terraform state the others wrote.
	stateKey := strings.Repeat("ab", 32)
	for i := range opts.Replicas {
		port := FreePort(t)
		r := &Replica{URL: fmt.Sprintf("http://127.0.0.1:%d", port), out: &lockedBuffer{}, done: make(chan struct{})}
		home := filepath.Join(dir, "replica"+strconv.Itoa(i))
		if err := os.MkdirAll(home, 0o700); err != nil {
			t.Fatal(err)
		}
		access, relay := c.URL, r.URL
		if opts.OwnAccessURL {
			access = r.URL
		}
		if opts.AccessURL != nil {
			access = opts.AccessURL(i)
		}
		if opts.NoMesh {
			relay = ""
		}
		r.cmd = exec.Command(opts.Binary, "server",
			"--http-address", fmt.Sprintf("127.0.0.1:%d", port),
			"--access-url", access,
			"--postgres-url", opts.PostgresURL,
			"--derp-server-relay-url", relay,
			"--derp-server-stun-addresses", "",
			"--provisioner-daemons", "0",
			"--config-dir", filepath.Join(home, "config"),
		)
		r.cmd.Args = append(r.cmd.Args, opts.Args...)
		if opts.ReplicaArgs != nil {
			r.cmd.Args = append(r.cmd.Args, opts.ReplicaArgs(i)...)
		}
		r.cmd.Env = append([]string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + os.TempDir(),
			"CODER_STATE_ENCRYPTION_KEY=" + stateKey}, opts.Env...)
		if err := r.start(); err != nil {
			t.Fatalf("start replica %d: %v", i, err)
		}
		t.Cleanup(func() {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.done:
			case <-time.After(20 * time.Second):
				_ = r.cmd.Process.Kill()
				<-r.done
			}
			if t.Failed() {
				t.Logf("replica %s output:\n%s", r.URL, r.out.String())
			}
		})
		c.Replicas = append(c.Replicas, r)
	}
	for _, r := range c.Replicas {
		if err := awaitHealthy(r.URL, 2*time.Minute, r.done); err != nil {
			t.Fatalf("replica %s: %v\n%s", r.URL, err, r.out.String())
		}
	}

	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(Config(lbPort, c.replicaAddrs())), 0o600); err != nil {
		t.Fatal(err)
	}
	var lbOut lockedBuffer
	lb := exec.Command(haproxy, "-f", cfg, "-db")
	lb.Stdout, lb.Stderr = &lbOut, &lbOut
	if err := lb.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	lbDone := make(chan struct{})
	go func() {
		_ = lb.Wait()
		close(lbDone)
	}()
	t.Cleanup(func() {
		_ = lb.Process.Kill()
		<-lbDone
		if t.Failed() {
			t.Logf("haproxy output:\n%s", lbOut.String())
		}
	})
	if err := awaitHealthy(c.URL, time.Minute, lbDone); err != nil {
		t.Fatalf("load balancer: %v\n%s", err, lbOut.String())
	}
	return c
}

func (c *Cluster) replicaAddrs() []string {
	var out []string
	for _, r := range c.Replicas {
		out = append(out, strings.TrimPrefix(r.URL, "http://"))
	}
	return out
}

// Config is an HAProxy configuration balancing port over the servers
// (host:port): HTTP mode (websocket upgrades pass), /healthz checks every
// 500 ms (a server is out after 2 failures), long tunnel timeouts for
// websockets and DERP. scripts/ha.sh writes the same.
func Config(port int, servers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
	maxconn 4096

defaults
	mode http
	timeout connect 5s
	timeout client 1h
	timeout server 1h
	timeout tunnel 1h
	timeout http-request 30s
	option redispatch
	retries 2

frontend coder
	bind 127.0.0.1:%d
	default_backend replicas

backend replicas
	balance roundrobin
	option httpchk GET /healthz
	http-check expect status 200
	default-server check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
`, port)
	for i, s := range servers {
		fmt.Fprintf(&b, "\tserver replica%d %s\n", i, s)
	}
	return b.String()
}

// awaitHealthy polls u/healthz until it answers 200 OK or exited closes.
func awaitHealthy(u string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/healthz", nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("healthz: %s", res.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %w", last)
		case <-exited:
			return fmt.Errorf("exited before it was healthy (last: %v)", last)
		case <-t.C:
		}
	}
}

// Kill kills the replica with SIGKILL and waits for it to exit.
func (r *Replica) Kill(t testing.TB) { r.Stop(t, syscall.SIGKILL) }

// Stop sends sig to the replica and waits for it to exit.
func (r *Replica) Stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal replica: %v", err)
	}
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatalf("replica %s did not exit after %v", r.URL, sig)
	}
}

// Signal sends sig to the replica without waiting for it to exit.
func (r *Replica) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal replica: %v", err)
	}
}

// Done is closed when the replica's process has exited.
func (r *Replica) Done() <-chan struct{} { return r.done }

// start runs r.cmd (a fresh copy of it, so a stopped replica can start
// again) and watches for its exit.
func (r *Replica) start() error {
	cmd := exec.Command(r.cmd.Path, r.cmd.Args[1:]...)
	cmd.Env = r.cmd.Env
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	r.cmd, r.done = cmd, done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

// Restart starts a stopped replica again with the same command line (a new
// replica ID, the same address) and waits until it answers /healthz.
func (r *Replica) Restart(t testing.TB) {
	t.Helper()
	select {
	case <-r.done:
	default:
		t.Fatalf("replica %s still runs", r.URL)
	}
	if err := r.start(); err != nil {
		t.Fatalf("restart replica %s: %v", r.URL, err)
	}
	if err := awaitHealthy(r.URL, 2*time.Minute, r.done); err != nil {
		t.Fatalf("replica %s after restart: %v\n%s", r.URL, err, r.out.String())
	}
}

// Output returns what the replica logged so far.
func (r *Replica) Output() string { return r.out.String() }
