package terraform

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// lifecycleTemplate has a persistent peripheral resource, a computational resource
// that exists only while started, an agent with apps, scripts, env and metadata, and
// rich parameters.
const lifecycleTemplate = `
terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

data "coder_parameter" "region" {
  name         = "region"
  display_name = "Region"
  description  = "Where to run."
  type         = "string"
  default      = "eu"
  mutable      = false
  order        = 2
  option {
    name  = "Europe"
    value = "eu"
  }
  option {
    name  = "United States"
    value = "us"
  }
}

data "coder_parameter" "cpus" {
  name    = "cpus"
  type    = "number"
  default = 2
  mutable = true
  order   = 1
  validation {
    min = 1
    max = 8
  }
}

resource "terraform_data" "disk" {
  input = "disk-${data.coder_workspace.me.id}"
}

resource "coder_agent" "dev" {
  os             = "linux"
  arch           = "amd64"
  dir            = "/home/dev"
  startup_script = "echo started"
  shutdown_script = "echo stopping"
  env = {
    REGION = data.coder_parameter.region.value
    OWNER  = data.coder_workspace_owner.me.name
  }
  metadata {
    key          = "uptime"
    display_name = "Uptime"
    script       = "cat /proc/uptime"
    interval     = 5
    timeout      = 1
  }
}

resource "terraform_data" "vm" {
  count = data.coder_workspace.me.start_count
  input = {
    token = coder_agent.dev.token
    cpus  = data.coder_parameter.cpus.value
    name  = data.coder_workspace.me.name
  }
  depends_on = [terraform_data.disk]
}

resource "coder_app" "web" {
  agent_id     = coder_agent.dev.id
  slug         = "web"
  display_name = "Web"
  url          = "http://localhost:8080"
  share        = "authenticated"
  healthcheck {
    url       = "http://localhost:8080/healthz"
    interval  = 3
    threshold = 5
  }
}

resource "coder_app" "shell" {
  agent_id     = coder_agent.dev.id
  slug         = "shell"
  display_name = "Shell"
  command      = "bash -l"
}

resource "coder_script" "cron" {
  agent_id     = coder_agent.dev.id
  display_name = "Backup"
  script       = "echo backup"
  cron         = "0 0 * * * *"
}

resource "coder_metadata" "disk" {
  resource_id = terraform_data.disk.id
  daily_cost  = 3
  item {
    key   = "size"
    value = "10GiB"
  }
  item {
    key       = "secret"
    value     = "hunter2"
    sensitive = true
  }
}

output "cpus" {
  value = data.coder_parameter.cpus.value
}
`

func findResource(t *testing.T, resources []provisionersdk.Resource, typ, name string) provisionersdk.Resource {
	t.Helper()
	for _, r := range resources {
		if r.Type == typ && r.Name == name {
			return r
		}
	}
	t.Fatalf("resource %s.%s not found in %+v", typ, name, resources)
	return provisionersdk.Resource{}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		binary  string
		flavor  string
		version string
	}{
		{"terraform", FlavorTerraform, "1.8.5"},
		{"tofu", FlavorOpenTofu, "1.6.3"},
	}
	for _, tt := range tests {
		t.Run(tt.binary, func(t *testing.T) {
			t.Parallel()
			r := testRunner(t, tt.binary)
			v, err := r.Version(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			// go install'ed binaries report "<version>-dev".
			if v.Flavor != tt.flavor || (v.Version != tt.version && v.Version != tt.version+"-dev") {
				t.Fatalf("Version() = %+v, want %s %s", v, tt.flavor, tt.version)
			}
		})
	}
}

