package docker_test

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// pushDockerTemplate writes examples/templates/docker with `coder templates
// init` and pushes it as template "docker".
func pushDockerTemplate(t *testing.T, c *cli) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "docker")
	c.must("templates", "init", "--id", "docker", dir)
	c.pushTemplate("docker", dir)
}

// createWorkspace runs `coder create` and registers the workspace for the
// Docker safety-net cleanup (also when the build fails).
func createWorkspace(t *testing.T, c *cli, dc *dockerCleanup, template, name string) codersdk.Workspace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, stderr, err := c.run(ctx, nil, true, "create", name, "-t", template, "-y")
	ws, getErr := c.Client.WorkspaceByOwnerAndName(context.Background(), codersdk.Me, name)
	if getErr == nil {
		dc.add(ws.ID)
	}
	if err != nil {
		t.Fatalf("coder create %s: %v\nstdout:\n%s\nstderr:\n%s", name, err, out, stderr)
	}
	if getErr != nil {
		t.Fatal(getErr)
	}
	if !strings.Contains(out, "has been created") {
		t.Fatalf("create output: %s", out)
	}
	return ws
}

// TestDockerWorkspaceLifecycle creates a workspace from examples/templates/docker
// and drives it through stop, start and delete, checking what exists in Docker
// and what the user sees over `coder ssh` at each step: the home volume
// persists across stop/start, the container does not, and delete removes both.
// It also checks the path of the mesh connection: direct over the Docker bridge,
// and through DERP when the container cannot send or receive UDP.
func TestDockerWorkspaceLifecycle(t *testing.T) {
	requireDocker(t)
	s := startServer(t)
	dc := newDockerCleanup(t)
	owner := s.cliFor(s.Client, s.Owner.Username)
	pushDockerTemplate(t, owner)

	ws := createWorkspace(t, owner, dc, "docker", "ws1")
	agent := waitAgentReady(t, s.Client, ws.ID, containerLogs(ws.ID))
	if agent.Architecture != "amd64" || agent.OperatingSystem != "linux" {
		t.Fatalf("agent platform %s/%s, want linux/amd64 (from data.coder_provisioner)", agent.OperatingSystem, agent.Architecture)
	}

	containers := containersOf(t, ws.ID)
	volumes := volumesOf(t, ws.ID)
	if len(containers) != 1 || len(volumes) != 1 {
		t.Fatalf("after create: containers %v volumes %v, want one of each", containers, volumes)
	}
	ctx := context.Background()
	user, err := docker(ctx, "inspect", "-f", "{{.Config.User}}", containers[0])
	if err != nil || user != "coder" {
		t.Fatalf("container user %q (%v), want coder", user, err)
	}
	ownerLabel, err := docker(ctx, "volume", "inspect", "-f", `{{index .Labels "coder.owner"}} {{index .Labels "coder.owner_id"}}`, volumes[0])
	if err != nil || ownerLabel != s.Owner.Username+" "+s.Owner.UserID {
		t.Fatalf("volume owner labels %q (%v), want %q", ownerLabel, err, s.Owner.Username+" "+s.Owner.UserID)
	}

	// In the workspace: the unprivileged coder user, the owner's git identity,
	// sudo inside the container, and a file in the home volume.
	out, err := owner.ssh("ws1", `id -un; id -u; echo "$HOME"; echo "$GIT_AUTHOR_NAME <$GIT_AUTHOR_EMAIL>"; sudo -n id -un; echo kept-across-restarts >~/marker; cat ~/marker`)
	if err != nil {
		t.Fatalf("%v\n%s", err, containerLogs(ws.ID)())
	}
	want := []string{"coder", "1000", "/home/coder", "The Owner <owner@coder.test>", "root", "kept-across-restarts"}
	if got := scanLines(out); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("ssh output %q, want %q", got, want)
	}

	// The agent is behind Docker's NAT, on the bridge: the path is direct.
	pingOut := owner.must("ping", "ws1", "-n", "20", "--interval", "500ms")
	direct := regexp.MustCompile(`direct connection established: direct (\d+\.\d+\.\d+\.\d+):\d+`).FindStringSubmatch(pingOut)
	if direct == nil {
		t.Fatalf("no direct path over the Docker bridge:\n%s", pingOut)
	}
	ip, err := docker(ctx, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", containers[0])
	if err != nil || ip != direct[1] {
		t.Fatalf("direct endpoint %s is not the container's bridge address %q (%v)", direct[1], ip, err)
	}

	// UDP blocked inside the container: a new connection is relayed by DERP
	// (over coderd's HTTP port) and still carries traffic.
	blockUDP(t, containers[0])
	pingCtx, cancelPing := context.WithTimeout(ctx, 3*time.Minute)
	pingOut, pingErr, err := owner.run(pingCtx, nil, true, "ping", "ws1", "-n", "4", "--interval", "500ms")
	cancelPing()
	if err != nil || !strings.Contains(pingOut, "via DERP(coder)") || !strings.Contains(pingOut, "no direct connection") {
		t.Fatalf("with UDP blocked, want a DERP-relayed path: %v\n%s%s\n%s", err, pingOut, pingErr, containerLogs(ws.ID)())
	}
	if out, err := owner.ssh("ws1", "cat ~/marker"); err != nil || strings.TrimSpace(out) != "kept-across-restarts" {
		t.Fatalf("ssh over DERP: %q %v", out, err)
	}

	// The dashboard's and coder show's resource kinds: the container runs
	// the agent and goes with a stop, the volume stays.
	if got, want := resourceKindsOf(t, s.Client, ws.ID), map[string]string{
		"docker_container.workspace": "computational ephemeral",
		"docker_volume.home_volume":  "peripheral persistent",
	}; !maps.Equal(got, want) {
		t.Fatalf("resource kinds while running: %v, want %v", got, want)
	}

	// Stop: the container goes, the home volume stays.
	owner.must("stop", "ws1", "-y")
	buildJobOK(t, s.Client, "ws1")
	if got, want := resourceKindsOf(t, s.Client, ws.ID), map[string]string{"docker_volume.home_volume": "peripheral persistent"}; !maps.Equal(got, want) {
		t.Fatalf("resource kinds after stop: %v, want %v", got, want)
	}
	if c := containersOf(t, ws.ID); len(c) != 0 {
		t.Fatalf("containers after stop: %v", c)
	}
	if v := volumesOf(t, ws.ID); len(v) != 1 || v[0] != volumes[0] {
		t.Fatalf("volumes after stop: %v, want %v", v, volumes)
	}

	// Start: a new container on the same home.
	owner.must("start", "ws1", "-y")
	waitAgentReady(t, s.Client, ws.ID, containerLogs(ws.ID))
	if c := containersOf(t, ws.ID); len(c) != 1 || c[0] == containers[0] {
		t.Fatalf("containers after start: %v (old %v)", c, containers)
	}
	out, err = owner.ssh("ws1", "cat ~/marker")
	if err != nil || strings.TrimSpace(out) != "kept-across-restarts" {
		t.Fatalf("home after restart: %q %v", out, err)
	}

	// Delete: nothing is left in Docker.
	owner.must("delete", "ws1", "-y")
	if c := containersOf(t, ws.ID); len(c) != 0 {
		t.Fatalf("containers after delete: %v", c)
	}
	if v := volumesOf(t, ws.ID); len(v) != 0 {
		t.Fatalf("volumes after delete: %v", v)
	}
}

