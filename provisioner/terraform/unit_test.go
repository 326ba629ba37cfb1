package terraform

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

func TestParseUILine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line      string
		wantOK    bool
		wantLevel codersdk.LogLevel
		wantOut   string
	}{
		{`{"@level":"info","@message":"terraform_data.x: Creating...","type":"apply_start"}`, true, codersdk.LogLevelInfo, "terraform_data.x: Creating..."},
		{`{"@level":"error","@message":"Error: Invalid expression","type":"diagnostic","diagnostic":{"severity":"error","summary":"Invalid expression","detail":"Expected the start of an expression.","range":{"filename":"main.tf","start":{"line":2}}}}`, true, codersdk.LogLevelError, "Error: Invalid expression (main.tf:2): Expected the start of an expression."},
		{`{"@level":"warn","@message":"Warning: x","type":"diagnostic","diagnostic":{"severity":"warning","summary":"x"}}`, true, codersdk.LogLevelWarn, "Warning: x"},
		{`plain text`, false, "", ""},
	}
	for _, tt := range tests {
		level, out, ok := parseUILine(tt.line)
		if ok != tt.wantOK || level != tt.wantLevel || out != tt.wantOut {
			t.Errorf("parseUILine(%s) = %q, %q, %v; want %q, %q, %v", tt.line, level, out, ok, tt.wantLevel, tt.wantOut, tt.wantOK)
		}
	}
}

func TestContractEnv(t *testing.T) {
	t.Parallel()
	md := testMetadata(codersdk.WorkspaceTransitionStop, "https://coder.example.com/")
	md.WorkspaceOwnerGroups = []string{"dev", "ops"}
	env := ContractEnv(md, []codersdk.WorkspaceBuildParameter{{Name: "region", Value: "eu"}})
	sum := sha256.Sum256([]byte("region"))
	want := map[string]string{
		"CODER_AGENT_URL":                               "https://coder.example.com/",
		"CODER_WORKSPACE_TRANSITION":                    "stop",
		"CODER_WORKSPACE_NAME":                          "dev",
		"CODER_WORKSPACE_OWNER":                         "alice",
		"CODER_WORKSPACE_OWNER_GROUPS":                  `["dev","ops"]`,
		"CODER_WORKSPACE_TEMPLATE_ID":                   md.TemplateID,
		"CODER_PARAMETER_" + hex.EncodeToString(sum[:]): "eu",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	script := env["CODER_AGENT_SCRIPT_linux_amd64"]
	if !strings.Contains(script, "access_url='${ACCESS_URL}'") || !strings.Contains(script, "bin/coder-linux-amd64") {
		t.Errorf("linux/amd64 init script does not download the agent:\n%s", script)
	}
}

func TestAgentInitScript(t *testing.T) {
	t.Parallel()
	script := AgentInitScript("linux", "arm64", "https://coder.example.com")
	for _, want := range []string{"access_url='https://coder.example.com/'", "bin/coder-linux-arm64", "agent_auth='${AUTH_TYPE}'", "exec \"$binary_path\" agent"} {
		if !strings.Contains(script, want) {
			t.Errorf("init script lacks %q:\n%s", want, script)
		}
	}
}

// TestRunnerDefaultBinary: without TerraformPath the runner takes terraform
// from PATH, else tofu, and says so clearly when neither is there. It looks
// nowhere else (no development caches).
func TestRunnerDefaultBinary(t *testing.T) {
	deps := terraformtest.Find(t)
	link := func(dir, name, target string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	both, tofuOnly, none := t.TempDir(), t.TempDir(), t.TempDir()
	link(both, "terraform", deps.Terraform)
	link(both, "tofu", deps.Tofu)
	link(tofuOnly, "tofu", deps.Tofu)
	tests := []struct {
		name, path, wantFlavor, wantErr string
	}{
		{name: "terraform first", path: both, wantFlavor: FlavorTerraform},
		{name: "tofu fallback", path: tofuOnly, wantFlavor: FlavorOpenTofu},
		{name: "neither", path: none, wantErr: ErrNoBinary.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			v, err := (&Runner{}).Version(testContext(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Version() = %+v, %v; want error %q", v, err, tt.wantErr)
				}
				return
			}
			if err != nil || v.Flavor != tt.wantFlavor || filepath.Dir(v.Path) != tt.path {
				t.Fatalf("Version() = %+v, %v; want %s from %s", v, err, tt.wantFlavor, tt.path)
			}
		})
	}
}
