package terraform

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
)

// variablesTemplate declares a required, a sensitive required, a defaulted
// and a list variable; a build writes them into a file so the test sees
// what terraform got.
const variablesTemplate = `
variable "region" {
  type        = string
  description = "Where workspaces run"
}
variable "secret" {
  type      = string
  sensitive = true
}
variable "size" {
  type    = string
  default = "small"
}
variable "zones" {
  type    = list(string)
  default = ["a"]
}
resource "terraform_data" "seen" {
  input = "${var.region}/${var.size}/${join(",", var.zones)}/${sha256(var.secret)}"
}
output "seen" {
  value = terraform_data.seen.output
}
`

// TestImportVariables runs real terraform: a missing required variable is
// a MissingVariablesError naming every missing one, a value for an
// undeclared variable is refused, and the declared variables come back
// with their defaults, sensitivity and required flag. Values reach
// terraform (lists as lists) and never appear in the logs, and the var
// file is gone once the job ends.
func TestImportVariables(t *testing.T) {
	t.Parallel()
	r := testRunner(t, "terraform")
	ctx := testContext(t)
	archive := tarFiles(t, map[string]string{"main.tf": variablesTemplate})
	const secret = "s3cr3t-value-never-logged"

	_, err := r.Import(ctx, archive, provisionersdk.Metadata{}, nil, nil, WithVariables([]codersdk.VariableValue{{Name: "size", Value: "large"}}))
	var missing *MissingVariablesError
	if !errors.As(err, &missing) || strings.Join(missing.Names, ",") != "region,secret" {
		t.Fatalf("import without required variables: %v; want a MissingVariablesError for region and secret", err)
	}
	if !strings.Contains(err.Error(), "--variable region=VALUE") {
		t.Fatalf("missing variable error does not say how to fix it: %v", err)
	}

	_, err = r.Import(ctx, archive, provisionersdk.Metadata{}, nil, nil, WithVariables([]codersdk.VariableValue{
		{Name: "region", Value: "eu"}, {Name: "secret", Value: secret}, {Name: "typo", Value: "x"},
	}))
	if err == nil || !strings.Contains(err.Error(), `no Terraform variable "typo"`) {
		t.Fatalf("import with an undeclared variable: %v", err)
	}

	var mu sync.Mutex
	var logs []string
	logf := func(l provisionersdk.Log) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, l.Output)
	}
	vals := WithVariables([]codersdk.VariableValue{
		{Name: "region", Value: "eu"}, {Name: "secret", Value: secret}, {Name: "zones", Value: `["x","y"]`},
	})
	res, err := r.Import(ctx, archive, provisionersdk.Metadata{}, nil, logf, vals)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	got := map[string]provisionersdk.TemplateVariable{}
	for _, v := range res.Variables {
		got[v.Name] = v
	}
	want := map[string]provisionersdk.TemplateVariable{
		"region": {Name: "region", Description: "Where workspaces run", Required: true},
		"secret": {Name: "secret", Required: true, Sensitive: true},
		"size":   {Name: "size", Type: "string", DefaultValue: "small"},
		"zones":  {Name: "zones", Type: "list", DefaultValue: `["a"]`},
	}
	if len(got) != len(want) {
		t.Fatalf("variables = %+v", res.Variables)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("variable %s = %+v, want %+v", name, got[name], w)
		}
	}

	b, err := r.Build(ctx, archive, nil, testMetadata(codersdk.WorkspaceTransitionStart, "http://127.0.0.1:1/"), nil, logf, vals)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	if !strings.Contains(string(b.State), `eu/small/x,y/`) {
		t.Fatalf("state does not hold the values terraform got:\n%s", b.State)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range logs {
		if strings.Contains(l, secret) {
			t.Fatalf("a log line holds the sensitive value: %q", l)
		}
	}
	entries, err := os.ReadDir(r.WorkDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(r.WorkDir, e.Name(), varFileName)); err == nil {
			t.Fatalf("var file left in %s", e.Name())
		}
	}
}
