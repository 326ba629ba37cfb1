package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/agent"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// TestSSHTellsWhatItWaitsFor: a new `coder ssh` to a workspace whose agent
// went away says what it waits for (agent, status, when it was last seen,
// time left) instead of staying silent until the connect timeout.
func TestSSHTellsWhatItWaitsFor(t *testing.T) {
	t.Parallel()
	e := newReachEnv(t)
	agentID, token := e.addWorkspace("gone")
	a, err := agent.New(agent.Options{
		Client: agentsdk.New(e.srv.URL, token), DataDir: t.TempDir(), Shell: "/bin/sh",
		BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	e.waitConnected(agentID)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("agent run: %v", err)
	}
	waitFor(t, time.Minute, "the agent to show as disconnected", func() (bool, error) {
		ag, err := e.client.WorkspaceAgent(context.Background(), agentID)
		return err == nil && ag.Status == codersdk.WorkspaceAgentDisconnected, nil
	})

	res := runCLI(t, e.env, nil, "ssh", "gone", "--connect-timeout", "3s", "--", "true")
	t.Logf("stderr:\n%s", res.stderr)
	if res.code == 0 {
		t.Fatalf("ssh to a disconnected agent succeeded: %+v", res)
	}
	notice := `waiting for agent "main" (status: disconnected, last seen `
	if !strings.Contains(res.stderr, notice) || !strings.Contains(res.stderr, "giving up in ") {
		t.Fatalf("stderr does not say what it waits for:\n%s", res.stderr)
	}
	if !strings.Contains(res.stderr, `agent "main" is not ready after 3s`) {
		t.Fatalf("stderr lacks the timeout error:\n%s", res.stderr)
	}
}
