package codersdk

import (
	"context"
	"net/http"
	"net/url"

	"github.com/google/uuid"
)

// UpdateWorkspaceRequest changes a workspace's settings (today: its name).
type UpdateWorkspaceRequest struct {
	Name string `json:"name,omitempty"`
}

// UpdateWorkspace renames a workspace (PATCH /api/v2/workspaces/{id}).
// coderd refuses a rename while the workspace runs or builds.
func (c *Client) UpdateWorkspace(ctx context.Context, id uuid.UUID, req UpdateWorkspaceRequest) error {
	return c.do(ctx, http.MethodPatch, "/api/v2/workspaces/"+id.String(), req, http.StatusNoContent, nil)
}

// FavoriteWorkspace marks one of the caller's workspaces as a favorite.
func (c *Client) FavoriteWorkspace(ctx context.Context, id uuid.UUID) error {
	return c.do(ctx, http.MethodPut, "/api/v2/workspaces/"+id.String()+"/favorite", nil, http.StatusNoContent, nil)
}

// UnfavoriteWorkspace clears the favorite mark of one of the caller's
// workspaces.
func (c *Client) UnfavoriteWorkspace(ctx context.Context, id uuid.UUID) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/workspaces/"+id.String()+"/favorite", nil, http.StatusNoContent, nil)
}

// WorkspaceFilter narrows a workspace list. Search is Coder's query
// syntax: space-separated key:value terms (owner:me, status:running,
// template:NAME, name:SUBSTRING); a bare word matches names.
type WorkspaceFilter struct {
	Owner  string
	Search string
}

// WorkspacesFiltered lists the workspaces matching f that the caller may
// read; the caller's favorites come first.
func (c *Client) WorkspacesFiltered(ctx context.Context, f WorkspaceFilter) (WorkspacesResponse, error) {
	q := url.Values{}
	if f.Owner != "" {
		q.Set("owner", f.Owner)
	}
	if f.Search != "" {
		q.Set("q", f.Search)
	}
	path := "/api/v2/workspaces"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out WorkspacesResponse
	err := c.do(ctx, http.MethodGet, path, nil, http.StatusOK, &out)
	return out, err
}

// WorkspaceBuildParameters returns the rich parameter values a build ran
// with (ephemeral ones included: they belong to that build only).
func (c *Client) WorkspaceBuildParameters(ctx context.Context, build uuid.UUID) ([]WorkspaceBuildParameter, error) {
	var out []WorkspaceBuildParameter
	err := c.do(ctx, http.MethodGet, "/api/v2/workspacebuilds/"+build.String()+"/parameters", nil, http.StatusOK, &out)
	return out, err
}

// Usage apps a client may report with PostWorkspaceUsage (coder ssh
// --usage-app).
const (
	UsageAppSSH             = "ssh"
	UsageAppVSCode          = "vscode"
	UsageAppJetBrains       = "jetbrains"
	UsageAppReconnectingPTY = "reconnecting-pty"
)

// PostWorkspaceUsageRequest reports that a client uses a workspace through
// an app (an IDE, ssh).
type PostWorkspaceUsageRequest struct {
	AgentID uuid.UUID `json:"agent_id"`
	AppName string    `json:"app_name"`
}

// PostWorkspaceUsage records use of a workspace: its last use time and a
// bump of its autostop deadline, as agent-reported sessions do.
func (c *Client) PostWorkspaceUsage(ctx context.Context, workspace uuid.UUID, req PostWorkspaceUsageRequest) error {
	return c.do(ctx, http.MethodPost, "/api/v2/workspaces/"+workspace.String()+"/usage", req, http.StatusNoContent, nil)
}
