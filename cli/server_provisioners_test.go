package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// TestServerBuiltinProvisionerDaemons runs `coder server
// --provisioner-daemons 2` in-process: two built-in daemons register through
// the daemon protocol (`coder provisioner list` shows them) and a template
// import completes on one of them, with the terraform binary and CLI
// configuration the server was given.
func TestServerBuiltinProvisionerDaemons(t *testing.T) {
	t.Parallel()
	pgURL := dbtestutil.NewDB(t)
	env, _ := testEnv(t)
	env = append(env, "CODER_PG_CONNECTION_URL="+pgURL, "CODER_HTTP_ADDRESS=127.0.0.1:0",
		"CODER_DERP_SERVER_STUN_ADDRESSES=127.0.0.1:0")
	// The terraform CLI configuration (the provider mirror the local template
	// needs) comes from terraform's own TF_CLI_CONFIG_FILE, the default of
	// --terraform-cli-config.
	deps := terraformtest.Find(t)
	env = append(env, cli.EnvTerraformPath+"="+deps.Terraform, "TF_CLI_CONFIG_FILE="+deps.CLIConfig)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := cli.Run(ctx, cli.Invocation{
			Args:   []string{"server", "--provisioner-daemons", "2"},
			Stdout: outW, Stderr: &lockedWriter{mu: new(sync.Mutex), w: &stderr}, Environ: env,
		})
		_ = outW.Close()
		done <- code
	}()
	stopServer := func() int {
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(time.Minute):
			t.Fatal("server did not stop within a minute of cancellation")
			return -1
		}
	}
	scanner := bufio.NewScanner(outR)
	var serverURL string
	for scanner.Scan() {
		line := scanner.Text()
		if rest, ok := strings.CutPrefix(line, "Started HTTP listener at "); ok {
			serverURL = rest
		}
		if strings.HasPrefix(line, "Log in from a terminal:") {
			break
		}
	}
	if serverURL == "" {
		stopServer()
		t.Fatalf("server did not print its URL; stderr:\n%s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()

	cliEnv, _ := testEnv(t)
	mustRun(t, append(cliEnv, "CODER_FIRST_USER_USERNAME=admin", "CODER_FIRST_USER_EMAIL=admin@coder.test",
		"CODER_FIRST_USER_PASSWORD="+coderdtest.FirstUserPassword), "login", serverURL)

	// Both built-in daemons register and poll for jobs.
	var daemons []codersdk.ProvisionerDaemon
	waitFor(t, time.Minute, "two built-in daemons", func() (bool, error) {
		daemons = nil
		if err := json.Unmarshal([]byte(mustRun(t, cliEnv, "provisioner", "list", "-o", "json")), &daemons); err != nil {
			return false, err
		}
		idle := 0
		for _, d := range daemons {
			if strings.Contains(d.Name, "-builtin-") && d.Status == "idle" {
				idle++
			}
		}
		return idle == 2, nil
	})
	if len(daemons) != 2 {
		t.Fatalf("daemons: %+v", daemons)
	}
	for _, d := range daemons {
		if !strings.HasPrefix(d.TerraformVersion, "terraform ") || d.Tags["scope"] != "organization" {
			t.Fatalf("built-in daemon: %+v", d)
		}
	}
	out := mustRun(t, cliEnv, "provisioner", "list")
	if !strings.Contains(out, "-builtin-0") || !strings.Contains(out, "-builtin-1") {
		t.Fatalf("provisioner list: %s", out)
	}

	// A template import runs on a built-in daemon.
	tmplDir := filepath.Join(t.TempDir(), "local")
	mustRun(t, cliEnv, "templates", "init", tmplDir)
	out = mustRun(t, cliEnv, "templates", "push", "local", "-d", tmplDir, "-y")
	if !strings.Contains(out, `Created template "local"`) {
		t.Fatalf("push: %s", out)
	}
	var versions []codersdk.TemplateVersion
	if err := json.Unmarshal([]byte(mustRun(t, cliEnv, "templates", "versions", "list", "local", "-o", "json")), &versions); err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1 || versions[0].Job.Status != codersdk.ProvisionerJobSucceeded || versions[0].Job.WorkerID == nil {
		t.Fatalf("versions: %+v", versions)
	}
	found := false
	for _, d := range daemons {
		found = found || d.ID == *versions[0].Job.WorkerID
	}
	if !found {
		t.Fatalf("import ran on %s, not on a built-in daemon %+v", *versions[0].Job.WorkerID, daemons)
	}

	if code := stopServer(); code != 0 {
		t.Fatalf("server exited %d; stderr:\n%s", code, stderr.String())
	}
}
