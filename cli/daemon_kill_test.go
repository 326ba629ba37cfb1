package cli_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// killTemplate is a workspace with a home directory and a detached
// background process (standing in for the agent), each destroyed by its
// own destroy-time provisioner, and a slow resource created after them.
const killTemplate = `
resource "terraform_data" "home" {
  input = "%[1]s"
  provisioner "local-exec" {
    command = "mkdir -p %[1]s"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "rm -rf ${self.output}"
  }
}
resource "terraform_data" "agent" {
  depends_on = [terraform_data.home]
  input      = "%[1]s/agent.pid"
  provisioner "local-exec" {
    command = "setsid nohup sleep 600 >/dev/null 2>&1 </dev/null & echo $! > %[1]s/agent.pid"
  }
  provisioner "local-exec" {
    when    = destroy
    command = "kill -9 $(cat ${self.output}) || true"
  }
}
resource "terraform_data" "slow" {
  depends_on = [terraform_data.agent]
  provisioner "local-exec" {
    command = "echo $$ > %[1]s.slow.pid; echo slow-started; sleep 300"
  }
}
`

// TestKilledDaemonLeaksNothing: a provisioner daemon process is killed
// (SIGKILL) in the middle of an apply. coderd fails the build once its
// heartbeat lapses, but it already has the state of what the build
// created (uploaded as terraform applied), so deleting the workspace with
// a new daemon destroys it all: the background process is gone and the
// home removed. The new daemon removes the killed one's work directory
// (which holds state with secrets) and kills the terraform children it
// left. Before, the state never reached coderd: the delete destroyed
// nothing and the process, home and work directory stayed.
func TestKilledDaemonLeaksNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bin := buildCoder(t)
	const psk = "kill-test-psk"
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Provisioning: coderd.ProvisioningOptions{
		PSK: psk, HeartbeatTimeout: 3 * time.Second, AcquireWait: time.Second,
	}}})
	coderdtest.CreateFirstUser(t, client)
	daemonHome, workDir := t.TempDir(), t.TempDir()
	home := filepath.Join(t.TempDir(), "ws-home")

	daemon := startDaemon(t, bin, client.URL.String(), psk, daemonHome, "--name", "doomed", "--cache-dir", workDir)
	v := importVersion(t, client, tarFiles(t, t.TempDir(), map[string]string{"main.tf": fmt.Sprintf(killTemplate, home)}), nil, true)
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import: %s %q", v.Job.Status, v.Job.Error)
	}
	tmpl, err := client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: "kill", VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "kill1"})
	if err != nil {
		t.Fatal(err)
	}
	logs, closer, err := client.WorkspaceBuildLogsAfter(ctx, ws.LatestBuild.ID, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	for l := range logs {
		if strings.Contains(l.Output, "slow-started") {
			break
		}
	}
	closer.Close()
	raw, err := os.ReadFile(filepath.Join(home, "agent.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	raw, err = os.ReadFile(home + ".slow.pid")
	if err != nil {
		t.Fatal(err)
	}
	slowPID, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(slowPID, syscall.SIGKILL) })
	if !processAlive(pid) {
		t.Fatal("the workspace's background process does not run")
	}
	// Wait until coderd has the state of what exists (uploaded while the
	// slow resource is still being created), then kill the daemon.
	waitFor(t, time.Minute, "partial state in coderd", func() (bool, error) {
		b, err := srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
		return err == nil && strings.Contains(string(b.ProvisionerState), "agent.pid"), nil
	})
	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the build failed as hung", func() (bool, error) {
		b, err := client.WorkspaceBuild(ctx, ws.LatestBuild.ID)
		return err == nil && b.Job.Status == codersdk.ProvisionerJobFailed, err
	})
	if entries, _ := os.ReadDir(workDir); len(entries) == 0 {
		t.Fatal("the killed daemon left no work directory: the test did not kill it mid-job")
	}

	if !processAlive(slowPID) {
		t.Fatal("the killed daemon's local-exec did not outlive it: nothing to clean up")
	}
	// A new daemon on the same host cleans up after the dead one: its
	// work directory and the local-exec it left running.
	startDaemon(t, bin, client.URL.String(), psk, daemonHome, "--name", "successor", "--cache-dir", workDir)
	waitFor(t, time.Minute, "the orphaned local-exec killed", func() (bool, error) { return !processAlive(slowPID), nil })
	del, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionDelete})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the delete build", func() (bool, error) {
		b, err := client.WorkspaceBuild(ctx, del.ID)
		return err == nil && !b.Job.Status.Active(), err
	})
	if b, _ := client.WorkspaceBuild(ctx, del.ID); b.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("delete: %s %q", b.Job.Status, b.Job.Error)
	}
	waitFor(t, 30*time.Second, "the background process gone", func() (bool, error) { return !processAlive(pid), nil })
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("home after delete: %v", err)
	}
	waitFor(t, 30*time.Second, "an empty work directory", func() (bool, error) {
		entries, err := os.ReadDir(workDir)
		return len(entries) == 0, err
	})
}
