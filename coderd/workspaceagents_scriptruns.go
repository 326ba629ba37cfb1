package coderd

import (
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd/httpapi"
	"github.com/wgmesh/coder/coderd/httpmw"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/database"
)

// postAgentScriptRun serves POST /api/v2/workspaceagents/me/script-runs:
// the agent reports that one of its scripts started or ended. A script of
// another agent is 404.
func (api *API) postAgentScriptRun(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent := httpmw.WorkspaceAgent(r)
	var req agentsdk.PostScriptRunRequest
	if !httpapi.Read(ctx, w, r, &req) {
		return
	}
	var bad []codersdk.ValidationError
	if !req.Status.Valid() {
		bad = append(bad, codersdk.ValidationError{Field: "status", Detail: fmt.Sprintf("unknown status %q", req.Status)})
	}
	if req.StartedAt.IsZero() {
		bad = append(bad, codersdk.ValidationError{Field: "started_at", Detail: "required"})
	}
	ended := req.Status != codersdk.ScriptRunRunning
	if ended != (req.EndedAt != nil) || ended != (req.ExitCode != nil) {
		bad = append(bad, codersdk.ValidationError{Field: "ended_at", Detail: "ended_at and exit_code are set exactly when the run ended"})
	}
	if len(bad) > 0 {
		httpapi.Write(ctx, w, http.StatusBadRequest, codersdk.Response{Message: "Invalid script run.", Validations: bad})
		return
	}
	params := database.UpsertWorkspaceAgentScriptRunParams{
		ScriptID: req.ScriptID, WorkspaceAgentID: agent.ID, Status: string(req.Status),
		StartedAt: req.StartedAt.UTC().Truncate(time.Microsecond),
	}
	if req.EndedAt != nil {
		params.EndedAt = pgtype.Timestamptz{Time: req.EndedAt.UTC().Truncate(time.Microsecond), Valid: true}
		params.ExitCode = pgtype.Int4{Int32: *req.ExitCode, Valid: true}
	}
	n, err := api.db.UpsertWorkspaceAgentScriptRun(ctx, params)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error recording the script run.", err)
		return
	}
	if n == 0 {
		httpapi.Write(ctx, w, http.StatusNotFound, codersdk.Response{Message: "The agent has no such script."})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// workspaceAgentScriptRuns serves
// GET /api/v2/workspaceagents/{workspaceagent}/script-runs: the latest run
// of each of the agent's scripts.
func (api *API) workspaceAgentScriptRuns(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	agent, ok := api.authorizedAgent(w, r, false)
	if !ok {
		return
	}
	rows, err := api.db.GetWorkspaceAgentScriptRuns(ctx, agent.ID)
	if err != nil {
		httpapi.InternalServerError(w, r, "Internal error getting script runs.", err)
		return
	}
	out := make([]codersdk.WorkspaceAgentScriptRun, 0, len(rows))
	for _, row := range rows {
		run := codersdk.WorkspaceAgentScriptRun{ScriptID: row.ScriptID, Status: codersdk.WorkspaceAgentScriptRunStatus(row.Status), StartedAt: row.StartedAt}
		if row.EndedAt.Valid {
			t := row.EndedAt.Time
			run.EndedAt = &t
		}
		if row.ExitCode.Valid {
			c := row.ExitCode.Int32
			run.ExitCode = &c
		}
		out = append(out, run)
	}
	httpapi.Write(ctx, w, http.StatusOK, out)
}
