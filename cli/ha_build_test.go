package cli_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/provisionerdserver"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/internal/hatest"
)

// gatedTemplate is a workspace whose apply blocks until the test creates
// the file %[1]s (no sleeps: the test decides when the build may end).
const gatedTemplate = `
resource "terraform_data" "gated" {
  provisioner "local-exec" {
    command = "echo build-waiting; while [ ! -f %[1]s ]; do sleep 0.1; done; echo build-released"
  }
}
`

const haBuildPSK = "ha-build-psk"

// haBuildHeartbeatTimeout is the replicas' --provisioner-heartbeat-timeout.
const haBuildHeartbeatTimeout = 3 * time.Second

// haBuildEnv is an HA deployment of 3 replicas where only replica 0 runs
// built-in provisioner daemons (2 of them, so one is idle while the other
// runs the gated build), with a short heartbeat timeout and a template
// whose builds wait for the gate file.
type haBuildEnv struct {
	*haEnv
	gate string
	tmpl codersdk.Template
}

// pgURL names the database ("" for a fresh test database).
func newHABuildEnv(t *testing.T, pgURL string) *haBuildEnv {
	t.Helper()
	gate := filepath.Join(t.TempDir(), "gate")
	h := newHAEnvWith(t, hatest.Options{
		Replicas:    3,
		PostgresURL: pgURL,
		Env:         terraformEnv(t),
		Args:        []string{"--provisioner-daemon-psk", haBuildPSK, "--provisioner-heartbeat-timeout", haBuildHeartbeatTimeout.String()},
		ReplicaArgs: func(i int) []string {
			if i == 0 {
				return []string{"--provisioner-daemons", "2"}
			}
			return nil
		},
	})
	// Whatever happens, release the gate so no local-exec the test
	// started outlives it (a killed replica's terraform runs on until its
	// command ends), and wait for those processes to end.
	t.Cleanup(func() {
		_ = os.WriteFile(gate, nil, 0o600)
		waitFor(t, time.Minute, "the gated builds' processes to end", func() (bool, error) {
			return len(processesMentioning(gate)) == 0, nil
		})
	})
	client := h.reach.client
	v := importVersion(t, client, tarFiles(t, t.TempDir(), map[string]string{"main.tf": fmt.Sprintf(gatedTemplate, gate)}), nil, true)
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import: %s %q", v.Job.Status, v.Job.Error)
	}
	tmpl, err := client.CreateTemplate(context.Background(), codersdk.CreateTemplateRequest{Name: "gated", VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	return &haBuildEnv{haEnv: h, gate: gate, tmpl: tmpl}
}

// startGatedBuild creates a workspace and waits until its build runs on
// replica 0's built-in daemon and waits for the gate; the log stream
// comes through the load balancer (any replica).
func (h *haBuildEnv) startGatedBuild(t *testing.T, name string) codersdk.Workspace {
	t.Helper()
	ctx := context.Background()
	client := h.reach.client
	ws, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: h.tmpl.ID, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	awaitBuildLog(t, client, ws.LatestBuild.ID, "build-waiting")
	return ws
}

// awaitBuildLog polls a build's logs (each poll through the load
// balancer, so any replica) until a line contains want.
func awaitBuildLog(t *testing.T, client *codersdk.Client, build uuid.UUID, want string) {
	t.Helper()
	ctx := context.Background()
	waitFor(t, 3*time.Minute, "build log "+want, func() (bool, error) {
		b, err := client.WorkspaceBuild(ctx, build)
		if err != nil {
			return false, nil // a replica may be going away; retry
		}
		logs, closer, err := client.WorkspaceBuildLogsAfter(ctx, build, 0, false)
		if err != nil {
			return false, nil
		}
		defer closer.Close()
		for l := range logs {
			if strings.Contains(l.Output, want) {
				return true, nil
			}
		}
		if !b.Job.Status.Active() {
			return false, fmt.Errorf("build ended (%s %q) without logging %q", b.Job.Status, b.Job.Error, want)
		}
		return false, nil
	})
}

// processesMentioning returns the PIDs whose command line contains s.
func processesMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestHAKilledReplicaFailsItsBuild: the replica whose built-in provisioner
// runs a build is killed with SIGKILL. The build does not hang and is not
// lost: another replica's hung-job loop fails it once its heartbeat lapses,
// with the reason in the job error and the build log; a rebuild (on an
// external daemon through the load balancer, since the only built-in
// daemons died) succeeds.
func TestHAKilledReplicaFailsItsBuild(t *testing.T) {
	t.Parallel()
	h := newHABuildEnv(t, "")
	ctx := context.Background()
	client := h.reach.client
	ws := h.startGatedBuild(t, "killed")

	h.cluster.Replicas[0].Kill(t)
	var b codersdk.WorkspaceBuild
	waitFor(t, time.Minute, "the build failed after the heartbeat lapsed", func() (bool, error) {
		var err error
		b, err = client.WorkspaceBuild(ctx, ws.LatestBuild.ID)
		return err == nil && !b.Job.Status.Active(), nil
	})
	if b.Job.Status != codersdk.ProvisionerJobFailed || !strings.Contains(b.Job.Error, provisionerdserver.HungJobError) {
		t.Fatalf("build after the kill: %s %q, want failed with %q", b.Job.Status, b.Job.Error, provisionerdserver.HungJobError)
	}
	awaitBuildLog(t, client, b.ID, provisionerdserver.HungJobError)

	// A rebuild succeeds on another daemon.
	startDaemon(t, h.bin, h.cluster.URL, haBuildPSK, t.TempDir(), "--name", "successor")
	if err := os.WriteFile(h.gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	re, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "the rebuild", func() (bool, error) {
		b, err := client.WorkspaceBuild(ctx, re.ID)
		return err == nil && !b.Job.Status.Active(), nil
	})
	if b, _ := client.WorkspaceBuild(ctx, re.ID); b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("rebuild: %s %q", b.Job.Status, b.Job.Error)
	}
}

