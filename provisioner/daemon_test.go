package provisioner_test

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner"
	"github.com/wgmesh/coder/provisioner/terraform"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// slowTemplate starts a workspace with a local-exec that runs long enough
// to be canceled.
const slowTemplate = `
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "echo slow-build-started; sleep 300"
  }
}
`

func tarMain(t *testing.T, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "main.tf", Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDaemonRunsAndCancelsBuilds runs a Daemon against a real coderd with
// real terraform: it imports a template, starts a build, and a user cancel
// interrupts terraform so the build ends canceled.
func TestDaemonRunsAndCancelsBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const psk = "daemon-test-psk"
	deps := terraformtest.Find(t)
	client, _ := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Provisioning: coderd.ProvisioningOptions{
		PSK: psk, HeartbeatTimeout: 3 * time.Second, AcquireWait: time.Second,
	}}})
	coderdtest.CreateFirstUser(t, client)

	dctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	d := &provisioner.Daemon{
		Client: &provisionersdk.Client{URL: client.URL, PSK: psk},
		Name:   "in-test",
		Runner: &terraform.Runner{
			TerraformPath: deps.Terraform, CLIConfigPath: deps.CLIConfig,
			WorkDir: t.TempDir(), InterruptGrace: 30 * time.Second,
		},
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = d.Run(dctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			t.Errorf("daemon Run: %v", runErr)
		}
	})

	up, err := client.Upload(ctx, codersdk.ContentTypeTar, bytes.NewReader(tarMain(t, slowTemplate)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{FileID: up.ID})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "import", func() bool {
		v, err = client.TemplateVersion(ctx, v.ID)
		return err == nil && !v.Job.Status.Active()
	})
	if v.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("import: %s %q", v.Job.Status, v.Job.Error)
	}
	res, err := client.TemplateVersionResources(ctx, v.ID)
	if err != nil || len(res) == 0 || res[0].Type != "terraform_data" {
		t.Fatalf("import resources = %+v, %v", res, err)
	}
	tmpl, err := client.CreateTemplate(ctx, codersdk.CreateTemplateRequest{Name: "slow", VersionID: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "slow1"})
	if err != nil {
		t.Fatal(err)
	}
	build := ws.LatestBuild
	// Follow the logs until the slow command runs.
	logs, closer, err := client.WorkspaceBuildLogsAfter(ctx, build.ID, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	for l := range logs {
		if strings.Contains(l.Output, "slow-build-started") {
			break
		}
	}
	if b, err := client.WorkspaceBuild(ctx, build.ID); err != nil || b.Status != codersdk.WorkspaceStatusStarting {
		t.Fatalf("build while running: %s %v", b.Status, err)
	}
	if _, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop}); err == nil {
		t.Fatal("a second build was accepted while one is active")
	}
	if err := client.CancelWorkspaceBuild(ctx, build.ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "canceled build", func() bool {
		b, err := client.WorkspaceBuild(ctx, build.ID)
		return err == nil && b.Status == codersdk.WorkspaceStatusCanceled
	})
	b, _ := client.WorkspaceBuild(ctx, build.ID)
	if !strings.Contains(b.Job.Error, "canceled") {
		t.Fatalf("canceled build error %q", b.Job.Error)
	}
}
