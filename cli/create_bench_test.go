package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tailscale.com/types/key"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/derp"
)

// mustRunB runs the CLI in-process and fails the benchmark on a non-zero exit.
func mustRunB(b *testing.B, env []string, args ...string) string {
	b.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), cli.Invocation{Args: args, Stdout: &stdout, Stderr: &stderr, Environ: env})
	if code != 0 {
		b.Fatalf("coder %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// BenchmarkCreateToReady measures `coder create` of examples/templates/local
// until the workspace agent is connected and ready, against a real coderd,
// PostgreSQL and an external provisioner daemon running terraform. Metrics:
// total-ms/op (create command start → agent ready), terraform-ms/op (build
// job started → completed on the daemon), queue-ms/op (job created →
// acquired) and agent-ms/op (build command returned → agent ready). Deleting
// each workspace is not timed.
func BenchmarkCreateToReady(b *testing.B) {
	ctx := context.Background()
	bin := buildCoderB(b)
	const psk = "bench-psk"
	derpServer := derp.NewServer(nil, key.NewNode())
	b.Cleanup(func() { _ = derpServer.Close() })
	client, _ := coderdtest.New(b, &coderdtest.Options{API: coderd.Options{
		Provisioning: coderd.ProvisioningOptions{PSK: psk, AgentBinaryPath: bin},
		Agents:       coderd.AgentOptions{DERPServer: derpServer},
	}})
	coderdtest.CreateFirstUser(b, client)
	startDaemon(b, bin, client.URL.String(), psk, b.TempDir(), "--name", "bench-1")
	dir := b.TempDir()
	env := []string{"HOME=" + dir, "CODER_CONFIG_DIR=" + filepath.Join(dir, "config"),
		"CODER_URL=" + client.URL.String(), "CODER_SESSION_TOKEN=" + client.SessionToken()}
	tmplDir := filepath.Join(dir, "local")
	mustRunB(b, env, "templates", "init", tmplDir)
	mustRunB(b, env, "templates", "push", "local", "-d", tmplDir, "-y")

	var total, tf, queue, agent time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench%d", i)
		start := time.Now()
		mustRunB(b, env, "create", name, "-t", "local", "-y")
		built := time.Now()
		ws, err := client.WorkspaceByOwnerAndName(ctx, codersdk.Me, name)
		if err != nil {
			b.Fatal(err)
		}
		var agents []codersdk.WorkspaceAgent
		for _, res := range ws.LatestBuild.Resources {
			agents = append(agents, res.Agents...)
		}
		if len(agents) != 1 {
			b.Fatalf("agents of %s: %+v", name, agents)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			a, err := client.WorkspaceAgent(ctx, agents[0].ID)
			if err != nil {
				b.Fatal(err)
			}
			if a.Status == codersdk.WorkspaceAgentConnected && a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("agent of %s not ready: %s %s", name, a.Status, a.LifecycleState)
			}
			time.Sleep(20 * time.Millisecond)
		}
		now := time.Now()
		total += now.Sub(start)
		agent += now.Sub(built)
		job := ws.LatestBuild.Job
		if job.StartedAt == nil || job.CompletedAt == nil {
			b.Fatalf("build job of %s: %+v", name, job)
		}
		tf += job.CompletedAt.Sub(*job.StartedAt)
		queue += job.StartedAt.Sub(job.CreatedAt)
		b.StopTimer()
		mustRunB(b, env, "delete", name, "-y")
		b.StartTimer()
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	b.ReportMetric(ms(total), "total-ms/op")
	b.ReportMetric(ms(tf), "terraform-ms/op")
	b.ReportMetric(ms(queue), "queue-ms/op")
	b.ReportMetric(ms(agent), "agent-ms/op")
}