func TestImport(t *testing.T) {
	t.Parallel()
	r := testRunner(t, "terraform")
	archive := tarFiles(t, map[string]string{"main.tf": lifecycleTemplate})
	var logs logSink
	res, err := r.Import(testContext(t), archive, provisionersdk.Metadata{}, nil, logs.add)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, logs.text())
	}
	if len(res.Parameters) != 2 {
		t.Fatalf("parameters = %+v, want 2", res.Parameters)
	}
	cpus, region := res.Parameters[0], res.Parameters[1]
	if cpus.Name != "cpus" || cpus.Type != "number" || cpus.DefaultValue != "2" || !cpus.Mutable || cpus.Required {
		t.Errorf("cpus parameter = %+v", cpus)
	}
	if cpus.ValidationMin == nil || *cpus.ValidationMin != 1 || cpus.ValidationMax == nil || *cpus.ValidationMax != 8 {
		t.Errorf("cpus validation = %v..%v", cpus.ValidationMin, cpus.ValidationMax)
	}
	if region.Name != "region" || region.DisplayName != "Region" || region.Description != "Where to run." ||
		region.Mutable || region.DefaultValue != "eu" || len(region.Options) != 2 || region.Options[1].Value != "us" {
		t.Errorf("region parameter = %+v", region)
	}

	if len(res.Resources) != 2 {
		t.Fatalf("start resources = %+v, want disk and vm", res.Resources)
	}
	vm := findResource(t, res.Resources, "terraform_data", "vm")
	if len(vm.Agents) != 1 {
		t.Fatalf("vm agents = %+v", vm.Agents)
	}
	agent := vm.Agents[0]
	if agent.Name != "dev" || agent.OperatingSystem != "linux" || agent.Architecture != "amd64" || agent.Directory != "/home/dev" {
		t.Errorf("agent = %+v", agent)
	}
	if len(agent.Apps) != 2 {
		t.Errorf("agent apps = %+v", agent.Apps)
	}
	disk := findResource(t, res.Resources, "terraform_data", "disk")
	if len(disk.Agents) != 0 || len(disk.Metadata) != 2 || disk.DailyCost != 3 {
		t.Errorf("disk = %+v", disk)
	}
	if len(res.StopResources) != 1 || res.StopResources[0].Name != "disk" {
		t.Errorf("stop resources = %+v, want only disk", res.StopResources)
	}
	if !strings.Contains(logs.text(), "Terraform has been successfully initialized") {
		t.Errorf("init logs missing:\n%s", logs.text())
	}
}