// resourceKindsOf maps each visible resource of the workspace's latest
// build ("type.name") to its kind and lifetime.
func resourceKindsOf(t testing.TB, client *codersdk.Client, id uuid.UUID) map[string]string {
	t.Helper()
	ws, err := client.Workspace(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, res := range ws.LatestBuild.Resources {
		if !res.Hide {
			out[res.Type+"."+res.Name] = string(res.Kind) + " " + string(res.Lifetime)
		}
	}
	return out
}

// blockUDP drops every UDP packet in and out of the container's network
// namespace (the rules go away with the namespace).
func blockUDP(t *testing.T, container string) {
	t.Helper()
	pid, err := docker(context.Background(), "inspect", "-f", "{{.State.Pid}}", container)
	if err != nil {
		t.Fatal(err)
	}
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		cmd := exec.Command("nsenter", "--net=/proc/"+pid+"/ns/net", "iptables", "-I", chain, "-p", "udp", "-j", "DROP")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("block UDP in the container (%s): %v\n%s", chain, err, out)
		}
	}
}

// TestDockerWorkspaceIsolation runs two users' workspaces side by side and
// checks, from inside each, what it must not reach: the other's home (files,
// volume), the other's services on the bridge, the server's config directory,
// the Docker socket and the host's PostgreSQL; and that neither user can open
// a session to the other's workspace.
func TestDockerWorkspaceIsolation(t *testing.T) {
	requireDocker(t)
	s := startServer(t)
	dc := newDockerCleanup(t)
	owner := s.cliFor(s.Client, s.Owner.Username)
	pushDockerTemplate(t, owner)
	memberClient, member := coderdtest.CreateAnotherUser(t, s.Client)
	alice := owner
	bob := s.cliFor(memberClient, member.Username)

	wsA := createWorkspace(t, alice, dc, "docker", "alice-ws")
	wsB := createWorkspace(t, bob, dc, "docker", "bob-ws")
	waitAgentReady(t, s.Client, wsA.ID, containerLogs(wsA.ID))
	waitAgentReady(t, memberClient, wsB.ID, containerLogs(wsB.ID))

	secret := "secret-" + uuid.NewString()
	if _, err := alice.ssh("alice-ws", fmt.Sprintf(`echo %s >~/secret.txt && chmod 600 ~/secret.txt`, secret)); err != nil {
		t.Fatal(err)
	}
	// code-server listens in alice's container; wait until it does, so that a
	// refused connection below means isolation, not a slow start.
	if _, err := alice.ssh("alice-ws", `for i in $(seq 1 600); do curl -fsS -o /dev/null http://127.0.0.1:13337/healthz && exit 0; sleep 0.1; done; exit 1`); err != nil {
		t.Fatalf("code-server in alice's workspace: %v", err)
	}
	ctx := context.Background()
	contA := containersOf(t, wsA.ID)
	volA := volumesOf(t, wsA.ID)
	if len(contA) != 1 || len(volA) != 1 {
		t.Fatalf("alice's workspace: containers %v volumes %v", contA, volA)
	}
	ipA, err := docker(ctx, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", contA[0])
	if err != nil || ipA == "" {
		t.Fatalf("alice's container address %q: %v", ipA, err)
	}

	// From bob's workspace, as coder and as root (sudo works in the container).
	probe := fmt.Sprintf(`
		found=$(sudo -n grep -rlsI %[1]q / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null | head -n1)
		echo "grep:${found:-none}"
		test -e %[2]q && echo "config:visible" || echo "config:absent"
		test -e /var/run/docker.sock && echo "docker:visible" || echo "docker:absent"
		sudo -n test -e /var/lib/docker/volumes/%[3]s && echo "volume:visible" || echo "volume:absent"
		curl -s -m 5 -o /dev/null http://%[4]s:13337/healthz && echo "peer-code-server:reachable" || echo "peer-code-server:unreachable"
		(exec 3<>/dev/tcp/host.docker.internal/5432) 2>/dev/null && echo "postgres:reachable" || echo "postgres:unreachable"
	`, secret, s.Config, volA[0], ipA)
	out, err := bob.ssh("bob-ws", probe)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"grep:none", "config:absent", "docker:absent", "volume:absent", "peer-code-server:unreachable", "postgres:unreachable"}
	if got := scanLines(out); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("from bob's workspace: %q, want %q", got, want)
	}

	// The same search finds the file in alice's own workspace: the probe works.
	out, err = alice.ssh("alice-ws", fmt.Sprintf(`sudo -n grep -rlsI %q / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev | head -n1`, secret))
	if err != nil || strings.TrimSpace(out) != "/home/coder/secret.txt" {
		t.Fatalf("control: the search in alice's workspace found %q (%v)", out, err)
	}

	// The mesh: a member may not open a session to another user's workspace.
	if out, err := bob.ssh(s.Owner.Username+"/alice-ws", "cat ~/secret.txt"); err == nil || strings.Contains(out, secret) {
		t.Fatalf("%s reached alice's workspace: %q %v", bob.User, out, err)
	}

	// alice's file is where it belongs, readable by her only.
	out, err = alice.ssh("alice-ws", `cat ~/secret.txt; stat -c %U:%a ~/secret.txt`)
	if err != nil || strings.Join(scanLines(out), "|") != secret+"|coder:600" {
		t.Fatalf("alice's secret: %q %v", out, err)
	}

	for _, c := range []*cli{alice, bob} {
		name := "alice-ws"
		if c == bob {
			name = "bob-ws"
		}
		c.must("delete", name, "-y")
	}
	for _, id := range []uuid.UUID{wsA.ID, wsB.ID} {
		if c, v := containersOf(t, id), volumesOf(t, id); len(c) != 0 || len(v) != 0 {
			t.Fatalf("after delete: containers %v volumes %v", c, v)
		}
	}
}

