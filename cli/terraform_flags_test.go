package cli_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestTerraformFlagsValidated: a terraform binary or CLI configuration that
// does not exist (given by flag, env twin, or the TF_CLI_CONFIG_FILE default)
// stops `coder provisioner start` and `coder server` at startup with the flag
// named, instead of failing every job later.
func TestTerraformFlagsValidated(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	dir := t.TempDir()
	start := []string{"provisioner", "start", "--url", "http://127.0.0.1:1", "--psk", "k"}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{name: "daemon binary flag", args: append(start, "--terraform-path", missing), want: "--terraform-path: stat " + missing},
		{name: "daemon binary env", args: start, env: []string{"CODER_TERRAFORM_PATH=" + missing}, want: "--terraform-path: stat " + missing},
		{name: "daemon config flag", args: append(start, "--terraform-cli-config", missing), want: "--terraform-cli-config: stat " + missing},
		{name: "daemon config default", args: start, env: []string{"TF_CLI_CONFIG_FILE=" + missing}, want: "--terraform-cli-config: stat " + missing},
		{name: "daemon config directory", args: append(start, "--terraform-cli-config", dir), want: "is a directory"},
		{name: "server binary", args: []string{"server", "--terraform-path", missing}, want: "--terraform-path: stat " + missing},
		{name: "server config default", args: []string{"server"}, env: []string{"TF_CLI_CONFIG_FILE=" + missing}, want: "--terraform-cli-config: stat " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, _ := testEnv(t)
			res := runCLI(t, append(env, tt.env...), nil, tt.args...)
			if res.code == 0 || !strings.Contains(res.stderr, tt.want) {
				t.Fatalf("coder %s: exit %d, stderr %q; want an error with %q", strings.Join(tt.args, " "), res.code, res.stderr, tt.want)
			}
		})
	}
}
