package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/provisioner/terraform"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// daemonByName returns the registered provisioner daemon called name, as
// `coder provisioner list -o json` reports it.
func daemonByName(t *testing.T, env []string, name string) (codersdk.ProvisionerDaemon, bool) {
	t.Helper()
	var daemons []codersdk.ProvisionerDaemon
	if err := json.Unmarshal([]byte(mustRun(t, env, "provisioner", "list", "-o", "json")), &daemons); err != nil {
		t.Fatalf("decode provisioner list: %v", err)
	}
	for _, d := range daemons {
		if d.Name == name {
			return d, true
		}
	}
	return codersdk.ProvisionerDaemon{}, false
}

// jobLogText joins the output lines of a template version's import logs.
func jobLogText(t *testing.T, client *codersdk.Client, versionID uuid.UUID) string {
	t.Helper()
	logs, closer, err := client.TemplateVersionLogsAfter(context.Background(), versionID, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var b strings.Builder
	for l := range logs {
		b.WriteString(l.Output + "\n")
	}
	return b.String()
}

// TestProvisioningOpenTofu routes a template that requires the tag
// flavour=tofu: while only a terraform daemon runs, its import stays pending
// and says why; an external OpenTofu daemon (`--tag flavour=tofu
// --terraform-path <cache>/bin/tofu`) then runs the import and the
// workspace builds of that template, and reports its flavour.
func TestProvisioningOpenTofu(t *testing.T) {
	t.Parallel()
	tofu := terraformtest.Find(t).Tofu
	ctx := context.Background()
	bin := buildCoder(t)
	const psk = "tofu-test-psk"
	derpServer := derp.NewServer(nil, key.NewNode())
	t.Cleanup(func() { _ = derpServer.Close() })
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		Provisioning: coderd.ProvisioningOptions{PSK: psk, AgentBinaryPath: bin, AcquireWait: 2 * time.Second},
		Agents:       coderd.AgentOptions{DERPServer: derpServer},
	}})
	coderdtest.CreateFirstUser(t, client)
	env, _ := testEnv(t)
	env = append(env, "CODER_URL="+client.URL.String(), "CODER_SESSION_TOKEN="+client.SessionToken())

	startDaemon(t, bin, client.URL.String(), psk, t.TempDir(), "--name", "terraform-1")
	waitFor(t, time.Minute, "terraform daemon registered", func() (bool, error) {
		_, ok := daemonByName(t, env, "terraform-1")
		return ok, nil
	})

	// Push a template requiring flavour=tofu: the import is queued with the reason.
	tmplDir := filepath.Join(t.TempDir(), "local")
	mustRun(t, env, "templates", "init", tmplDir)
	lines, stopPush := startCLI(t, env, "templates", "push", "tofu-local", "-d", tmplDir, "-y",
		"--name", "tofu-v1", "--provisioner-tag", "flavour=tofu")
	const reason = "no provisioner daemon with tags {flavour=tofu, scope=organization}"
	waitLine(t, lines, "⧗ Queued: "+reason)

	var versionID uuid.UUID
	waitFor(t, time.Minute, "template version row", func() (bool, error) {
		err := srv.DB.Pool().QueryRow(ctx, `SELECT id FROM template_versions WHERE name = $1`, "tofu-v1").Scan(&versionID)
		return err == nil, nil
	})
	version, err := client.TemplateVersion(ctx, versionID)
	if err != nil {
		t.Fatal(err)
	}
	// Once the terraform daemon polled twice after the job was queued, the
	// job is still pending and still says why.
	var seen []time.Time
	waitFor(t, time.Minute, "terraform daemon polls", func() (bool, error) {
		d, ok := daemonByName(t, env, "terraform-1")
		if !ok || d.LastSeenAt == nil {
			return false, nil
		}
		at := *d.LastSeenAt
		if at.After(version.Job.CreatedAt) && (len(seen) == 0 || at.After(seen[len(seen)-1])) {
			seen = append(seen, at)
		}
		return len(seen) >= 2, nil
	})
	version, err = client.TemplateVersion(ctx, versionID)
	if err != nil {
		t.Fatal(err)
	}
	if version.Job.Status != codersdk.ProvisionerJobPending || !strings.Contains(version.Job.Detail, reason) || version.Job.WorkerID != nil {
		t.Fatalf("import while only terraform runs: %+v", version.Job)
	}

	// An OpenTofu daemon with the tag picks the import up; push completes.
	tofuHome := t.TempDir()
	startDaemon(t, bin, client.URL.String(), psk, tofuHome, "--name", "tofu-1", "--tag", "flavour=tofu", "--terraform-path", tofu)
	waitLine(t, lines, `Created template "tofu-local"`)
	if res := stopPush(); res.code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	tofuDaemon, ok := daemonByName(t, env, "tofu-1")
	if !ok || !strings.HasPrefix(tofuDaemon.TerraformVersion, terraform.FlavorOpenTofu+" 1.6.3") || tofuDaemon.Tags["flavour"] != "tofu" {
		t.Fatalf("tofu daemon: %+v", tofuDaemon)
	}
	tfDaemon, _ := daemonByName(t, env, "terraform-1")
	if !strings.HasPrefix(tfDaemon.TerraformVersion, terraform.FlavorTerraform+" 1.8.5") {
		t.Fatalf("terraform daemon: %+v", tfDaemon)
	}
	out := mustRun(t, env, "provisioner", "list")
	if !strings.Contains(out, "tofu-1") || !strings.Contains(out, "flavour=tofu") || !strings.Contains(out, "opentofu 1.6.3") {
		t.Fatalf("provisioner list: %s", out)
	}
	version, err = client.TemplateVersion(ctx, versionID)
	if err != nil {
		t.Fatal(err)
	}
	if version.Job.Status != codersdk.ProvisionerJobSucceeded || version.Job.WorkerID == nil || *version.Job.WorkerID != tofuDaemon.ID {
		t.Fatalf("import job after the tofu daemon started: %+v (tofu daemon %s)", version.Job, tofuDaemon.ID)
	}
	if logs := jobLogText(t, client, versionID); !strings.Contains(logs, "OpenTofu has been successfully initialized") {
		t.Fatalf("import logs do not come from OpenTofu:\n%s", logs)
	}

	// The workspace build of that template runs on the tofu daemon too, and
	// its agent comes up.
	mustRun(t, env, "create", "tws", "-t", "tofu-local", "-y")
	var ws codersdk.Workspace
	if err := json.Unmarshal([]byte(mustRun(t, env, "show", "tws", "-o", "json")), &ws); err != nil {
		t.Fatal(err)
	}
	job := ws.LatestBuild.Job
	if job.Status != codersdk.ProvisionerJobSucceeded || job.WorkerID == nil || *job.WorkerID != tofuDaemon.ID || job.Tags["flavour"] != "tofu" {
		t.Fatalf("build job: %+v (tofu daemon %s)", job, tofuDaemon.ID)
	}
	var agentID uuid.UUID
	for _, res := range ws.LatestBuild.Resources {
		for _, a := range res.Agents {
			agentID = a.ID
		}
	}
	if agentID == uuid.Nil {
		t.Fatalf("no agent in the build: %+v", ws.LatestBuild.Resources)
	}
	home := filepath.Join(tofuHome, ".coder-workspaces", "owner-tws")
	waitFor(t, 2*time.Minute, "agent connected and ready", func() (bool, error) {
		a, err := client.WorkspaceAgent(ctx, agentID)
		if err != nil {
			return false, err
		}
		return a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady, nil
	})
	mustRun(t, env, "delete", "tws", "-y")
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("workspace home after delete: %v", err)
	}
	// The delete build ran on the tofu daemon as well.
	last, err := srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, ws.ID)
	if err != nil {
		t.Fatal(err)
	}
	delJob, err := srv.DB.GetProvisionerJobByID(ctx, last.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if last.Transition != "delete" || !delJob.WorkerID.Valid || delJob.WorkerID.UUID != tofuDaemon.ID || delJob.Error.String != "" {
		t.Fatalf("delete build %s ran on %v (error %q), want the tofu daemon %s", last.Transition, delJob.WorkerID, delJob.Error.String, tofuDaemon.ID)
	}
}
