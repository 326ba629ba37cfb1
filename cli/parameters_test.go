package cli_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner"
	"github.com/wgmesh/coder/provisioner/terraform"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// paramsTF has every kind of parameter the CLI handles: a required
// immutable string, options, a monotonic number with a templated
// validation message, and an ephemeral bool. terraform_data records the
// values so a build really uses them.
const paramsTF = `terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

data "coder_parameter" "project" {
  name  = "project"
  type  = "string"
  order = 1
}

data "coder_parameter" "region" {
  name    = "region"
  type    = "string"
  default = "eu"
  mutable = true
  order   = 2
  option {
    name  = "EU"
    value = "eu"
  }
  option {
    name  = "US"
    value = "us"
  }
}

data "coder_parameter" "disk" {
  name    = "disk"
  type    = "number"
  default = "10"
  mutable = true
  order   = 3
  validation {
    min       = 1
    max       = 100
    monotonic = "increasing"
    error     = "disk must be {min}-{max} GB, got {value}"
  }
}

data "coder_parameter" "rebuild" {
  name      = "rebuild"
  type      = "bool"
  default   = "false"
  mutable   = true
  ephemeral = true
  order     = 4
}

resource "terraform_data" "params" {
  input = {
    project = data.coder_parameter.project.value
    region  = data.coder_parameter.region.value
    disk    = data.coder_parameter.disk.value
    rebuild = data.coder_parameter.rebuild.value
  }
}
`

// newProvisionedEnv is coderd with an in-process provisioner daemon
// running real terraform and the real Coder provider, and a logged-in CLI
// environment.
func newProvisionedEnv(t *testing.T) (*codersdk.Client, []string) {
	t.Helper()
	const psk = "params-psk"
	deps := terraformtest.Find(t)
	client, _ := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		Provisioning: coderd.ProvisioningOptions{PSK: psk, AcquireWait: time.Second},
	}})
	coderdtest.CreateFirstUser(t, client)
	d := &provisioner.Daemon{
		Client: &provisionersdk.Client{URL: client.URL, PSK: psk},
		Name:   "params",
		Runner: &terraform.Runner{TerraformPath: deps.Terraform, CLIConfigPath: deps.CLIConfig, WorkDir: t.TempDir()},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon Run: %v", err)
		}
	})
	env, _ := testEnv(t)
	env = append(env, "CODER_URL="+client.URL.String(), "CODER_SESSION_TOKEN="+client.SessionToken())
	return client, env
}

// runOnPTY runs the CLI with stdin on a real pseudo-terminal that already
// holds answers.
func runOnPTY(t *testing.T, env []string, answers string, args ...string) (int, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, ptmx)
	}()
	if _, err := ptmx.Write([]byte(answers)); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	code := cli.Run(context.Background(), cli.Invocation{Args: args, Stdin: tty, Stdout: &stdout, Stderr: &stderr, Environ: env})
	_ = tty.Close()
	_ = ptmx.Close()
	<-drained
	return code, stdout.String() + stderr.String()
}

