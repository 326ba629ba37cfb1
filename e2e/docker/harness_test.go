// Package docker_test runs Docker workspaces end to end: a real `coder server`
// process (PostgreSQL from dbtestutil, built-in provisioner daemons running real
// terraform with the Coder and Docker providers from the offline mirror), real
// containers on the machine's Docker daemon from coder-workspace-base:bookworm,
// the real agent inside them and the real CLI. The tests fail (never skip) when
// Docker or the base image is missing: run `make deps`.
package docker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// baseImage is the image scripts/workspace-image.sh builds.
const baseImage = "coder-workspace-base:bookworm"

// daemonPSK authenticates the external provisioner daemons of the tests.
const daemonPSK = "docker-e2e-psk"

// appsDomain is the wildcard domain of subdomain apps (chromium maps it to
// 127.0.0.1; Go clients set the Host header).
const appsDomain = "example.test"

var buildOnce struct {
	sync.Once
	dir, path string
	err       error
}

// coderBinary builds cmd/coder once per test binary, statically (it runs inside
// the containers as the agent, and on the host as server and CLI).
func coderBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "coder-docker-e2e-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.dir = dir
		buildOnce.path = filepath.Join(dir, "coder")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "../../cmd/coder")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("build coder: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildOnce.dir != "" {
		_ = os.RemoveAll(buildOnce.dir)
	}
	os.Exit(code)
}

// docker runs the docker CLI and returns its trimmed stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// requireDocker fails the test unless a Docker daemon answers and the base
// image exists.
func requireDocker(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatalf("docker CLI not found (run make deps): %v", err)
	}
	if _, err := docker(ctx, "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Fatalf("no Docker daemon answers (start it with scripts/dockerd.sh, or make deps): %v", err)
	}
	if _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", baseImage); err != nil {
		t.Fatalf("base image %s missing (run make deps: scripts/workspace-image.sh): %v", baseImage, err)
	}
}

