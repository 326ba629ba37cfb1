package agentsdk

import (
	"context"
	"net/http"

	"github.com/wgmesh/coder/codersdk"
)

// PostScriptRunRequest reports the start (Status running) or the end of a
// run of one of the agent's scripts.
type PostScriptRunRequest = codersdk.WorkspaceAgentScriptRun

// PostScriptRun reports a script run
// (POST /api/v2/workspaceagents/me/script-runs).
func (c *Client) PostScriptRun(ctx context.Context, req PostScriptRunRequest) error {
	return c.do(ctx, http.MethodPost, "/api/v2/workspaceagents/me/script-runs", req, nil)
}
