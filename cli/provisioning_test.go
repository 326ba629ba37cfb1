package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/provisioner/templatearchive"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
	"tailscale.com/types/key"
)

// buildCoder builds the coder binary for the test.
func buildCoder(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "coder")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/coder")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build coder: %v\n%s", err, out)
	}
	return bin
}

// terraformEnv names the test's terraform and provider mirror (from make deps)
// through the environment twins of --terraform-path and --terraform-cli-config.
func terraformEnv(t testing.TB) []string {
	t.Helper()
	deps := terraformtest.Find(t)
	return []string{cli.EnvTerraformPath + "=" + deps.Terraform, cli.EnvTerraformCLIConfig + "=" + deps.CLIConfig}
}

// startDaemon runs `coder provisioner start` as a separate process with no
// database settings in its environment, running the test's terraform (args
// may name another binary with --terraform-path). It is interrupted at cleanup.
func startDaemon(t testing.TB, bin, url, psk, home string, args ...string) *exec.Cmd {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, append([]string{"provisioner", "start", "--url", url, "--psk", psk}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + os.TempDir()}, terraformEnv(t)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("provisioner daemon output:\n%s", out.String())
		}
	})
	return cmd
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processAlive reports whether pid runs (zombies count as gone).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func tarFiles(t *testing.T, dir string, files map[string]string) []byte {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := templatearchive.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// importVersion uploads a template and waits for its import to end.
func importVersion(t *testing.T, client *codersdk.Client, archive []byte, tags map[string]string, wait bool) codersdk.TemplateVersion {
	t.Helper()
	ctx := context.Background()
	up, err := client.Upload(ctx, codersdk.ContentTypeTar, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.CreateTemplateVersion(ctx, codersdk.CreateTemplateVersionRequest{
		FileID: up.ID, StorageMethod: "file", Provisioner: "terraform", ProvisionerTags: tags,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !wait {
		return v
	}
	waitFor(t, 3*time.Minute, "template import", func() (bool, error) {
		v, err = client.TemplateVersion(ctx, v.ID)
		return err == nil && !v.Job.Status.Active(), err
	})
	return v
}

// TestProvisioningEndToEnd drives templates and workspaces through the CLI
// against a real coderd and PostgreSQL, with an external provisioner daemon
// process (no database credentials) running real terraform and the real
// Coder provider on examples/templates/local.
func TestProvisioningEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bin := buildCoder(t)
	const psk = "test-psk-value"
	derpServer := derp.NewServer(nil, key.NewNode())
	t.Cleanup(func() { _ = derpServer.Close() })
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		Provisioning: coderd.ProvisioningOptions{PSK: psk, AgentBinaryPath: bin, AcquireWait: 2 * time.Second},
		Agents:       coderd.AgentOptions{DERPServer: derpServer},
	}})
	coderdtest.CreateFirstUser(t, client)
	daemonHome := t.TempDir()
	startDaemon(t, bin, client.URL.String(), psk, daemonHome, "--name", "external-1")
	env, _ := testEnv(t)
	env = append(env, "CODER_URL="+client.URL.String(), "CODER_SESSION_TOKEN="+client.SessionToken())

	// Push the example template (written by templates init).
	tmplDir := filepath.Join(t.TempDir(), "local")
	mustRun(t, env, "templates", "init", tmplDir)
	out := mustRun(t, env, "templates", "push", "local", "-d", tmplDir, "-y")
	if !strings.Contains(out, `Created template "local"`) {
		t.Fatalf("push output: %s", out)
	}
	out = mustRun(t, env, "templates", "list")
	if !strings.Contains(out, "local") {
		t.Fatalf("templates list: %s", out)
	}
	out = mustRun(t, env, "templates", "versions", "list", "local")
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, "Active") {
		t.Fatalf("versions list: %s", out)
	}
	out = mustRun(t, env, "provisioner", "list")
	if !strings.Contains(out, "external-1") || !strings.Contains(out, "idle") {
		t.Fatalf("provisioner list: %s", out)
	}

	// Create: the build streams logs and starts the agent process.
	createStart := time.Now()
	out = mustRun(t, env, "create", "ws1", "-t", "local", "-y", "--parameter", "greeting=hi")
	if !strings.Contains(out, "==> ⧗ ") || !strings.Contains(out, "has been created") {
		t.Fatalf("create output: %s", out)
	}
	show := func() codersdk.Workspace {
		t.Helper()
		var ws codersdk.Workspace
		if err := json.Unmarshal([]byte(mustRun(t, env, "show", "ws1", "-o", "json")), &ws); err != nil {
			t.Fatal(err)
		}
		return ws
	}
	ws := show()
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusRunning || ws.LatestBuild.Job.Status != codersdk.ProvisionerJobSucceeded {
		t.Fatalf("after create: status %s job %+v", ws.LatestBuild.Status, ws.LatestBuild.Job)
	}
	var agents []codersdk.WorkspaceAgent
	for _, res := range ws.LatestBuild.Resources {
		agents = append(agents, res.Agents...)
	}
	if len(agents) != 1 || agents[0].Name != "main" || agents[0].LifecycleState == "" || agents[0].Status == "" {
		t.Fatalf("agents after create: %+v", agents)
	}
	home := filepath.Join(daemonHome, ".coder-workspaces", "owner-ws1")
	t.Cleanup(func() {
		if t.Failed() {
			logData, _ := os.ReadFile(filepath.Join(home, ".coder-agent", "agent.log"))
			t.Logf("agent log:\n%s", logData)
		}
	})
	pidFile := filepath.Join(home, ".coder-agent", "agent.pid")
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("agent pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	// The init script downloaded the agent binary from coderd's /bin route.
	waitFor(t, time.Minute, "agent binary download", func() (bool, error) {
		logData, _ := os.ReadFile(filepath.Join(home, ".coder-agent", "agent.log"))
		return processAlive(pid) || len(logData) > 0, nil
	})
	// The agent connects to coderd and runs its startup script.
	waitFor(t, 2*time.Minute, "agent connected and ready", func() (bool, error) {
		a, err := client.WorkspaceAgent(ctx, agents[0].ID)
		if err != nil {
			return false, err
		}
		return a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady, nil
	})
	// Resource kinds: the agent's resource is computational and destroyed
	// by a stop, the home directory peripheral and persistent.
	wantKinds := map[string]string{
		"terraform_data.agent": "computational ephemeral",
		"terraform_data.home":  "peripheral persistent",
	}
	if got := resourceKinds(ws); !maps.Equal(got, wantKinds) {
		t.Fatalf("resource kinds after create: %v, want %v", got, wantKinds)
	}
	if out := mustRun(t, env, "show", "ws1"); !regexp.MustCompile(`terraform_data\.home\s+peripheral, persistent`).MatchString(out) ||
		!regexp.MustCompile(`terraform_data\.agent\s+computational, ephemeral`).MatchString(out) {
		t.Fatalf("show does not mark the resource kinds:\n%s", out)
	}
	createJob := ws.LatestBuild.Job
	t.Logf("create -> agent ready: %s; build job queued->started %s, started->completed (terraform) %s",
		time.Since(createStart).Round(10*time.Millisecond),
		createJob.StartedAt.Sub(createJob.CreatedAt).Round(10*time.Millisecond),
		createJob.CompletedAt.Sub(*createJob.StartedAt).Round(10*time.Millisecond))
	marker := filepath.Join(home, "marker.txt")
	if err := os.WriteFile(marker, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Stop: the agent process is gone, the home directory stays.
	mustRun(t, env, "stop", "ws1", "-y")
	ws = show()
	if ws.LatestBuild.Status != codersdk.WorkspaceStatusStopped {
		t.Fatalf("after stop: %s", ws.LatestBuild.Status)
	}
	waitFor(t, 30*time.Second, "agent process exit", func() (bool, error) { return !processAlive(pid), nil })
	// A stopped workspace still lists what survived the stop.
	if got, want := resourceKinds(ws), map[string]string{"terraform_data.home": "peripheral persistent"}; !maps.Equal(got, want) {
		t.Fatalf("resource kinds after stop: %v, want %v", got, want)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("home lost on stop: %v", err)
	}

	// `coder ssh -y` into the stopped workspace starts it first; the same files are there.
	if out := mustRun(t, env, "ssh", "-y", "ws1", "--", "cat", marker); strings.TrimSpace(out) != "kept" {
		t.Fatalf("ssh -y into the stopped workspace: %q", out)
	}
	if ws = show(); ws.LatestBuild.Status != codersdk.WorkspaceStatusRunning || ws.LatestBuild.BuildNumber != 3 {
		t.Fatalf("after start: %s #%d", ws.LatestBuild.Status, ws.LatestBuild.BuildNumber)
	}
	if data, err := os.ReadFile(marker); err != nil || string(data) != "kept" {
		t.Fatalf("marker after start: %q %v", data, err)
	}
	out = mustRun(t, env, "list")
	if !strings.Contains(out, "owner/ws1") || !strings.Contains(out, "running") || !strings.Contains(out, "APPS") {
		t.Fatalf("list: %s", out)
	}
	// The local template has two apps (files and hello): the APPS column
	// is the last one.
	if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 2 || !strings.HasSuffix(strings.TrimSpace(rows[1]), " 2") {
		t.Fatalf("list APPS column: %s", out)
	}

	// Delete: everything is gone and the state is cleared.
	mustRun(t, env, "delete", "ws1", "-y")
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("home after delete: %v", err)
	}
	list, err := client.Workspaces(ctx, codersdk.Me)
	if err != nil || len(list.Workspaces) != 0 {
		t.Fatalf("workspaces after delete: %+v %v", list, err)
	}
	last, err := client.WorkspaceBuild(ctx, ws.LatestBuild.ID)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := srv.DB.GetLatestWorkspaceBuildByWorkspaceID(ctx, last.WorkspaceID)
	if err != nil || latest.Transition != "delete" || len(latest.ProvisionerState) != 0 {
		t.Fatalf("latest build after delete: %s state %d bytes, %v", latest.Transition, len(latest.ProvisionerState), err)
	}
	logs, closer, err := client.WorkspaceBuildLogsAfter(ctx, latest.ID, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	closer.Close()
	n := 0
	for range logs {
		n++
	}
	if n == 0 {
		t.Fatal("delete build has no logs")
	}

	t.Run("SyntaxErrorFailsImport", func(t *testing.T) {
		v := importVersion(t, client, tarFiles(t, t.TempDir(), map[string]string{"main.tf": "resource \"terraform_data\" \"x\" {\n"}), nil, true)
		if v.Job.Status != codersdk.ProvisionerJobFailed || !strings.Contains(v.Job.Error, "Unclosed configuration block") {
			t.Fatalf("import of a broken template: %s %q", v.Job.Status, v.Job.Error)
		}
		res := runCLI(t, env, nil, "templates", "push", "broken", "-d", writeDir(t, "resource \"terraform_data\" \"x\" {\n"), "-y")
		if res.code == 0 || !strings.Contains(res.stdout+res.stderr, "Unclosed configuration block") {
			t.Fatalf("push of a broken template: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("MissingRequiredParameter", func(t *testing.T) {
		mustRun(t, env, "templates", "push", "needsparam", "-d", writeDir(t, requiredParamTemplate), "-y")
		tmpl, err := client.TemplateByName(ctx, "needsparam")
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "np"})
		apiErr, ok := codersdk.AsError(err)
		if !ok || apiErr.StatusCode() != http.StatusBadRequest || !strings.Contains(apiErr.Error(), "region") {
			t.Fatalf("create without the required parameter: %v", err)
		}
		_, err = client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{
			TemplateID: tmpl.ID, Name: "np", RichParameterValues: []codersdk.WorkspaceBuildParameter{{Name: "region", Value: "mars"}},
		})
		if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusBadRequest || !strings.Contains(apiErr.Error(), "not one of the options") {
			t.Fatalf("create with an invalid option: %v", err)
		}
	})

	t.Run("UploadTooLarge", func(t *testing.T) {
		_, err := client.Upload(ctx, codersdk.ContentTypeTar, io.LimitReader(zeroReader{}, 200<<20))
		apiErr, ok := codersdk.AsError(err)
		if !ok || apiErr.StatusCode() != http.StatusRequestEntityTooLarge {
			t.Fatalf("200 MiB upload: %v", err)
		}
	})

	t.Run("WrongPSK", func(t *testing.T) {
		cmd := exec.Command(bin, "provisioner", "start", "--url", client.URL.String(), "--psk", "wrong")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "pre-shared key") {
			t.Fatalf("daemon with a wrong PSK: %v\n%s", err, out)
		}
	})

	t.Run("UnmatchedTagStaysPending", func(t *testing.T) {
		v := importVersion(t, client, tarFiles(t, t.TempDir(), map[string]string{"main.tf": "output \"x\" { value = 1 }\n"}), map[string]string{"flavour": "tofu"}, false)
		// Once the external daemon polled twice after the job was queued,
		// the job is still pending and says why.
		var seen []time.Time
		waitFor(t, time.Minute, "daemon polls", func() (bool, error) {
			ds, err := client.ProvisionerDaemons(ctx)
			if err != nil || len(ds) == 0 || ds[0].LastSeenAt == nil {
				return false, err
			}
			at := *ds[0].LastSeenAt
			if at.After(v.Job.CreatedAt) && (len(seen) == 0 || at.After(seen[len(seen)-1])) {
				seen = append(seen, at)
			}
			return len(seen) >= 2, nil
		})
		got, err := client.TemplateVersion(ctx, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Job.Status != codersdk.ProvisionerJobPending || !strings.Contains(got.Job.Detail, "no provisioner daemon with tags {flavour=tofu, scope=organization}") || got.Job.QueuePosition != 1 {
			t.Fatalf("job for an unmatched tag: %+v", got.Job)
		}
		if err := client.CancelTemplateVersion(ctx, v.ID); err != nil {
			t.Fatal(err)
		}
		if got, _ = client.TemplateVersion(ctx, v.ID); got.Job.Status != codersdk.ProvisionerJobCanceled {
			t.Fatalf("after cancel: %s", got.Job.Status)
		}
	})
}

const requiredParamTemplate = `terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

data "coder_parameter" "region" {
  name = "region"
  type = "string"
  option {
    name  = "EU"
    value = "eu"
  }
  option {
    name  = "US"
    value = "us"
  }
}
`

func writeDir(t *testing.T, mainTF string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(mainTF), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// resourceKinds maps each visible resource of the workspace's latest build
// ("type.name") to its kind and lifetime.
func resourceKinds(ws codersdk.Workspace) map[string]string {
	out := map[string]string{}
	for _, res := range ws.LatestBuild.Resources {
		if !res.Hide {
			out[res.Type+"."+res.Name] = string(res.Kind) + " " + string(res.Lifetime)
		}
	}
	return out
}