// bridgeAddr returns the IPv4 address of the docker0 bridge.
func bridgeAddr(t testing.TB) string {
	t.Helper()
	ifi, err := net.InterfaceByName("docker0")
	if err != nil {
		t.Fatalf("docker0 bridge: %v", err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		t.Fatalf("docker0 addresses: %v", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatal("docker0 has no IPv4 address")
	return ""
}

// freePortOn returns a TCP port that is free on every one of hosts.
func freePortOn(t testing.TB, hosts ...string) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(hosts[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ok := true
		var others []net.Listener
		for _, h := range hosts[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			others = append(others, l)
		}
		for _, l := range others {
			_ = l.Close()
		}
		_ = ln.Close()
		if ok {
			return port
		}
	}
	t.Fatal("no port free on all of", hosts)
	return 0
}

// server is a running `coder server` process.
type server struct {
	t      testing.TB
	bin    string
	URL    *url.URL
	Client *codersdk.Client // the owner's
	Owner  coderdtest.FirstUser
	Port   int
	Config string // the server's --config-dir
	log    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deps are terraform, OpenTofu and the provider mirror from scripts/deps.sh.
func deps(t testing.TB) terraformtest.Deps {
	t.Helper()
	d := terraformtest.Find(t)
	for _, p := range []*string{&d.CacheDir, &d.Terraform, &d.Tofu, &d.CLIConfig} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			t.Fatal(err)
		}
		*p = abs
	}
	return d
}

// startServer runs `coder server` the way scripts/run.sh does for docker
// workspaces: listening on loopback and on the Docker bridge (same port), with
// a loopback access URL, a wildcard apps domain and STUN on the bridge. It
// creates the first user and stops the server at cleanup.
func startServer(t testing.TB) *server {
	t.Helper()
	bin := coderBinary(t)
	d := deps(t)
	bridge := bridgeAddr(t)
	port := freePortOn(t, "127.0.0.1", bridge)
	dbURL := dbtestutil.NewDB(t)
	cfgDir := t.TempDir()
	home := t.TempDir()
	log := &syncBuffer{}
	cmd := exec.Command(bin, "server",
		"--postgres-url", dbURL,
		"--http-address", fmt.Sprintf("127.0.0.1:%d,%s:%d", port, bridge, port),
		"--access-url", fmt.Sprintf("http://127.0.0.1:%d", port),
		"--wildcard-access-url", "*."+appsDomain,
		"--config-dir", cfgDir,
		"--provisioner-daemons", "3",
		"--derp-server-stun-addresses", bridge+":0",
		"--provisioner-daemon-psk", daemonPSK,
		"--terraform-path", d.Terraform,
		"--terraform-cli-config", d.CLIConfig,
		"--verbose",
	)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TMPDIR=" + os.TempDir(),
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start coder server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("coder server output (last 200 lines):\n%s", lastLines(log.String(), 200))
		}
	})
	u, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	client := codersdk.New(u)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.BuildInfo(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("coder server exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("coder server did not answer: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	owner := coderdtest.CreateFirstUser(t, client)
	return &server{t: t, bin: bin, URL: u, Client: client, Owner: owner, Port: port, Config: cfgDir, log: log}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cli is the coder CLI logged in as one user.
type cli struct {
	t      testing.TB
	bin    string
	env    []string
	Client *codersdk.Client
	User   string
}

func (s *server) cliFor(client *codersdk.Client, username string) *cli {
	home := s.t.TempDir()
	return &cli{t: s.t, bin: s.bin, Client: client, User: username, env: []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TMPDIR=" + os.TempDir(),
		"CODER_CONFIG_DIR=" + filepath.Join(home, "config"),
		"CODER_URL=" + s.URL.String(),
		"CODER_SESSION_TOKEN=" + client.SessionToken(),
	}}
}

// forTest returns a copy of c that reports failures to t (a subtest).
func (c *cli) forTest(t testing.TB) *cli {
	cc := *c
	cc.t = t
	return &cc
}

// run runs the CLI and returns stdout and stderr; it fails the test on a
// non-zero exit unless allowFail.
func (c *cli) run(ctx context.Context, stdin io.Reader, allowFail bool, args ...string) (string, string, error) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if err != nil && !allowFail {
		c.t.Fatalf("coder %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// must runs the CLI with a 10-minute bound and returns stdout.
func (c *cli) must(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, _, _ := c.run(ctx, nil, false, args...)
	return out
}

// ssh runs a shell command in the workspace over `coder ssh`.
func (c *cli) ssh(workspace, script string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The remote side runs the command line with the user's shell, as OpenSSH does.
	out, stderr, err := c.run(ctx, nil, true, "ssh", workspace, "--", script)
	if err != nil {
		return out, fmt.Errorf("coder ssh %s: %w (stderr: %s)", workspace, err, strings.TrimSpace(stderr))
	}
	return out, nil
}

// pushTemplate pushes dir as template name with the CLI.
func (c *cli) pushTemplate(name, dir string) {
	c.t.Helper()
	out := c.must("templates", "push", name, "-d", dir, "-y")
	if !strings.Contains(out, name) {
		c.t.Fatalf("templates push %s: %s", name, out)
	}
}

// dockerCleanup removes, at the end of the test, every container and volume
// labelled with a workspace ID the test created (a safety net: the tests
// delete their workspaces and check that this left nothing behind).
type dockerCleanup struct {
	mu  sync.Mutex
	ids []uuid.UUID
}

func newDockerCleanup(t testing.TB) *dockerCleanup {
	dc := &dockerCleanup{}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dc.mu.Lock()
		defer dc.mu.Unlock()
		for _, id := range dc.ids {
			filter := "label=coder.workspace_id=" + id.String()
			if out, err := docker(ctx, "ps", "-aq", "--filter", filter); err == nil && out != "" {
				t.Logf("removing leftover containers of workspace %s", id)
				_, _ = docker(ctx, append([]string{"rm", "-f"}, strings.Fields(out)...)...)
			}
			if out, err := docker(ctx, "volume", "ls", "-q", "--filter", filter); err == nil && out != "" {
				t.Logf("removing leftover volumes of workspace %s", id)
				_, _ = docker(ctx, append([]string{"volume", "rm", "-f"}, strings.Fields(out)...)...)
			}
		}
	})
	return dc
}

func (dc *dockerCleanup) add(id uuid.UUID) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	dc.ids = append(dc.ids, id)
}