// TestHATerminatedReplicaFinishesItsBuild: SIGTERM on the replica whose
// built-in provisioner runs a build. The replica drains: /healthz answers
// 503 (the load balancer routes around it), it keeps running until the
// build finishes (the test releases the gate only after seeing the replica
// still up and draining), the build succeeds, then the replica exits. A
// build queued during the drain is not lost: it runs to success on an
// external daemon started after the replica exited (or, if the idle
// built-in daemon had it in hand as the drain began, on that daemon).
func TestHATerminatedReplicaFinishesItsBuild(t *testing.T) {
	t.Parallel()
	h := newHABuildEnv(t, "")
	ctx := context.Background()
	client := h.reach.client
	ws := h.startGatedBuild(t, "terminated")
	victim := h.cluster.Replicas[0]

	victim.Signal(t, syscall.SIGTERM)
	waitFor(t, time.Minute, "replica 0 draining (/healthz 503)", func() (bool, error) {
		select {
		case <-victim.Done():
			return false, fmt.Errorf("replica exited instead of draining:\n%s", victim.Output())
		default:
		}
		res, err := http.Get(victim.URL + "/healthz")
		if err != nil {
			return false, nil
		}
		res.Body.Close()
		return res.StatusCode == http.StatusServiceUnavailable, nil
	})
	// Queued while draining, through the load balancer (another replica).
	queued, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: h.tmpl.ID, Name: "queued"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-victim.Done():
		t.Fatalf("replica exited with its build still running:\n%s", victim.Output())
	default:
	}
	if err := os.WriteFile(h.gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-victim.Done():
	case <-time.After(3 * time.Minute):
		t.Fatalf("replica did not exit after its build:\n%s", victim.Output())
	}
	b, err := client.WorkspaceBuild(ctx, ws.LatestBuild.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("build across SIGTERM: %s %q", b.Job.Status, b.Job.Error)
	}
	awaitBuildLog(t, client, b.ID, "build-released")

	startDaemon(t, h.bin, h.cluster.URL, haBuildPSK, t.TempDir(), "--name", "successor")
	waitFor(t, 3*time.Minute, "the build queued during the drain", func() (bool, error) {
		b, err := client.WorkspaceBuild(ctx, queued.LatestBuild.ID)
		return err == nil && !b.Job.Status.Active(), nil
	})
	if b, _ := client.WorkspaceBuild(ctx, queued.LatestBuild.ID); b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("queued build: %s %q", b.Job.Status, b.Job.Error)
	}
}