func TestBuildLifecycle(t *testing.T) {
	t.Parallel()
	r := testRunner(t, "terraform")
	ctx := testContext(t)
	archive := tarFiles(t, map[string]string{"main.tf": lifecycleTemplate})
	params := []codersdk.WorkspaceBuildParameter{{Name: "region", Value: "us"}, {Name: "cpus", Value: "4"}}

	// Start.
	var logs logSink
	start, err := r.Build(ctx, archive, nil, testMetadata(codersdk.WorkspaceTransitionStart, "http://127.0.0.1:1/"), params, logs.add)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.text())
	}
	if len(start.State) == 0 {
		t.Fatal("start returned no state")
	}
	if !strings.Contains(logs.text(), "Apply complete!") {
		t.Errorf("apply logs missing:\n%s", logs.text())
	}
	vm := findResource(t, start.Resources, "terraform_data", "vm")
	if len(vm.Agents) != 1 {
		t.Fatalf("vm agents = %+v", vm.Agents)
	}
	agent := vm.Agents[0]
	if agent.Token == "" || agent.ID == "" {
		t.Errorf("agent token/id missing: %+v", agent)
	}
	if strings.Contains(logs.text(), agent.Token) || strings.Contains(logs.text(), `"format_version"`) {
		t.Errorf("build log leaks terraform show -json output (agent token %q):\n%s", agent.Token, logs.text())
	}
	if !strings.Contains(string(start.State), agent.Token) {
		t.Errorf("agent token %q not in state", agent.Token)
	}
	if agent.Env["REGION"] != "us" || agent.Env["OWNER"] != "alice" {
		t.Errorf("agent env = %v (parameter or owner not passed)", agent.Env)
	}
	if len(agent.Metadata) != 1 || agent.Metadata[0].Key != "uptime" || agent.Metadata[0].Interval != 5 {
		t.Errorf("agent metadata = %+v", agent.Metadata)
	}
	if agent.DisplayApps == nil || !agent.DisplayApps.WebTerminal {
		t.Errorf("display apps = %+v", agent.DisplayApps)
	}
	scripts := map[string]provisionersdk.AgentScript{}
	for _, s := range agent.Scripts {
		scripts[s.DisplayName] = s
	}
	if s := scripts["Startup Script"]; s.Script != "echo started" || !s.RunOnStart {
		t.Errorf("startup script = %+v", s)
	}
	if s := scripts["Shutdown Script"]; s.Script != "echo stopping" || !s.RunOnStop {
		t.Errorf("shutdown script = %+v", s)
	}
	if s := scripts["Backup"]; s.Cron != "0 0 * * * *" {
		t.Errorf("cron script = %+v", s)
	}
	apps := map[string]provisionersdk.App{}
	for _, a := range agent.Apps {
		apps[a.Slug] = a
	}
	if a := apps["web"]; a.URL != "http://localhost:8080" || a.SharingLevel != provisionersdk.AppSharingLevelAuthenticated ||
		a.Healthcheck == nil || a.Healthcheck.Threshold != 5 {
		t.Errorf("web app = %+v", a)
	}
	if a := apps["shell"]; a.Command != "bash -l" || a.SharingLevel != provisionersdk.AppSharingLevelOwner {
		t.Errorf("shell app = %+v", a)
	}
	disk := findResource(t, start.Resources, "terraform_data", "disk")
	if len(disk.Agents) != 0 || disk.DailyCost != 3 || len(disk.Metadata) != 2 ||
		disk.Metadata[0].Key != "size" || disk.Metadata[0].Value != "10GiB" || !disk.Metadata[1].Sensitive {
		t.Errorf("disk = %+v", disk)
	}

	// Stop keeps the persistent disk and removes the computational resource.
	stop, err := r.Build(ctx, archive, start.State, testMetadata(codersdk.WorkspaceTransitionStop, "http://127.0.0.1:1/"), params, nil)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if len(stop.Resources) != 1 || stop.Resources[0].Name != "disk" || len(stop.Resources[0].Agents) != 0 {
		t.Fatalf("stop resources = %+v, want only disk without agents", stop.Resources)
	}
	if !strings.Contains(string(stop.State), `"disk-7b4c2f1e-0000-4000-8000-000000000002"`) {
		t.Errorf("persistent disk missing from stop state")
	}

	// Delete leaves nothing.
	del, err := r.Build(ctx, archive, stop.State, testMetadata(codersdk.WorkspaceTransitionDelete, "http://127.0.0.1:1/"), params, nil)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(del.State) != 0 || len(del.Resources) != 0 {
		t.Fatalf("delete left state (%d bytes) or resources %+v", len(del.State), del.Resources)
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{
			name:    "syntax error",
			files:   map[string]string{"main.tf": "resource \"terraform_data\" \"x\" {\n  input = \n}\n"},
			wantErr: "Invalid expression",
		},
		{
			name:    "unknown provider version",
			files:   map[string]string{"main.tf": "terraform {\n required_providers {\n coder = {\n source = \"coder/coder\"\n version = \"9.9.9\"\n }\n }\n}\n"},
			wantErr: "coder/coder",
		},
		{
			name:    "failing provisioner",
			files:   map[string]string{"main.tf": "resource \"terraform_data\" \"x\" {\n  provisioner \"local-exec\" {\n    command = \"echo boom-from-template >&2; exit 3\"\n  }\n}\n"},
			wantErr: "boom-from-template",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := testRunner(t, "terraform")
			_, err := r.Build(testContext(t), tarFiles(t, tt.files), nil, testMetadata(codersdk.WorkspaceTransitionStart, "http://127.0.0.1:1/"), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Build() error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestBuildCancel(t *testing.T) {
	t.Parallel()
	r := testRunner(t, "terraform")
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	tmpl := `
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "echo $$ > '` + pidFile + `'; exec sleep 600"
  }
}
`
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	type result struct {
		res *BuildResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := r.Build(ctx, tarFiles(t, map[string]string{"main.tf": tmpl}), nil, testMetadata(codersdk.WorkspaceTransitionStart, "http://127.0.0.1:1/"), nil, nil)
		done <- result{res, err}
	}()
	waitFor(t, 2*time.Minute, "the slow provisioner to start", func() bool {
		_, err := os.Stat(pidFile)
		return err == nil
	})
	waitFor(t, 10*time.Second, "the pid file to be written", func() bool {
		data, _ := os.ReadFile(pidFile)
		return strings.HasSuffix(string(data), "\n")
	})
	pid := readPID(t, pidFile)
	if !processAlive(pid) {
		t.Fatalf("sleep process %d not running", pid)
	}
	cancel()
	var got result
	select {
	case got = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Build did not return after cancel")
	}
	if !errors.Is(got.err, context.Canceled) {
		t.Fatalf("Build() error = %v, want context.Canceled", got.err)
	}
	waitFor(t, 30*time.Second, "the provisioner process to stop", func() bool { return !processAlive(pid) })
}

func TestOpenTofu(t *testing.T) {
	t.Parallel()
	r := testRunner(t, "tofu")
	ctx := testContext(t)
	archive := tarFiles(t, map[string]string{"main.tf": lifecycleTemplate})
	res, err := r.Import(ctx, archive, provisionersdk.Metadata{}, nil, nil)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if len(res.Parameters) != 2 || len(res.Resources) != 2 {
		t.Fatalf("import = %+v", res)
	}
	start, err := r.Build(ctx, archive, nil, testMetadata(codersdk.WorkspaceTransitionStart, "http://127.0.0.1:1/"), nil, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	vm := findResource(t, start.Resources, "terraform_data", "vm")
	if len(vm.Agents) != 1 || vm.Agents[0].Token == "" {
		t.Fatalf("vm agents = %+v", vm.Agents)
	}
	del, err := r.Build(ctx, archive, start.State, testMetadata(codersdk.WorkspaceTransitionDelete, "http://127.0.0.1:1/"), nil, nil)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(del.State) != 0 {
		t.Fatalf("delete left %d bytes of state", len(del.State))
	}
}