// containersOf and volumesOf list the Docker objects of a workspace.
func containersOf(t testing.TB, id uuid.UUID) []string {
	t.Helper()
	out, err := docker(context.Background(), "ps", "-aq", "--filter", "label=coder.workspace_id="+id.String())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

func volumesOf(t testing.TB, id uuid.UUID) []string {
	t.Helper()
	out, err := docker(context.Background(), "volume", "ls", "-q", "--filter", "label=coder.workspace_id="+id.String())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// workspaceAgent returns the single agent of the workspace's latest build.
func workspaceAgent(ws codersdk.Workspace) (codersdk.WorkspaceAgent, bool) {
	for _, r := range ws.LatestBuild.Resources {
		for _, a := range r.Agents {
			return a, true
		}
	}
	return codersdk.WorkspaceAgent{}, false
}

// waitAgentReady waits until the workspace's agent is connected and its
// startup scripts are done (lifecycle ready) and returns the agent.
func waitAgentReady(t testing.TB, client *codersdk.Client, wsID uuid.UUID, logs func() string) codersdk.WorkspaceAgent {
	t.Helper()
	var agent codersdk.WorkspaceAgent
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ws, err := client.Workspace(context.Background(), wsID)
		if err != nil {
			t.Fatal(err)
		}
		a, ok := workspaceAgent(ws)
		if ok && a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady {
			return a
		}
		if ok && a.LifecycleState == codersdk.WorkspaceAgentLifecycleStartError {
			t.Fatalf("agent startup failed (lifecycle %s)\n%s", a.LifecycleState, logs())
		}
		agent = a
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready: status %q lifecycle %q\n%s", agent.Status, agent.LifecycleState, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// containerLogs returns the logs of the workspace's containers (the agent's
// output) for failure messages.
func containerLogs(id uuid.UUID) func() string {
	return func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := docker(ctx, "ps", "-aq", "--filter", "label=coder.workspace_id="+id.String())
		if err != nil || out == "" {
			return "(no container)"
		}
		var b strings.Builder
		for _, c := range strings.Fields(out) {
			cmd := exec.CommandContext(ctx, "docker", "logs", "--tail", "80", c)
			data, _ := cmd.CombinedOutput()
			fmt.Fprintf(&b, "container %s logs:\n%s\n", c, data)
		}
		return b.String()
	}
}

// buildJobOK fails unless the workspace's latest build succeeded.
func buildJobOK(t testing.TB, client *codersdk.Client, name string) codersdk.Workspace {
	t.Helper()
	owner, wsName, ok := strings.Cut(name, "/")
	if !ok {
		owner, wsName = "me", name
	}
	ws, err := client.WorkspaceByOwnerAndName(context.Background(), owner, wsName)
	if err != nil {
		t.Fatal(err)
	}
	if ws.LatestBuild.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("workspace %s build %s: %s", name, ws.LatestBuild.Job.Status, ws.LatestBuild.Job.Error)
	}
	return ws
}

// appGet fetches path through the apps proxy as client. host, when set, is
// the Host header (subdomain apps).
func appGet(ctx context.Context, s *server, client *codersdk.Client, host, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL.String()+path, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Coder-Session-Token", client.SessionToken())
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), nil
}

// decodeJSON decodes the JSON document in s into v.
func decodeJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}

// scanLines returns the non-empty lines of s.
func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// startDaemon runs an external `coder provisioner start` (e.g. with OpenTofu)
// with the deps' provider mirror until cleanup.
func (s *server) startDaemon(t testing.TB, name string, args ...string) {
	t.Helper()
	log := &syncBuffer{}
	args = append([]string{"provisioner", "start", "--url", s.URL.String(), "--psk", daemonPSK, "--name", name,
		"--terraform-cli-config", deps(t).CLIConfig}, args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "TMPDIR=" + os.TempDir()}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start provisioner daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("provisioner daemon %s output:\n%s", name, lastLines(log.String(), 100))
		}
	})
}
