package cli_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database/embeddedpg"
)

// TestHAPostgresRestart: the PostgreSQL under 3 replicas (a private
// cluster this test owns, never the shared one) is killed, stays down for
// longer than the provisioner heartbeat timeout, and is restarted, while a
// build runs on replica 0's built-in provisioner and an SSH session
// streams. The replicas recover without a restart of their own (the same
// processes answer /healthz again), the build finishes successfully with
// every log line it wrote before and after the outage, the established SSH
// session keeps streaming and a new `coder ssh` through the load balancer
// works.
func TestHAPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	// Durable (no NoSync): the crash must not lose committed rows.
	cluster, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: filepath.Join(dir, "pg")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })

	h := newHABuildEnv(t, cluster.URL())
	e := h.reach
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token) // through the load balancer
	e.waitConnected(agentID)
	lines, _ := startCLI(t, e.env, "ssh", "ws1", "--", "sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.1; done")
	waitLine(t, lines, "tick")
	ws := h.startGatedBuild(t, "across-restart")

	// The outage outlasts the heartbeat timeout (3 s here): no daemon can
	// heartbeat while the database is down, and that must not fail the
	// build once it is back.
	pid, err := cluster.PostmasterPID()
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.cluster.Replicas {
		waitFor(t, time.Minute, "replica reports the database unreachable", func() (bool, error) {
			res, err := http.Get(r.URL + "/healthz")
			if err != nil {
				return false, nil
			}
			res.Body.Close()
			return res.StatusCode == http.StatusServiceUnavailable, nil
		})
	}
	time.Sleep(time.Until(killed.Add(2 * haBuildHeartbeatTimeout))) // sets up the long outage; asserts nothing
	// Restarted (crash recovery) on the same port, so the URL the
	// replicas have stays valid.
	again, err := embeddedpg.Start(ctx, embeddedpg.Options{DataDir: filepath.Join(dir, "pg"), Port: cluster.Port()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Stop(context.Background()) })
	if again.URL() != cluster.URL() {
		t.Fatalf("restarted on %s, was %s", again.URL(), cluster.URL())
	}
	restartedAt := time.Now()
	// The test's own pool drops its dead connections (the replicas have
	// nothing of the kind: they recover on their own).
	h.pool.Pool().Reset()
	// Every replica, the same process as before, is healthy again.
	for i, r := range h.cluster.Replicas {
		waitFor(t, 2*time.Minute, "replica healthy after the restart", func() (bool, error) {
			select {
			case <-r.Done():
				t.Fatalf("replica %d exited:\n%s", i, r.Output())
			default:
			}
			res, err := http.Get(r.URL + "/healthz")
			if err != nil {
				return false, nil
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK, nil
		})
	}
	t.Logf("outage %s; all replicas healthy %s after PostgreSQL was back", restartedAt.Sub(killed).Round(10*time.Millisecond), time.Since(restartedAt).Round(10*time.Millisecond))

	// The established session never stopped.
	for drained := false; !drained; {
		select {
		case <-lines:
		default:
			drained = true
		}
	}
	waitLine(t, lines, "tick")
	// A new session through the load balancer.
	waitFor(t, 2*time.Minute, "a new coder ssh after the restart", func() (bool, error) {
		res := runCLI(t, e.env, nil, "ssh", "ws1", "--", "echo", "after-restart")
		return res.code == 0 && strings.TrimSpace(res.stdout) == "after-restart", nil
	})

	// The build that ran across the restart completes, logs intact.
	if err := os.WriteFile(h.gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the build across the restart", func() (bool, error) {
		b, err := e.client.WorkspaceBuild(ctx, ws.LatestBuild.ID)
		return err == nil && !b.Job.Status.Active(), nil
	})
	b, err := e.client.WorkspaceBuild(ctx, ws.LatestBuild.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("build across the restart: %s %q", b.Job.Status, b.Job.Error)
	}
	for _, want := range []string{"build-waiting", "build-released"} {
		awaitBuildLog(t, e.client, b.ID, want)
	}
}
