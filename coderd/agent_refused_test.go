package coderd_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// TestAgentExitsWhenTokenRefused: an agent whose token coderd keeps
// refusing (never known, or replaced while the agent was connected, as
// when its workspace is deleted or rebuilt) exits with a message instead
// of retrying forever; the old agent retried 401s for as long as it lived.
func TestAgentExitsWhenTokenRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// connectFirst: the agent runs with a good token, which coderd then
		// stops accepting (and coderd restarts, dropping its connections).
		connectFirst bool
	}{
		{name: "unknown token"},
		{name: "token revoked while connected", connectFirst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newAgentEnv(t)
			owner := e.client()
			first := coderdtest.CreateFirstUser(t, owner)
			agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID), startScript("echo refused-test", 0))
			if !tc.connectFirst {
				token = uuid.NewString()
			}
			p := startAgentProcess(t, "CODER_AGENT_URL="+e.url.String(), "CODER_AGENT_TOKEN="+token,
				"CODER_AGENT_TOKEN_REFUSED_TIMEOUT=2s")
			if tc.connectFirst {
				// The legitimate agent connects and stays up.
				waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool {
					return a.Status == codersdk.WorkspaceAgentConnected
				})
				if _, err := e.pool.Exec(context.Background(), "UPDATE workspace_agents SET auth_token_hash = $1 WHERE id = $2",
					coderd.HashAgentToken(uuid.NewString()), agentID); err != nil {
					t.Fatal(err)
				}
				e.stop()
				e.start()
			}
			select {
			case <-p.done:
			case <-time.After(2 * time.Minute):
				t.Fatal("the agent is still retrying a refused token")
			}
			var exitErr *exec.ExitError
			if !errors.As(p.err, &exitErr) || exitErr.ExitCode() == 0 {
				t.Fatalf("agent exit: %v", p.err)
			}
			if out := p.stderr.String(); !strings.Contains(out, "refusing the agent token") {
				t.Fatalf("agent output does not say why it stopped:\n%s", out)
			}
		})
	}
}