// buildValues returns the parameter values of a workspace's latest build.
func buildValues(t *testing.T, client *codersdk.Client, name string) map[string]string {
	t.Helper()
	ctx := context.Background()
	ws, err := client.WorkspaceByOwnerAndName(ctx, codersdk.Me, name)
	if err != nil {
		t.Fatal(err)
	}
	values, err := client.WorkspaceBuildParameters(ctx, ws.LatestBuild.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, v := range values {
		out[v.Name] = v.Value
	}
	return out
}

// TestParametersEndToEnd drives parameters through the CLI and real
// terraform builds: coder create asking for name, template and values on
// a real terminal; the monotonic refusal and the expanded validation
// message on later builds; ephemeral values used for one build only;
// --rich-parameter-file, --copy-parameters-from and -y for scripts.
func TestParametersEndToEnd(t *testing.T) {
	t.Parallel()
	client, env := newProvisionedEnv(t)
	mustRun(t, env, "templates", "push", "params", "-d", writeDir(t, paramsTF), "-y")

	// Interactive create: name, template by number, project, region by
	// option number, a disk value the prompt refuses (over max) then 20,
	// and the confirmation. The ephemeral parameter is not asked.
	code, out := runOnPTY(t, env, "ws1\n1\ndemo\n2\n500\n20\ny\n", "create")
	if code != 0 {
		t.Fatalf("interactive create exited %d:\n%s", code, out)
	}
	for _, want := range []string{"Template (number or name)", "project (required)", "1) EU (eu)", "disk must be 1-100 GB, got 500 (must be at most 100)", "has been created"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "> rebuild") {
		t.Errorf("create asked for the ephemeral parameter:\n%s", out)
	}
	if got := buildValues(t, client, "ws1"); got["project"] != "demo" || got["region"] != "us" || got["disk"] != "20" {
		t.Fatalf("ws1 values %v", got)
	}

	// Monotonic: shrinking the disk is refused on any build, with the
	// parameter and both values named; nothing is queued.
	mustRun(t, env, "stop", "ws1", "-y")
	res := runCLI(t, env, nil, "start", "ws1", "--parameter", "disk=5")
	wantFail(t, res, "shrink a monotonic parameter", `parameter "disk" is monotonic (increasing): the new value 5 is less than the previous value 20`)
	res = runCLI(t, env, nil, "start", "ws1", "--parameter", "disk=500")
	wantFail(t, res, "over the maximum", "disk must be 1-100 GB, got 500")
	ws, err := client.WorkspaceByOwnerAndName(context.Background(), codersdk.Me, "ws1")
	if err != nil {
		t.Fatal(err)
	}
	if ws.LatestBuild.Transition != codersdk.WorkspaceTransitionStop || ws.LatestBuild.Status != codersdk.WorkspaceStatusStopped {
		t.Fatalf("a refused start queued a build: %s %s", ws.LatestBuild.Transition, ws.LatestBuild.Status)
	}
	mustRun(t, env, "start", "ws1", "--parameter", "disk=30")
	if got := buildValues(t, client, "ws1"); got["disk"] != "30" {
		t.Fatalf("grown disk %v", got)
	}

	// Ephemeral: used by the restart it is given to, then back to the default.
	wantFail(t, runCLI(t, env, nil, "restart", "ws1", "--ephemeral-parameter", "disk=40"), "non-ephemeral as ephemeral", `"disk": the parameter is not ephemeral`)
	mustRun(t, env, "restart", "ws1", "--ephemeral-parameter", "rebuild=true")
	if got := buildValues(t, client, "ws1"); got["rebuild"] != "true" || got["disk"] != "30" {
		t.Fatalf("ephemeral build values %v", got)
	}
	mustRun(t, env, "restart", "ws1")
	if got := buildValues(t, client, "ws1"); got["rebuild"] != "false" || got["disk"] != "30" || got["region"] != "us" {
		t.Fatalf("the ephemeral value was kept: %v", got)
	}

	// Scripts: copy ws1's values, override one from a file, no prompts.
	file := filepath.Join(t.TempDir(), "params.yaml")
	if err := os.WriteFile(file, []byte("region: eu\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, env, "create", "ws2", "-t", "params", "-y", "--copy-parameters-from", "ws1", "--rich-parameter-file", file)
	if got := buildValues(t, client, "ws2"); got["project"] != "demo" || got["region"] != "eu" || got["disk"] != "30" {
		t.Fatalf("ws2 values %v", got)
	}
	// -y without the required parameter fails before anything is created.
	wantFail(t, runCLI(t, env, nil, "create", "ws3", "-t", "params", "-y"), "required parameter with -y", `parameter "project" is required`)
	// Without a terminal and without -y, a missing template is an error, not a hang.
	wantFail(t, runCLI(t, env, strings.NewReader(""), "create", "ws3"), "no template without a terminal", "a template is required")
	if _, err := client.WorkspaceByOwnerAndName(context.Background(), codersdk.Me, "ws3"); err == nil {
		t.Fatal("ws3 was created")
	}
}
