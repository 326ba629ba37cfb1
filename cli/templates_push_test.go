package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// TestTemplatePushAgentWarningAndErrorsOnce pushes templates to a coder
// server with a built-in provisioner daemon and real terraform: an empty
// main.tf and one without a coder_agent are accepted with a warning, one
// with an agent is not warned about, and a template terraform rejects
// reports terraform's diagnostics once in the log and once in the error,
// not repeated.
func TestTemplatePushAgentWarningAndErrorsOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
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
	const warning = "warning: the template defines no coder_agent"
	for _, tc := range []struct {
		name, mainTF, detail string
	}{
		{"empty", "", "it has no resources at all"},
		{"no-agent", "resource \"terraform_data\" \"x\" {}\n", "none of its resources has an agent"},
	} {
		res := runCLI(t, env, nil, "templates", "push", tc.name, "-d", dir(tc.mainTF), "-y")
		if res.code != 0 {
			t.Fatalf("push %s: exit %d\n%s\n%s", tc.name, res.code, res.stdout, res.stderr)
		}
		if !strings.Contains(res.stderr, warning+" ("+tc.detail+")") || !strings.Contains(res.stdout, `Created template "`+tc.name+`"`) ||
			strings.Contains(res.stderr, "WARNING: template") {
			t.Fatalf("push %s: want the template created with a warning; stdout:\n%s\nstderr:\n%s", tc.name, res.stdout, res.stderr)
		}
	}

	tmplDir := filepath.Join(t.TempDir(), "local")
	mustRun(t, env, "templates", "init", tmplDir)
	res := runCLI(t, env, nil, "templates", "push", "local", "-d", tmplDir, "-y")
	if res.code != 0 || strings.Contains(res.stderr, warning) {
		t.Fatalf("push of a template with an agent: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	// The local example gives every member a shell as the server's user:
	// each push says so, and so does the template's description.
	const singleUser = `WARNING: template "local": single-user laptops only.`
	if !strings.Contains(res.stderr, singleUser) || !strings.Contains(res.stderr, "examples/templates/docker") {
		t.Fatalf("push of the local example: no single-user warning; stderr:\n%s", res.stderr)
	}
	local, err := client.TemplateByName(ctx, "local")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(local.Description, "SINGLE-USER ONLY") || !strings.Contains(local.DisplayName, "single-user") {
		t.Fatalf("local template: display name %q, description %q", local.DisplayName, local.Description)
	}
	res = runCLI(t, env, nil, "templates", "push", "local", "-d", tmplDir, "-y")
	if res.code != 0 || !strings.Contains(res.stderr, singleUser) {
		t.Fatalf("update of the local template: exit %d, no warning; stderr:\n%s", res.code, res.stderr)
	}

	res = runCLI(t, env, nil, "templates", "push", "broken", "-d", dir("resource \"terraform_data\" \"x\" {\n  input = \n}\n"), "-y")
	if res.code != 1 {
		t.Fatalf("push of invalid HCL: exit %d", res.code)
	}
	const diag = "Invalid expression"
	if n := strings.Count(res.stdout, diag); n != 1 {
		t.Fatalf("the build log shows the diagnostic %d times, want once:\n%s", n, res.stdout)
	}
	if n := strings.Count(res.stderr, diag); n != 1 || strings.Count(res.stderr, "error: ") != 1 {
		t.Fatalf("the error shows the diagnostic %d times, want one error with it once:\n%s", n, res.stderr)
	}
	if !strings.Contains(res.stderr, "exit status 1") {
		t.Fatalf("the error lost terraform's exit status:\n%s", res.stderr)
	}
}
