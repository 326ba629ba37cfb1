package docker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk"
)

// TestCoderDockerTemplateCompat runs testdata/coder-docker — the shape of
// Coder's published docker template with only its image changed and its
// registry modules written out — through the whole stack, once with
// terraform (the server's built-in daemons) and once with OpenTofu (an
// external daemon): data "coder_provisioner" gives the agent's arch and os,
// coder_agent.init_script (rewritten to host.docker.internal) boots the agent,
// data "external" and a lifecycle precondition are evaluated, the
// coder_script starts code-server and its app turns healthy, the metadata
// arrive, and delete leaves the shared base image (keep_locally) alone.
func TestCoderDockerTemplateCompat(t *testing.T) {
	requireDocker(t)
	s := startServer(t)
	dc := newDockerCleanup(t)
	owner := s.cliFor(s.Client, s.Owner.Username)
	s.startDaemon(t, "tofu-1", "--tag", "flavour=tofu", "--terraform-path", deps(t).Tofu)
	baseID, err := docker(context.Background(), "image", "inspect", "-f", "{{.Id}}", baseImage)
	if err != nil {
		t.Fatal(err)
	}

	for _, flavour := range []struct{ name, template string }{
		{"terraform", "coder-docker"},
		{"opentofu", "coder-docker-tofu"},
	} {
		t.Run(flavour.name, func(t *testing.T) {
			args := []string{"templates", "push", flavour.template, "-d", "testdata/coder-docker", "-y"}
			if flavour.name == "opentofu" {
				args = append(args, "--provisioner-tag", "flavour=tofu")
			}
			owner := owner.forTest(t)
			owner.must(args...)
			ws := createWorkspace(t, owner, dc, flavour.template, "compat-"+flavour.name[:4])
			agent := waitAgentReady(t, s.Client, ws.ID, containerLogs(ws.ID))
			if agent.Architecture != "amd64" || agent.OperatingSystem != "linux" {
				t.Fatalf("agent %s/%s, want linux/amd64 from data.coder_provisioner", agent.OperatingSystem, agent.Architecture)
			}
			out, err := owner.ssh(ws.Name, `id -un; test -f ~/.init_done && echo skel-copied; echo "$GIT_COMMITTER_EMAIL"`)
			if err != nil || strings.Join(scanLines(out), "|") != "coder|skel-copied|owner@coder.test" {
				t.Fatalf("ssh: %q %v", out, err)
			}
			waitFor(t, 3*time.Minute, "code-server app healthy", func() (bool, error) {
				w, err := s.Client.Workspace(context.Background(), ws.ID)
				if err != nil {
					return false, err
				}
				a, ok := workspaceAgent(w)
				if !ok {
					return false, nil
				}
				for _, app := range a.Apps {
					if app.Slug == "code-server" && app.Health == codersdk.WorkspaceAppHealthHealthy {
						return true, nil
					}
				}
				return false, nil
			})
			waitFor(t, 2*time.Minute, "metadata", func() (bool, error) {
				md, err := s.Client.WorkspaceAgentMetadata(context.Background(), agent.ID)
				if err != nil {
					return false, err
				}
				got := 0
				for _, m := range md {
					if m.Result.CollectedAt != nil && m.Result.Error == "" && m.Result.Value != "" {
						switch m.Description.Key {
						case "0_cpu_usage", "1_ram_usage", "7_swap_host":
							got++
						}
					}
				}
				return got == 3, nil
			})
			owner.must("delete", ws.Name, "-y")
			if c, v := containersOf(t, ws.ID), volumesOf(t, ws.ID); len(c) != 0 || len(v) != 0 {
				t.Fatalf("after delete: containers %v volumes %v", c, v)
			}
			if id, err := docker(context.Background(), "image", "inspect", "-f", "{{.Id}}", baseImage); err != nil || id != baseID {
				t.Fatalf("the base image after delete: %q %v (keep_locally)", id, err)
			}
		})
	}
}

// TestTemplateFailuresAreClear checks that what a template's own checks say
// reaches the user: a failing lifecycle precondition and a failing
// data "external" program stop the import with their messages.
func TestTemplateFailuresAreClear(t *testing.T) {
	requireDocker(t)
	s := startServer(t)
	owner := s.cliFor(s.Client, s.Owner.Username)
	const head = `
terraform {
  required_providers {
    coder    = { source = "coder/coder" }
    docker   = { source = "kreuzwerker/docker" }
    external = { source = "hashicorp/external" }
  }
}
data "coder_provisioner" "me" {}
data "coder_workspace" "me" {}
resource "coder_agent" "main" {
  arch = data.coder_provisioner.me.arch
  os   = data.coder_provisioner.me.os
}
`
	for i, tc := range []struct {
		name, body, want string
	}{
		{
			name: "precondition",
			body: `
resource "docker_volume" "home" {
  name = "coder-${data.coder_workspace.me.id}-home"
  lifecycle {
    precondition {
      condition     = data.coder_provisioner.me.arch == "riscv64"
      error_message = "This template needs a riscv64 provisioner, not ${data.coder_provisioner.me.arch}."
    }
  }
}`,
			want: "This template needs a riscv64 provisioner, not amd64.",
		},
		{
			name: "external program fails",
			body: `
data "external" "check" {
  program = ["sh", "-c", "echo 'the license server is down' >&2; exit 3"]
}
resource "docker_volume" "home" {
  name = "coder-${data.coder_workspace.me.id}-${data.external.check.result.x}"
}`,
			want: "the license server is down",
		},
		{
			name: "external program prints a non-string",
			body: `
data "external" "check" {
  program = ["sh", "-c", "echo '{\"port\": 8080}'"]
}
resource "docker_volume" "home" {
  name = "coder-${data.coder_workspace.me.id}-${data.external.check.result.port}"
}`,
			want: `non-string value for "port"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(head+tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			stdout, stderr, err := owner.forTest(t).run(ctx, nil, true, "templates", "push", fmt.Sprintf("fail-%d", i), "-d", dir, "-y")
			if err == nil {
				t.Fatalf("push succeeded:\n%s", stdout)
			}
			if all := stdout + stderr; !strings.Contains(all, tc.want) {
				t.Fatalf("push output lacks %q:\nstdout:\n%s\nstderr:\n%s", tc.want, stdout, stderr)
			}
		})
	}
}
