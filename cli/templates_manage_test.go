package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// updateTF is a template with an agent; updateTFWithParam adds a required
// parameter (no default) that a workspace built from the first lacks.
const updateTF = `terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

data "coder_workspace" "me" {}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}

resource "terraform_data" "dev" {
  count = data.coder_workspace.me.start_count
  input = {
    agent = coder_agent.main.id
  }
}
`

const updateTFWithParam = updateTF + `
data "coder_parameter" "region" {
  name    = "region"
  type    = "string"
  mutable = true
}
`

const varsTF = `variable "region" {
  type = string
}

variable "api_key" {
  type      = string
  sensitive = true
}

resource "terraform_data" "x" {
  input = "${var.region}-${sha256(var.api_key)}"
}
`

// TestTemplateManagementCommands drives a coder server with a built-in
// provisioner daemon (real terraform and provider) through the CLI:
// templates push --message/--variable/--variables-file (a missing required
// variable is refused), coder update with a parameter the new version adds,
// templates versions list/promote/archive/unarchive, templates pull, edit,
// and delete (refused while a workspace uses the template).
func TestTemplateManagementCommands(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	deps := terraformtest.Find(t)
	srv, err := cli.StartServer(ctx, cli.ServerConfig{
		HTTPAddress: "127.0.0.1:0", PostgresURL: dbtestutil.NewDB(t), ProvisionerDaemons: 1,
		Terraform: cli.TerraformConfig{Path: deps.Terraform, CLIConfig: deps.CLIConfig},
		DERP: cli.DERPConfig{ServerEnable: true, RegionID: derp.DefaultRegionID, RegionCode: derp.DefaultRegionCode,
			RegionName: derp.DefaultRegionName, STUNAddresses: []string{"127.0.0.1:0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	client := codersdk.New(srv.AccessURL)
	coderdtest.CreateFirstUser(t, client)
	env, _ := testEnv(t)
	env = append(env, "CODER_URL="+srv.AccessURL.String(), "CODER_SESSION_TOKEN="+client.SessionToken())
	dir := func(mainTF string) string {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "main.tf"), []byte(mainTF), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	fail := func(what string, res result, want string) {
		t.Helper()
		if res.code == 0 || !strings.Contains(res.stderr, want) {
			t.Fatalf("%s: exit %d, want a failure saying %q\nstdout: %s\nstderr: %s", what, res.code, want, res.stdout, res.stderr)
		}
	}

	// Variables at push.
	const secret = "cli-secret-never-printed"
	res := runCLI(t, env, nil, "templates", "push", "vars", "-d", dir(varsTF), "-y", "--variable", "api_key="+secret)
	fail("push without a required variable", res, "--variable region=VALUE")
	varsFile := filepath.Join(t.TempDir(), "vars.yaml")
	if err := os.WriteFile(varsFile, []byte("region: eu-west\napi_key: overridden-by-flag\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = runCLI(t, env, nil, "templates", "push", "vars", "-d", dir(varsTF), "-y", "--variables-file", varsFile, "--variable", "api_key="+secret)
	if res.code != 0 || strings.Contains(res.stdout+res.stderr, secret) {
		t.Fatalf("push with variables: exit %d (or the secret was printed)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	vt, err := client.TemplateByName(ctx, "vars")
	if err != nil {
		t.Fatal(err)
	}
	tvs, err := client.TemplateVersionVariables(ctx, vt.ActiveVersionID)
	if err != nil || len(tvs) != 2 {
		t.Fatalf("variables = %+v, %v", tvs, err)
	}
	for _, v := range tvs {
		if (v.Name == "region" && v.Value != "eu-west") || (v.Name == "api_key" && (v.Value != "" || !v.Sensitive)) {
			t.Fatalf("variable %+v", v)
		}
	}

	// Versions, update.
	mustRun(t, env, "templates", "push", "upd", "-d", dir(updateTF), "-y", "--name", "v1", "--message", "first version")
	var versions []codersdk.TemplateVersion
	if err := json.Unmarshal([]byte(mustRun(t, env, "templates", "versions", "list", "upd", "-o", "json")), &versions); err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1 || versions[0].Message != "first version" {
		t.Fatalf("versions after push --message: %+v", versions)
	}
	mustRun(t, env, "create", "ws", "-t", "upd", "-y")
	mustRun(t, env, "create", "ws2", "-t", "upd", "-y")
	if out := mustRun(t, env, "update", "ws"); !strings.Contains(out, "up to date") {
		t.Fatalf("update of a current workspace: %q", out)
	}
	mustRun(t, env, "templates", "push", "upd", "-d", dir(updateTFWithParam), "-y", "--name", "v2")
	ws, err := client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "ws")
	if err != nil || !ws.Outdated {
		t.Fatalf("workspace after v2: outdated=%v %v", ws.Outdated, err)
	}
	res = runCLI(t, env, nil, "update", "ws")
	fail("update without the new required parameter", res, "--parameter region=VALUE")
	// On a terminal the new parameter is asked for.
	code, out := runCLIOnPTY(t, env, "eu\n", "update", "ws")
	if code != 0 || !strings.Contains(out, "> region: ") || !strings.Contains(out, "updated to version v2") {
		t.Fatalf("interactive update: exit %d\n%s", code, out)
	}
	if out := mustRun(t, env, "update", "ws2", "--parameter", "region=us"); !strings.Contains(out, "updated to version v2") {
		t.Fatalf("update --parameter output:\n%s", out)
	}
	ws2, _ := client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "ws2")
	if p, err := client.WorkspaceBuildParameters(ctx, ws2.LatestBuild.ID); err != nil || len(p) != 1 || p[0].Value != "us" {
		t.Fatalf("ws2 parameters after update --parameter: %v %v", p, err)
	}
	ws, _ = client.WorkspaceByOwnerAndName(ctx, codersdk.Me, "ws")
	params, err := client.WorkspaceBuildParameters(ctx, ws.LatestBuild.ID)
	if ws.Outdated || ws.LatestBuild.TemplateVersionName != "v2" || err != nil || len(params) != 1 || params[0].Value != "eu" {
		t.Fatalf("after update: outdated=%v version=%s params=%v %v", ws.Outdated, ws.LatestBuild.TemplateVersionName, params, err)
	}

	mustRun(t, env, "templates", "versions", "promote", "--template", "upd", "--template-version", "v1")
	fail("archive the active version", runCLI(t, env, nil, "templates", "versions", "archive", "upd", "v1", "-y"), "active version")
	mustRun(t, env, "templates", "versions", "archive", "upd", "v2", "-y")
	if list := mustRun(t, env, "templates", "versions", "list", "upd"); strings.Contains(list, "v2") {
		t.Fatalf("archived version listed:\n%s", list)
	}
	if list := mustRun(t, env, "templates", "versions", "list", "upd", "--include-archived"); !strings.Contains(list, "Archived") {
		t.Fatalf("--include-archived does not show the archived version:\n%s", list)
	}
	fail("promote an archived version", runCLI(t, env, nil, "templates", "versions", "promote", "-t", "upd", "--template-version", "v2"), "archived")
	mustRun(t, env, "templates", "versions", "unarchive", "upd", "v2", "-y")

	// Pull.
	pulled := filepath.Join(t.TempDir(), "pulled")
	mustRun(t, env, "templates", "pull", "upd", pulled, "--version", "v2")
	if got, err := os.ReadFile(filepath.Join(pulled, "main.tf")); err != nil || string(got) != updateTFWithParam {
		t.Fatalf("pulled main.tf (%v):\n%s", err, got)
	}
	fail("pull into a non-empty directory", runCLI(t, env, nil, "templates", "pull", "upd", pulled), "not empty")

	// Edit.
	fail("edit without flags", runCLI(t, env, nil, "templates", "edit", "upd"), "nothing to change")
	mustRun(t, env, "templates", "edit", "upd", "--display-name", "Updatable", "--description", "For update tests",
		"--require-active-version", "--default-ttl", "2h", "--allow-user-cancel-workspace-jobs=false")
	tmpl, err := client.TemplateByName(ctx, "upd")
	if err != nil || tmpl.DisplayName != "Updatable" || tmpl.Description != "For update tests" || !tmpl.RequireActiveVersion ||
		tmpl.DefaultTTLMillis != (2*time.Hour).Milliseconds() || tmpl.AllowUserCancelWorkspaceJobs {
		t.Fatalf("template after edit: %+v %v", tmpl, err)
	}

	// Delete.
	fail("delete a template in use", runCLI(t, env, nil, "templates", "delete", "upd", "-y"), "used by 2 workspace")
	mustRun(t, env, "delete", "ws", "-y")
	mustRun(t, env, "delete", "ws2", "-y")
	mustRun(t, env, "templates", "delete", "upd", "-y")
	if _, err := client.TemplateByName(ctx, "upd"); err == nil {
		t.Fatal("template still there after delete")
	}
}

// runCLIOnPTY runs the CLI in-process with a pseudo-terminal as stdin
// (answers written to it up front) and returns the exit code and the
// combined output.
func runCLIOnPTY(t *testing.T, env []string, answers string, args ...string) (int, string) {
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
