package cli_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/internal/hatest"
)

// TestHACrossReplicaMeshPath proves the relay mesh carries sessions between
// peers homed on different replicas' relays, deterministically: direct
// connections are blocked (DERP only) and each replica's access URL, hence
// the one relay its DERP map names, is its own. The agent is pinned to
// replica A (so it homes on A's relay), the client to replica B (B's
// relay): a relayed packet from the client reaches the agent only if B's
// relay forwards it to A's. With the mesh the session works; with the
// replicas started without relay URLs (no mesh) it cannot come up while
// the same client pinned to A, sharing the agent's relay, still works.
func TestHACrossReplicaMeshPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mesh bool
	}{{"mesh", true}, {"no-mesh", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHAEnvWith(t, hatest.Options{Replicas: 2, OwnAccessURL: true, NoMesh: !tc.mesh, Args: []string{"--block-direct-connections"}})
			a, b := h.cluster.Replicas[0], h.cluster.Replicas[1]
			e := h.reach
			agentID, token := e.addWorkspace("ws1")
			e.srv.URL, _ = url.Parse(a.URL) // the agent homes on A's relay
			e.runAgent(token)
			e.waitConnected(agentID)
			if tc.mesh {
				if got := h.agentReplica(t, agentID); got != a.URL {
					t.Fatalf("agent coordinated by %s, want replica A %s", got, a.URL)
				}
			}

			e.pointCLI(b.URL) // the client homes on B's relay
			if tc.mesh {
				res := runCLI(t, e.env, nil, "ssh", "ws1", "--", "echo", "through-the-mesh")
				if res.code != 0 || strings.TrimSpace(res.stdout) != "through-the-mesh" {
					t.Fatalf("ssh via replica B with the mesh: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
				}
				return
			}
			// The negative check needs a bound: 45 s is many times what
			// the mesh case takes (the session is up within a few seconds).
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			res := runCLIContext(ctx, e.env, "ssh", "ws1", "--", "echo", "through-the-mesh")
			if res.code == 0 || strings.Contains(res.stdout, "through-the-mesh") {
				t.Fatalf("ssh via replica B without a mesh worked (exit %d, stdout %q): the test does not force the relay path", res.code, res.stdout)
			}
			// Control: sharing the agent's relay, the same client works.
			e.pointCLI(a.URL)
			res = runCLI(t, e.env, nil, "ssh", "ws1", "--", "echo", "same-relay")
			if res.code != 0 || strings.TrimSpace(res.stdout) != "same-relay" {
				t.Fatalf("ssh via replica A without a mesh: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
			}
		})
	}
}
