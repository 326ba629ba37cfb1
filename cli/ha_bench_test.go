package cli_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/internal/hatest"
)

// BenchmarkHASSHTrue measures `coder ssh WS -- true` (a fresh process each
// run) with 2 replicas behind HAProxy and the agent's connection pinned to
// replica A, in one run: the CLI talking to replica A (same replica as the
// agent), to replica B (cross-replica: nodes go through the PostgreSQL
// coordinator) and to the load balancer (round robin over both).
//
// With CODER_BENCH_HA_OWN_RELAYS=1 each replica's access URL (and so the
// relay its DERP map names) is its own address instead of the load
// balancer's: the agent homes on A's relay and a client on the relay of
// the replica it talks to (the via-lb case then has no fixed relay).
func BenchmarkHASSHTrue(b *testing.B) {
	h := newHAEnvWith(b, hatest.Options{Replicas: 2, OwnAccessURL: os.Getenv("CODER_BENCH_HA_OWN_RELAYS") == "1"})
	e := h.reach
	a, bb := h.cluster.Replicas[0], h.cluster.Replicas[1]
	agentID, token := e.addWorkspace("ws1")
	e.srv.URL, _ = url.Parse(a.URL)
	e.runAgent(token)
	e.waitConnected(agentID)
	if got := h.agentReplica(b, agentID); got != a.URL {
		b.Fatalf("agent coordinated by %s, want replica A %s", got, a.URL)
	}
	b.ResetTimer()
	for _, c := range []struct{ name, url string }{{"same-replica", a.URL}, {"cross-replica", bb.URL}, {"via-lb", h.cluster.URL}} {
		e.pointCLI(c.url)
		timeRuns(b, c.name, func() *exec.Cmd {
			cmd := exec.Command(h.bin, "--global-config", e.cfgDir, "ssh", "ws1", "--", "true")
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home}
			return cmd
		})
	}
}

// killRecoveryRuns is how many kills BenchmarkHAKillRecovery times.
const killRecoveryRuns = 10

// BenchmarkHAKillRecovery kills (SIGKILL) the replica serving the agent's
// coordinator connection, 10 times over one deployment of 3 replicas behind
// HAProxy (the killed replica is started again between runs), and reports
// p50 and max of: the time until the agent is registered on a live replica
// again, and the time until a new `coder ssh WS -- true` through the load
// balancer succeeds (retried from the kill on).
func BenchmarkHAKillRecovery(b *testing.B) {
	h := newHAEnv(b, 3)
	e := h.reach
	agentID, token := e.addWorkspace("ws1")
	e.runAgent(token) // through the load balancer
	e.waitConnected(agentID)
	ctx := context.Background()
	var agentBack, sshBack []time.Duration
	b.ResetTimer()
	for run := 0; run < killRecoveryRuns*b.N; run++ {
		victimURL := h.agentReplica(b, agentID)
		victim := h.cluster.Replicas[slices.IndexFunc(h.cluster.Replicas, func(r *hatest.Replica) bool { return r.URL == victimURL })]
		killed := time.Now()
		victim.Kill(b)
		sshDone := make(chan time.Duration, 1)
		go func() {
			for {
				cmd := exec.Command(h.bin, "--global-config", e.cfgDir, "ssh", "ws1", "--", "true")
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home}
				if cmd.Run() == nil {
					sshDone <- time.Since(killed)
					return
				}
				if time.Since(killed) > 2*time.Minute {
					sshDone <- -1
					return
				}
			}
		}()
		waitFor(b, 2*time.Minute, "the agent re-registered on a live replica", func() (bool, error) {
			var coord uuid.UUID
			err := h.pool.Pool().QueryRow(ctx, `SELECT p.coordinator_id FROM tailnet_peers p
				JOIN replicas r ON r.id = p.coordinator_id WHERE p.id = $1 AND p.status = 'ok' AND r.relay_address <> $2 AND r.stopped_at IS NULL`, agentID, victimURL).Scan(&coord)
			return err == nil, nil
		})
		agentBack = append(agentBack, time.Since(killed))
		d := <-sshDone
		if d < 0 {
			b.Fatalf("run %d: no coder ssh succeeded within 2 minutes of the kill", run)
		}
		sshBack = append(sshBack, d)
		b.StopTimer()
		victim.Restart(b)
		waitFor(b, 2*time.Minute, "3 live replicas again", func() (bool, error) {
			rs, err := e.client.Replicas(ctx)
			return err == nil && len(rs) == 3, nil
		})
		b.StartTimer()
	}
	b.StopTimer()
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Milliseconds()), name+"-p50-ms")
		b.ReportMetric(float64(d[len(d)-1].Milliseconds()), name+"-max-ms")
	}
	report("agent-back", agentBack)
	report("new-ssh", sshBack)
}
