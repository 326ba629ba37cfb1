package codersdk

import (
	"context"
	"net/http"

	"github.com/google/uuid"
)

// WorkspaceAgentListeningPort is a TCP port listening inside a workspace,
// as its agent detects it.
type WorkspaceAgentListeningPort struct {
	Network     string `json:"network"`
	Port        uint16 `json:"port"`
	ProcessName string `json:"process_name,omitempty"`
}

// WorkspaceAgentListeningPortsResponse is the body of
// GET /api/v2/workspaceagents/{id}/listening-ports.
type WorkspaceAgentListeningPortsResponse struct {
	Ports []WorkspaceAgentListeningPort `json:"ports"`
}

// WorkspaceAgentListeningPorts asks the agent (through coderd) which TCP
// ports listen inside the workspace. It needs the right to connect to the
// workspace.
func (c *Client) WorkspaceAgentListeningPorts(ctx context.Context, id uuid.UUID) (WorkspaceAgentListeningPortsResponse, error) {
	var out WorkspaceAgentListeningPortsResponse
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceagents/"+id.String()+"/listening-ports", nil, http.StatusOK, &out)
	return out, err
}
