package codersdk

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// WorkspaceAgentScriptRunStatus is how the latest run of an agent script
// went.
type WorkspaceAgentScriptRunStatus string

// Script run statuses.
const (
	ScriptRunRunning     WorkspaceAgentScriptRunStatus = "running"
	ScriptRunOK          WorkspaceAgentScriptRunStatus = "ok"
	ScriptRunExitFailure WorkspaceAgentScriptRunStatus = "exit_failure"
	ScriptRunTimedOut    WorkspaceAgentScriptRunStatus = "timed_out"
	ScriptRunCanceled    WorkspaceAgentScriptRunStatus = "canceled"
)

// Valid reports whether s is a known status.
func (s WorkspaceAgentScriptRunStatus) Valid() bool {
	switch s {
	case ScriptRunRunning, ScriptRunOK, ScriptRunExitFailure, ScriptRunTimedOut, ScriptRunCanceled:
		return true
	}
	return false
}

// WorkspaceAgentScriptRun is the latest run of one agent script. EndedAt
// and ExitCode are nil while it runs; ExitCode is -1 when the script was
// killed by a signal (timeout, cancel) or could not start.
type WorkspaceAgentScriptRun struct {
	ScriptID  uuid.UUID                     `json:"script_id"`
	Status    WorkspaceAgentScriptRunStatus `json:"status"`
	StartedAt time.Time                     `json:"started_at"`
	EndedAt   *time.Time                    `json:"ended_at,omitempty"`
	ExitCode  *int32                        `json:"exit_code,omitempty"`
}

// WorkspaceAgentScriptRuns returns the latest run of each script of the
// agent that has run (GET /api/v2/workspaceagents/{id}/script-runs).
func (c *Client) WorkspaceAgentScriptRuns(ctx context.Context, id uuid.UUID) ([]WorkspaceAgentScriptRun, error) {
	var out []WorkspaceAgentScriptRun
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceagents/"+id.String()+"/script-runs", nil, http.StatusOK, &out)
	return out, err
}
