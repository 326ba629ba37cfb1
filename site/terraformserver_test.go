package site_test

import (
	"context"
	"testing"
	"time"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner"
	"github.com/wgmesh/coder/provisioner/terraform"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// newTerraformServer starts coderd (with agents' options) on a fresh
// database with its first user, and an in-process provisioner daemon
// named name running real terraform; the daemon stops at cleanup.
func newTerraformServer(t *testing.T, name string, agents coderd.AgentOptions) (*codersdk.Client, *coderdtest.Server) {
	t.Helper()
	psk := name + "-psk"
	deps := terraformtest.Find(t)
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		Agents:       agents,
		Provisioning: coderd.ProvisioningOptions{PSK: psk, AcquireWait: time.Second},
	}})
	coderdtest.CreateFirstUser(t, client)
	d := &provisioner.Daemon{
		Client: &provisionersdk.Client{URL: client.URL, PSK: psk}, Name: name,
		Runner: &terraform.Runner{TerraformPath: deps.Terraform, CLIConfigPath: deps.CLIConfig, WorkDir: t.TempDir()},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return client, srv
}
