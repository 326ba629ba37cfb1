package codersdk

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// UpdateWorkspaceAutostartRequest sets (or, with a nil Schedule, clears) a
// workspace's autostart schedule: "CRON_TZ=<zone> <minute> <hour> * * <days>".
type UpdateWorkspaceAutostartRequest struct {
	Schedule *string `json:"schedule"`
}

// UpdateWorkspaceTTLRequest sets (or, with nil, clears) how long a workspace
// runs after it starts.
type UpdateWorkspaceTTLRequest struct {
	TTLMillis *int64 `json:"ttl_ms"`
}

// PutExtendWorkspaceRequest moves a running workspace's deadline.
type PutExtendWorkspaceRequest struct {
	Deadline time.Time `json:"deadline"`
}

// UpdateWorkspaceDormancy marks a workspace dormant (it is stopped and may
// not start) or active again.
type UpdateWorkspaceDormancy struct {
	Dormant bool `json:"dormant"`
}

// TemplateScheduleFields are a template's schedule settings as PATCH
// /api/v2/templates/{template} takes them; a nil field is left unchanged.
type TemplateScheduleFields struct {
	DefaultTTLMillis               *int64 `json:"default_ttl_ms,omitempty"`
	MaxTTLMillis                   *int64 `json:"max_ttl_ms,omitempty"`
	AllowUserAutostart             *bool  `json:"allow_user_autostart,omitempty"`
	AllowUserAutostop              *bool  `json:"allow_user_autostop,omitempty"`
	FailureTTLMillis               *int64 `json:"failure_ttl_ms,omitempty"`
	TimeTilDormantMillis           *int64 `json:"time_til_dormant_ms,omitempty"`
	TimeTilDormantAutoDeleteMillis *int64 `json:"time_til_dormant_autodelete_ms,omitempty"`
}

// TemplateSchedule are a template's schedule settings in its API shape.
type TemplateSchedule struct {
	MaxTTLMillis                   int64 `json:"max_ttl_ms"`
	AllowUserAutostart             bool  `json:"allow_user_autostart"`
	AllowUserAutostop              bool  `json:"allow_user_autostop"`
	FailureTTLMillis               int64 `json:"failure_ttl_ms"`
	TimeTilDormantMillis           int64 `json:"time_til_dormant_ms"`
	TimeTilDormantAutoDeleteMillis int64 `json:"time_til_dormant_autodelete_ms"`
}

// UpdateWorkspaceAutostart sets or clears a workspace's autostart schedule.
func (c *Client) UpdateWorkspaceAutostart(ctx context.Context, id uuid.UUID, req UpdateWorkspaceAutostartRequest) error {
	return c.do(ctx, http.MethodPut, "/api/v2/workspaces/"+id.String()+"/autostart", req, http.StatusNoContent, nil)
}

// UpdateWorkspaceTTL sets or clears a workspace's TTL.
func (c *Client) UpdateWorkspaceTTL(ctx context.Context, id uuid.UUID, req UpdateWorkspaceTTLRequest) error {
	return c.do(ctx, http.MethodPut, "/api/v2/workspaces/"+id.String()+"/ttl", req, http.StatusNoContent, nil)
}

// PutExtendWorkspace moves a running workspace's deadline.
func (c *Client) PutExtendWorkspace(ctx context.Context, id uuid.UUID, req PutExtendWorkspaceRequest) error {
	return c.do(ctx, http.MethodPut, "/api/v2/workspaces/"+id.String()+"/extend", req, http.StatusOK, nil)
}

// UpdateWorkspaceDormancy marks a workspace dormant or active and returns it.
func (c *Client) UpdateWorkspaceDormancy(ctx context.Context, id uuid.UUID, req UpdateWorkspaceDormancy) (Workspace, error) {
	var w Workspace
	err := c.do(ctx, http.MethodPut, "/api/v2/workspaces/"+id.String()+"/dormant", req, http.StatusOK, &w)
	return w, err
}

// UpdateTemplateSchedule changes a template's schedule settings and
// returns the template.
func (c *Client) UpdateTemplateSchedule(ctx context.Context, id uuid.UUID, req TemplateScheduleFields) (Template, error) {
	var t Template
	err := c.do(ctx, http.MethodPatch, "/api/v2/templates/"+id.String(), req, http.StatusOK, &t)
	return t, err
}
