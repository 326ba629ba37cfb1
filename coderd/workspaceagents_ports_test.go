package coderd_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// TestAgentListeningPortsAPI: GET /workspaceagents/{id}/listening-ports
// asks the agent over the mesh and lists a port opened in the workspace;
// another member gets 403 (as for an unknown agent), an anonymous caller
// 401, and an agent that is not connected is a 409 with the reason.
func TestAgentListeningPortsAPI(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t)
	owner := e.client()
	first := coderdtest.CreateFirstUser(t, owner)
	member, _ := coderdtest.CreateAnotherUser(t, owner)
	agentID, token := insertAgent(t, e.store, uuid.MustParse(first.UserID))
	ctx := context.Background()

	// Not connected yet: 409.
	_, err := owner.WorkspaceAgentListeningPorts(ctx, agentID)
	if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != http.StatusConflict {
		t.Fatalf("ports of an agent that never connected: %v", err)
	}

	runAgent(t, e.url, token)
	waitAgent(t, owner, agentID, "connected", func(a codersdk.WorkspaceAgent) bool { return a.Status == codersdk.WorkspaceAgentConnected })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	res, err := owner.WorkspaceAgentListeningPorts(ctx, agentID)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range res.Ports {
		if p.Port == port && p.Network == "tcp" {
			found = true
		}
	}
	if !found {
		t.Fatalf("port %d not among %+v", port, res.Ports)
	}

	for _, tc := range []struct {
		name   string
		client *codersdk.Client
		agent  uuid.UUID
		want   int
	}{
		{"member, owner's agent", member, agentID, http.StatusForbidden},
		{"member, unknown agent", member, uuid.New(), http.StatusForbidden},
		{"anonymous", e.client(), agentID, http.StatusUnauthorized},
	} {
		_, err := tc.client.WorkspaceAgentListeningPorts(ctx, tc.agent)
		if apiErr, ok := codersdk.AsError(err); !ok || apiErr.StatusCode() != tc.want {
			t.Fatalf("%s: %v, want %d", tc.name, err, tc.want)
		}
	}
}