// TestDockerWorkspaceMetadata checks that the template's metadata items (from
// `coder stat` and /proc inside the container) arrive at coderd with values
// in the expected shape and no errors.
func TestDockerWorkspaceMetadata(t *testing.T) {
	requireDocker(t)
	s := startServer(t)
	dc := newDockerCleanup(t)
	owner := s.cliFor(s.Client, s.Owner.Username)
	pushDockerTemplate(t, owner)
	ws := createWorkspace(t, owner, dc, "docker", "meta")
	agent := waitAgentReady(t, s.Client, ws.ID, containerLogs(ws.ID))

	cores := `^\d+(\.\d+)?/\d+(\.\d+)? cores \(\d+%\)$`
	gib := `^\d+(\.\d+)?/\d+(\.\d+)? GiB \(\d+%\)$`
	want := map[string]string{
		"0_cpu_usage":      cores,
		"1_ram_usage":      gib,
		"3_home_disk":      gib,
		"4_cpu_usage_host": cores,
		"5_mem_usage_host": gib,
		"6_load_host":      `^\d+\.\d\d$`,
	}
	var last []codersdk.WorkspaceAgentMetadata
	waitFor(t, 2*time.Minute, "every metadata item collected", func() (bool, error) {
		md, err := s.Client.WorkspaceAgentMetadata(context.Background(), agent.ID)
		if err != nil {
			return false, err
		}
		last = md
		done := 0
		for _, m := range md {
			if _, ok := want[m.Description.Key]; ok && m.Result.CollectedAt != nil {
				done++
			}
		}
		return done == len(want), nil
	})
	for _, m := range last {
		re, ok := want[m.Description.Key]
		if !ok {
			continue
		}
		if m.Result.Error != "" || !regexp.MustCompile(re).MatchString(m.Result.Value) {
			t.Errorf("metadata %s = %q (error %q), want %s", m.Description.Key, m.Result.Value, m.Result.Error, re)
		}
	}
	owner.must("delete", "meta", "-y")
}
